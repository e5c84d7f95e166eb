"""A cluster for tests: the emulated API server in its own thread, or a real one.

With GANTRY_TEST_KUBECONFIG pointing at a kubeconfig, tests talk to that cluster and the
real controllers do the work; otherwise an `ApiServer` runs on 127.0.0.1 and `Controllers`
play the deployment controller, kubelet and job controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import kmock
import yaml
from kubernetes import config as k8s_config

from gantry.adapters.kube import ApiError, Kube, custom_path, job_path, workload_path
from tests.harness import authz, envtest, stand_in
from tests.harness.api_controllers import ApiControllers
from tests.harness.apiserver import EMULATOR_ADMIN, ApiServer, Key

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
REAL_CLUSTER_ENV = "GANTRY_TEST_KUBECONFIG"
CONTROLLERS_ENV = "GANTRY_TEST_CONTROLLERS"  # "api": the stand-in controllers work through the API
KEEP_NAMESPACES_ENV = "GANTRY_TEST_KEEP_NAMESPACES"  # set: leave each test's namespaces to look at

DEPLOYMENTS: Key = ("apps", "v1", "deployments")
STATEFULSETS: Key = ("apps", "v1", "statefulsets")
JOBS: Key = ("batch", "v1", "jobs")
PODS: Key = ("", "v1", "pods")

PLURALS = {
    "Release": ("gantry.dev", "v1alpha1", "releases"),
    "Pipeline": ("gantry.dev", "v1alpha1", "pipelines"),
    "EnvironmentLock": ("gantry.dev", "v1alpha1", "environmentlocks"),
    "ReleaseDecision": ("gantry.dev", "v1alpha1", "releasedecisions"),
    "ProductionLedger": ("gantry.dev", "v1alpha1", "productionledgers"),
    "ReleaseSource": ("gantry.dev", "v1alpha1", "releasesources"),
    "ServiceAccount": ("", "v1", "serviceaccounts"),
    "Secret": ("", "v1", "secrets"),
    "Service": ("", "v1", "services"),
    "ConfigMap": ("", "v1", "configmaps"),
    "ClusterRole": ("rbac.authorization.k8s.io", "v1", "clusterroles"),
    "ClusterRoleBinding": ("rbac.authorization.k8s.io", "v1", "clusterrolebindings"),
    "Role": ("rbac.authorization.k8s.io", "v1", "roles"),
    "RoleBinding": ("rbac.authorization.k8s.io", "v1", "rolebindings"),
    "ValidatingAdmissionPolicy": ("admissionregistration.k8s.io", "v1", "validatingadmissionpolicies"),
    "ValidatingAdmissionPolicyBinding": (
        "admissionregistration.k8s.io",
        "v1",
        "validatingadmissionpolicybindings",
    ),
    "Deployment": DEPLOYMENTS,
    "StatefulSet": STATEFULSETS,
    "Job": JOBS,
    "Namespace": ("", "v1", "namespaces"),
    "ClusterKopfPeering": ("kopf.dev", "v1", "clusterkopfpeerings"),
    "KopfPeering": ("kopf.dev", "v1", "kopfpeerings"),
    "CustomResourceDefinition": ("apiextensions.k8s.io", "v1", "customresourcedefinitions"),
    "Application": ("argoproj.io", "v1alpha1", "applications"),  # Argo CD's, played by tests.harness.syncer
}


CLUSTER_SCOPED = (
    "Namespace",
    "ClusterKopfPeering",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
)


def object_path(kind: str, namespace: str | None, name: str | None = None) -> str:
    group, version, plural = PLURALS[kind]
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    if namespace is not None:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    return f"{base}/{name}" if name is not None else base


class Controllers:
    """The built-in controllers, reduced to what Gantry observes.

    - Deployments and StatefulSets roll out after `delay` seconds, unless a container image
      is in `unpullable` (like a digest no registry has) or the workload is `held`.
    - Jobs run their first container's command: `exit N` finishes with code N,
      `sleep infinity` never finishes. That is what a busybox Job does on a real cluster.
    """

    def __init__(self, server: ApiServer, loop: asyncio.AbstractEventLoop, delay: float = 0.05) -> None:
        self.server, self.loop, self.delay = server, loop, delay
        self.unpullable: set[str] = set()
        self.held: set[tuple[str, str]] = set()
        # Decides a Job's exit code from the Job and the code its script says (the demo uses it).
        self.job_exit_code: Callable[[dict[str, Any], int], int] | None = None
        server.change_hooks.append(self._on_change)

    def _on_change(self, kind: str, key: Key, obj: dict[str, Any]) -> None:
        if kind == "DELETED":
            return
        if key in (DEPLOYMENTS, STATEFULSETS):
            self.loop.call_later(
                self.delay, self._roll_out, key, obj["metadata"]["namespace"], obj["metadata"]["name"]
            )
        elif key == JOBS and kind == "ADDED":
            self.loop.call_later(
                self.delay, self._run_job, obj["metadata"]["namespace"], obj["metadata"]["name"]
            )

    def _roll_out(self, key: Key, namespace: str, name: str) -> None:
        obj = self.server.store.get((key, namespace, name))
        if obj is None:
            return
        kind = "StatefulSet" if key == STATEFULSETS else "Deployment"
        new = stand_in.workload_status(kind, obj, stand_in.is_stuck(obj, self.unpullable, self.held))
        if new is not None:
            self.server.write_status(key, namespace, name, new)

    def release(self, namespace: str, name: str) -> None:
        """Let a held workload finish its rollout."""

        def go() -> None:
            self.held.discard((namespace, name))
            for key in (DEPLOYMENTS, STATEFULSETS):
                self._roll_out(key, namespace, name)

        self.loop.call_soon_threadsafe(go)

    def _run_job(self, namespace: str, name: str) -> None:
        obj = self.server.store.get((JOBS, namespace, name))
        if obj is None:
            return
        code = stand_in.exit_code(obj, self.job_exit_code)
        if code is not None:
            pod, status = stand_in.job_pod(obj, code)
            created = self.server.create(PODS, namespace, pod)
            self.server.write_status(PODS, namespace, created["metadata"]["name"], status)
        self.server.write_status(JOBS, namespace, name, stand_in.job_status(code, stand_in.now()))


class Cluster:
    """What a test needs from a cluster, the same whether it is emulated or real."""

    def __init__(self, kubeconfig: Path, server: ApiServer | None, controllers: Controllers | None) -> None:
        self.kubeconfig = kubeconfig
        self.server = server
        self.controllers = controllers
        self.kube = Kube(k8s_config.new_client_from_config(config_file=str(kubeconfig)))  # type: ignore[no-untyped-call]
        self.namespaces_made: list[str] = []
        self.namespaces_seen: set[str] = set()

    @property
    def emulated(self) -> bool:
        return self.server is not None

    # --- objects ---

    def ensure_namespace(self, name: str) -> None:
        """Create the Namespace a test puts objects in (an API server refuses them otherwise); one
        this cluster made is deleted again at the end (see `cleanup`). A namespace still
        terminating from an earlier test is waited for, then made anew."""
        if name in self.namespaces_seen:
            return
        deadline = time.monotonic() + 120
        while True:
            try:
                existing = self.kube.get(object_path("Namespace", None, name))
            except ApiError as error:
                if error.status != 403:
                    raise
                break  # a user who may not read namespaces (a developer): an admin made this one
            if existing is None:
                self.kube.create(
                    object_path("Namespace", None),
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                )
                self.namespaces_made.append(name)
                break
            if not (existing.get("metadata") or {}).get("deletionTimestamp"):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"namespace {name} stayed Terminating for 120 s")
            time.sleep(0.5)
        self.namespaces_seen.add(name)

    def cleanup(self) -> None:
        """Delete the namespaces this cluster made, unless GANTRY_TEST_KEEP_NAMESPACES is set. With
        no operator running, a Release in flight, an EnvironmentLock or a ReleaseSource still carries
        Kopf's finalizer and would hold its namespace in Terminating for ever (what the README tells
        users to do when the operator is gone): take it off first, then wait for each namespace."""
        if os.environ.get(KEEP_NAMESPACES_ENV) or self.emulated:
            return  # the emulator goes away with the test
        if envtest.assets() is not None and not os.environ.get(REAL_CLUSTER_ENV):
            # envtest has no namespace controller to empty a deleted namespace, and one control plane
            # serves the session: empty what the test used instead, or the next test's operator
            # (cluster-wide, like every Gantry) would go on driving this test's Releases.
            for name in sorted(self.namespaces_seen):
                self.empty(name)
            self.namespaces_made.clear()
            self.namespaces_seen.clear()
            return
        for name in reversed(self.namespaces_made):
            self.take_finalizers_off(name)
            self.delete("Namespace", None, name)
        for name in self.namespaces_made:
            self.wait_for(
                f"namespace {name} deleted",
                lambda n=name: self.get("Namespace", None, n) is None,
                timeout=120,
                interval=0.5,
            )
        self.namespaces_made.clear()
        self.namespaces_seen.clear()

    GANTRY_KINDS = (
        "Release",
        "ReleaseSource",
        "EnvironmentLock",
        "Pipeline",
        "ReleaseDecision",
        "ProductionLedger",
    )

    def take_finalizers_off(self, namespace: str) -> None:
        for kind in ("Release", "EnvironmentLock", "ReleaseSource"):  # what Kopf's finalizer holds
            try:
                found = self.kube.list_items(object_path(kind, namespace))
            except ApiError as error:
                if not error.not_found:
                    raise
                continue  # not even the CRD is installed (a fresh cluster)
            for obj in found:
                if obj["metadata"].get("finalizers"):
                    path = object_path(kind, namespace, obj["metadata"]["name"])
                    with contextlib.suppress(ApiError):  # gone meanwhile
                        self.kube.merge_patch(path, {"metadata": {"finalizers": None}})

    def empty(self, namespace: str) -> None:
        """Delete what a test left in `namespace`: Gantry's objects, workloads and Jobs."""
        self.take_finalizers_off(namespace)
        for kind in (*self.GANTRY_KINDS, "Job", "Deployment", "StatefulSet"):
            with contextlib.suppress(ApiError):
                self.kube.request(
                    "DELETE", object_path(kind, namespace), body={"propagationPolicy": "Background"}
                )

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace, re-reading on a conflict as kubectl does when the operator (or a
        controller) made or wrote the object in between."""
        kind, meta = manifest["kind"], manifest["metadata"]
        namespace = meta.get("namespace") if kind not in CLUSTER_SCOPED else None
        if namespace:
            self.ensure_namespace(namespace)
        for _ in range(10):
            existing = self.kube.get(object_path(kind, namespace, meta["name"]))
            if existing is None:
                try:
                    return self.kube.create(object_path(kind, namespace), manifest)
                except ApiError as error:  # made in between (the operator makes a Pipeline's locks)
                    if not error.conflict:
                        raise
                    continue
            body = dict(manifest)
            body["metadata"] = {**meta, "resourceVersion": existing["metadata"]["resourceVersion"]}
            try:
                return self.kube.replace(object_path(kind, namespace, meta["name"]), body)
            except ApiError as error:
                if not error.conflict:
                    raise
        raise AssertionError(f"{kind} {namespace}/{meta['name']} kept changing while the test applied it")

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.kube.get(object_path(kind, namespace, name))

    def must_get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.get(kind, namespace, name)
        assert obj is not None, f"{kind} {namespace}/{name} does not exist"
        return obj

    def list(
        self, kind: str, namespace: str | None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        return self.kube.list_items(object_path(kind, namespace), label_selector)

    def delete(self, kind: str, namespace: str | None, name: str) -> None:
        try:
            self.kube.request("DELETE", object_path(kind, namespace, name))
        except ApiError as error:
            if not error.not_found:
                raise

    def release(self, namespace: str, name: str) -> dict[str, Any]:
        return self.must_get("Release", namespace, name)

    def images(self, kind: str, namespace: str, name: str) -> dict[str, str]:
        body = self.must_get(kind, namespace, name)
        return {c["name"]: c["image"] for c in body["spec"]["template"]["spec"]["containers"]}

    def events(self, namespace: str, involved_name: str) -> list[dict[str, Any]]:
        return [
            e
            for e in self.kube.list_items(f"/api/v1/namespaces/{namespace}/events")
            if e.get("involvedObject", {}).get("name") == involved_name
        ]

    def wait_for_events(self, namespace: str, involved_name: str, *reasons: str) -> list[dict[str, Any]]:
        """Events are posted asynchronously (Kopf queues them): wait until these reasons are there."""

        def posted() -> list[dict[str, Any]] | None:
            events = self.events(namespace, involved_name)
            return events if set(reasons) <= {e.get("reason") for e in events} else None

        found: list[dict[str, Any]] = self.wait_for(f"events {reasons} on {involved_name}", posted)
        return found

    # --- waiting ---

    def wait_for(
        self, what: str, predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05
    ) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")

    def wait_for_phase(
        self, namespace: str, name: str, *phases: str, timeout: float = 20.0
    ) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            body = self.get("Release", namespace, name)
            return body if body and (body.get("status") or {}).get("phase") in phases else None

        try:
            result: dict[str, Any] = self.wait_for(
                f"Release {namespace}/{name} to be {'/'.join(phases)}", reached, timeout
            )
            return result
        except AssertionError:
            body = self.get("Release", namespace, name) or {}
            status = body.get("status") or {}
            raise AssertionError(
                f"Release {namespace}/{name} did not reach {phases}: phase={status.get('phase')} "
                f"reason={status.get('reason')} message={status.get('message')}"
            ) from None

    def record_changes(self, hook: Callable[[str, Any, dict[str, Any]], None]) -> None:
        """Call `hook` for every object already stored, then for every committed change, with no
        gap between the two: both run in the server's own loop, so no write slips in between
        (a hook installed from the test thread misses what was committed just before it)."""
        assert self.server is not None and self.controllers is not None, "needs the emulated cluster"
        server = self.server

        async def install() -> None:
            for (key, _, _), obj in list(server.store.items()):
                hook("ADDED", key, copy.deepcopy(obj))
            server.change_hooks.append(hook)

        asyncio.run_coroutine_threadsafe(install(), self.controllers.loop).result(10)

    # --- controller knobs (no-ops on a real cluster, where real controllers decide) ---

    def make_unpullable(self, image: str) -> None:
        if self.controllers is not None:
            self.controllers.unpullable.add(image)

    def as_user(self, token: str, directory: Path) -> Cluster:
        """The same API server as the user behind `token` (one of authz.TEST_USERS): on the emulator
        the tokens are mapped and RBAC turned on here; envtest's kube-apiserver knows them from its
        token file and always enforces RBAC."""
        if self.server is not None:
            self.server.authz.tokens.update(authz.TEST_USERS)
            self.server.authz.tokens.setdefault("emulated", EMULATOR_ADMIN)
            self.server.authz.enabled = True
        config = yaml.safe_load(self.kubeconfig.read_text())
        config["users"] = [{"name": token, "user": {"token": token}}]
        for context in config["contexts"]:
            context["context"]["user"] = token
        path = directory / f"kubeconfig-{token}"
        path.write_text(yaml.safe_dump(config))
        return Cluster(path, None, None)

    def hold_rollouts(self, namespace: str, name: str) -> None:
        assert self.controllers is not None, "holding a rollout needs the emulated cluster"
        self.controllers.held.add((namespace, name))

    def release_rollouts(self, namespace: str, name: str) -> None:
        assert self.controllers is not None
        self.controllers.release(namespace, name)


def install_crds(cluster: Cluster) -> None:
    """As `kubectl apply -f crds/` does it, last-applied annotation included, so a later
    `kubectl apply -f crds/` on the same cluster merges instead of warning; then, as `kubectl wait
    --for condition=Established` would, until every kind is served (a CRD whose names conflict
    never is: that fails here, naming the conflict, rather than as a test stuck later)."""
    names = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        applied = json.dumps(crd, separators=(",", ":"), sort_keys=True)
        annotations = crd["metadata"].setdefault("annotations", {})
        annotations["kubectl.kubernetes.io/last-applied-configuration"] = applied
        cluster.apply(crd)
        names.append(crd["metadata"]["name"])
    for name in names:
        wait_established(cluster, name)


def crd_conditions(cluster: Cluster, name: str) -> dict[str, dict[str, Any]]:
    crd = cluster.must_get("CustomResourceDefinition", None, name)
    return {c["type"]: c for c in (crd.get("status") or {}).get("conditions") or ()}


def wait_established(cluster: Cluster, name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        conditions = crd_conditions(cluster, name)
        if conditions.get("Established", {}).get("status") == "True":
            return
        accepted = conditions.get("NamesAccepted", {})
        if accepted.get("status") == "False" or time.monotonic() > deadline:
            raise AssertionError(
                f"CustomResourceDefinition {name} is not Established: "
                f"{accepted.get('reason')}: {accepted.get('message')}"
            )
        time.sleep(0.2)


def write_kubeconfig(path: Path, url: str, token: str = "emulated") -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "emulated", "cluster": {"server": url}}],
                "users": [{"name": "tester", "user": {"token": token}}],
                "contexts": [{"name": "emulated", "context": {"cluster": "emulated", "user": "tester"}}],
                "current-context": "emulated",
            }
        )
    )
    return path


class ServerThread:
    """The emulated API server on 127.0.0.1, in a thread with its own event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.server: ApiServer | None = None
        self.url = ""
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="apiserver", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with ApiServer() as server, kmock.Server(server) as http:
            self.server = server
            self.url = str(http.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def start(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the emulated API server did not start")
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run fn in the server's loop (its state is not thread-safe) and return the result."""

        async def wrapper() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(10)


@contextmanager
def cluster_for_tests(tmp: Path, emulated: bool = False, crds: bool = True) -> Iterator[Cluster]:
    """The cluster under GANTRY_TEST_KUBECONFIG; else a real kube-apiserver from
    KUBEBUILDER_ASSETS (envtest); else, and always when `emulated`, the embedded one. Without
    `crds` (emulated only) it is a fresh cluster: not even crds/ installed.

    With GANTRY_TEST_CONTROLLERS=api the emulator runs without its built-in controllers and the
    stand-in controllers work through the API, exactly as in the envtest tier."""
    real = None if emulated else os.environ.get(REAL_CLUSTER_ENV)
    if real:
        cluster = Cluster(Path(real), None, None)
        install_crds(cluster)
        try:
            yield cluster
        finally:
            cluster.cleanup()
        return
    if not emulated and envtest.assets() is not None:
        yield from _with_api_controllers(envtest.kubeconfig(), None)
        return
    thread = ServerThread().start()
    assert thread.server is not None
    try:
        kubeconfig = write_kubeconfig(tmp / "kubeconfig", thread.url)
        if os.environ.get(CONTROLLERS_ENV) == "api" and not emulated:
            yield from _with_api_controllers(kubeconfig, thread.server)
            return
        controllers = Controllers(thread.server, thread.loop)
        cluster = Cluster(kubeconfig, thread.server, controllers)
        if crds:
            install_crds(cluster)
        yield cluster
    finally:
        thread.stop()


@contextmanager
def fresh_cluster_for_tests(tmp: Path) -> Iterator[Cluster]:
    """A cluster with nothing installed, not even crds/: on the envtest tier a kube-apiserver of
    its own (the session's has crds/ already), else the emulator."""
    if envtest.assets() is None or os.environ.get(REAL_CLUSTER_ENV):
        with cluster_for_tests(tmp, emulated=True, crds=False) as cluster:
            yield cluster
        return
    with envtest.fresh_control_plane(tmp / "control-plane") as kubeconfig:
        yield from _with_api_controllers(kubeconfig, None, crds=False)


def _with_api_controllers(kubeconfig: Path, server: ApiServer | None, crds: bool = True) -> Iterator[Cluster]:
    cluster = Cluster(kubeconfig, server, None)
    if crds:
        install_crds(cluster)
    controllers = ApiControllers(cluster.kube).start()
    cluster.controllers = controllers  # type: ignore[assignment]  # the same knobs, through the API
    try:
        yield cluster
    finally:
        controllers.stop()
        cluster.cleanup()


__all__ = [
    "Cluster",
    "Controllers",
    "ServerThread",
    "cluster_for_tests",
    "custom_path",
    "job_path",
    "workload_path",
]
