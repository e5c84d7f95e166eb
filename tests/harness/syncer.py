"""The GitOps tool, played in the harness: applies one path of one branch of a real (bare) git
origin to the API server whenever the branch moves, as Argo CD or Flux do; with `self_heal`, it
also puts back any drift of the live workloads from git (Argo CD's selfHeal).

It renders the two shapes Gantry writes: a kustomization (its `resources:` files in the same
directory, with the `images:` overrides applied as kustomize does) or a YAML file of manifests,
or a values file through a `render` function the test gives (a chart's template, in effect). It
only changes container images of existing Deployments: enough to be the other controller.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from kubernetes import config as k8s_config

from gantry.adapters.kube import ApiError, Kube
from tests.git.repos import origin_and_clone
from tests.harness.cluster import Cluster, object_path, wait_established

Render = Callable[[Mapping[str, Any]], list[dict[str, Any]]]

# Argo CD's Application kind, reduced to what Gantry reads (its status); a real install brings its own.
APPLICATION_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "applications.argoproj.io"},
    "spec": {
        "group": "argoproj.io",
        "scope": "Namespaced",
        "names": {
            "kind": "Application",
            "plural": "applications",
            "singular": "application",
            "listKind": "ApplicationList",
        },
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                },
            }
        ],
    },
}


def branch_per_environment(tmp: Path, manifests: list[dict[str, Any]], path: str = "shop") -> Path:
    """The first seed's deploy repository: PATH/ (the manifests, without namespaces, as each
    environment's GitOps tool applies them to its own, and a kustomization over them) on `main`,
    which staging runs, and on `production`. The bare origin."""
    origin, work = origin_and_clone(tmp, "deploy")
    bare = [
        {**d, "metadata": {k: v for k, v in d["metadata"].items() if k != "namespace"}} for d in manifests
    ]
    (work.path / path).mkdir()
    (work.path / path / "deployment.yaml").write_text(yaml.safe_dump_all(bare))
    (work.path / path / "kustomization.yaml").write_text("resources:\n  - deployment.yaml\n")
    work.git("add", "-A")
    work.git("commit", "-q", "-m", f"chore: {path}'s manifests")
    work.git("push", "-q", "origin", "main", "main:production")
    return origin


def install_application_kind(cluster: Cluster) -> None:
    cluster.apply(APPLICATION_CRD)
    wait_established(cluster, APPLICATION_CRD["metadata"]["name"])


class Syncer:
    def __init__(
        self,
        cluster: Cluster,
        origin: Path,
        path: str,
        branch: str = "main",
        render: Render | None = None,
        self_heal: bool = False,
        manager: str = "argocd-controller",
        interval: float = 0.1,
        namespace: str | None = None,
        application: tuple[str, str] | None = None,
    ) -> None:
        self.origin, self.path, self.branch = origin, path, branch
        self.namespace = namespace  # for manifests that name none (an Application's destination)
        # Argo CD's Application (namespace, name): its status says which commit was applied.
        self.application = application
        self.paused = False  # a tool that has not synced yet: applies nothing, reports nothing
        self.render, self.self_heal, self.interval = render, self_heal, interval
        api = k8s_config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
        api.user_agent = f"{manager}/1.0"  # its name in managedFields, as a real tool's
        self.kube = Kube(api)
        self.applied: list[str] = []  # the commits it applied, in order
        self.healed = 0  # live drifts it put back
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gitops-syncer", daemon=True)

    def start(self) -> Syncer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def __enter__(self) -> Syncer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_applied(self, commit: str, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while commit not in self.applied:
            assert time.monotonic() < deadline, f"the syncer never applied {commit[:12]}"
            time.sleep(0.05)

    def _git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "--git-dir", str(self.origin), *args], check=True, capture_output=True, text=True
        ).stdout

    def _run(self) -> None:
        seen: str | None = None
        while not self._stop.wait(self.interval):
            if self.paused:
                continue
            try:
                head = self._git("rev-parse", f"refs/heads/{self.branch}").strip()
            except (subprocess.CalledProcessError, FileNotFoundError):
                continue  # the branch (or the origin) is not there: a real tool waits, too
            if head != seen or self.self_heal:
                try:
                    drifted = self._apply(head)
                except ApiError:
                    continue  # a conflict with another writer: again on the next look
                if head != seen:
                    self._report(head)
                    self.applied.append(head)
                    seen = head
                elif drifted:
                    self.healed += 1

    def _report(self, commit: str) -> None:
        """As Argo CD does: the Application's status names the revision synced, and its health."""
        if self.application is None:
            return
        path = object_path("Application", *self.application)
        body = self.kube.get(path)
        if body is None:
            return
        body["status"] = {"sync": {"status": "Synced", "revision": commit}, "health": {"status": "Healthy"}}
        self.kube.replace(path, body)

    def manifests(self, commit: str) -> list[dict[str, Any]]:
        kustomization = f"{self.path.rstrip('/')}/kustomization.yaml"
        listed = self._git("ls-tree", "-r", "--name-only", commit, "--", self.path).split()
        if kustomization in listed:
            return self._kustomize(commit, kustomization)
        files = [f for f in listed if f.endswith((".yaml", ".yml"))]
        if files != [self.path]:  # a directory of manifests
            return [d for f in files for d in yaml.safe_load_all(self._git("show", f"{commit}:{f}")) if d]
        text = self._git("show", f"{commit}:{self.path}")
        if self.render is not None:
            return self.render(yaml.safe_load(text) or {})
        return [d for d in yaml.safe_load_all(text) if d]

    def _kustomize(self, commit: str, kustomization: str) -> list[dict[str, Any]]:
        spec = yaml.safe_load(self._git("show", f"{commit}:{kustomization}")) or {}
        base = self.path.rstrip("/")
        docs = [
            d
            for resource in spec.get("resources") or ()
            for d in yaml.safe_load_all(self._git("show", f"{commit}:{base}/{resource}"))
            if d
        ]
        overrides = {i["name"]: i for i in spec.get("images") or ()}
        for doc in docs:
            for container in doc["spec"]["template"]["spec"]["containers"]:
                container["image"] = kustomized(container["image"], overrides)
        return docs

    def _apply(self, commit: str) -> bool:
        """Make the live Deployments' images what git says, and create any other object git has
        that the cluster lacks (a ReleaseDecision merged, say), stamped with the commit as Argo
        CD's ${ARGOCD_APP_REVISION} would; True if a Deployment had drifted."""
        drifted = False
        for doc in self.manifests(commit):
            meta = doc["metadata"]
            namespace = meta.get("namespace") or self.namespace
            path = object_path(doc["kind"], namespace, meta["name"])
            live = self.kube.get(path)
            if doc["kind"] not in ("Deployment", "StatefulSet"):
                if live is None:
                    meta.setdefault("annotations", {})["gantry.dev/git-commit"] = commit
                    self.kube.create(object_path(doc["kind"], namespace), doc)
                continue
            if live is None:
                continue
            wanted = {c["name"]: c["image"] for c in doc["spec"]["template"]["spec"]["containers"]}
            containers = live["spec"]["template"]["spec"]["containers"]
            if all(wanted.get(c["name"], c["image"]) == c["image"] for c in containers):
                continue
            for container in containers:
                container["image"] = wanted.get(container["name"], container["image"])
            self.kube.replace(path, live)
            drifted = True
        return drifted


def kustomized(image: str, overrides: Mapping[str, Mapping[str, Any]]) -> str:
    """An image as kustomize's `images:` transformer rewrites it."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    if ":" in name[slash + 1 :]:
        name = name.rsplit(":", 1)[0]
    override = overrides.get(name)
    if override is None:
        return image
    new = override.get("newName") or name
    if override.get("digest"):
        return f"{new}@{override['digest']}"
    if override.get("newTag"):
        return f"{new}:{override['newTag']}"
    return new + image[len(name) :]
