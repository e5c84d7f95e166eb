"""The quick-start demo: Gantry's whole flow end to end, with no cluster.

Runs the real operator against the embedded API emulator, with a real git repository (a bare
origin and a clone; each Release starts from a merge commit on main, handed over the way CI does
it, with `gantry release create`; Gantry tags the commit once dev has passed) and a real
Prometheus scraping a small metrics app, applies the files in examples/, and prints what
`kubectl get releases` and `kubectl gantry status` show at each step:

1. v1.4.0 goes through dev and staging (under the staging lock, tested) and is Verified.
2. v1.5.0 and v1.5.1 race for the staging lock; v1.5.0's integration tests fail, so staging
   is rolled back to exactly what it ran before, and v1.5.1 (queued behind it) then passes.
3. v1.4.0 is approved (`kubectl gantry approve`) and promoted to production, where it bakes
   against Prometheus's error rate and is Released.
4. v1.5.1 is approved; while it bakes its error rate jumps to 50 %, and Gantry rolls production
   back on its own by re-applying v1.4.0's digests, and quarantines v1.5.1's.
5. A data-loss bug turns up in v1.4.0: on-call declares an Emergency (staging frozen for hotfixes,
   production keeps v1.4.0); the fix, pushed on HOT-1 cut from the v1.4.0 tag, is handed over as a
   hotfix, becomes v1.4.1 (tagged on HOT-1), is Released, and lifts the freeze.

With --gitops (`make demo GITOPS=1`) the same walk deploys staging and production through git, as
the first seed does: a deploy repository whose `main` is what staging runs and whose `production`
branch receives the tagged snapshot of it; a GitOps tool (the harness's syncer, as Argo CD would)
applies each branch to its namespace. Every promotion and rollback is a commit, shown at the end.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from gantry import publish
from gantry.adapters.registry import RegistryClient
from gantry.domain.vocabulary.images import short_digest
from gantry.plugin.main import main as kubectl_gantry
from gantry.publish import Request
from gantry.settings import Config
from tests.git.repos import Clone, origin_and_clone
from tests.harness import kubectl, services
from tests.harness.cluster import ROOT, Cluster, cluster_for_tests
from tests.harness.observability import MetricsApp, Prometheus, observability
from tests.harness.operator import OperatorThread, RecordingAlerter
from tests.harness.syncer import Syncer, branch_per_environment

NAMESPACE = "gantry"
EXAMPLES = ROOT / "examples"
BROKEN_VERSION = "v1.5.0"


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def show(command: str, output: str) -> None:
    print(f"$ {command}\n{output}", flush=True)


def load(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


def hand_over(
    cluster: Cluster, version: str, seed: str, git: tuple[Path, Clone], image: str | None = None
) -> str:
    """What CI does after a merge on main: the merge commit pushed, its image pushed (here: a digest
    the stand-in kubelet accepts), then `gantry release create` (the CLI's own code)."""
    origin, work = git
    revision = work.commit(f"feat(SHOP-{seed}): what {version} brings")
    work.git("push", "-q", "origin", "main")
    image = image or f"docker.io/library/nginx@sha256:{seed * 64}"
    request = Request(
        NAMESPACE, "shop", revision, str(origin), [f"web={image}"], version=version, name=f"shop-{version}"
    )
    name, _ = publish.create(cluster.kube, request, RegistryClient())
    show(
        f"gantry release create --application shop --revision {revision} --version {version} "
        f"--artifact web={image} --name shop-{version}   # CI, after the merge on main",
        f"release.gantry.dev/{name} created",
    )
    return name


def images(cluster: Cluster) -> str:
    rows = []
    for namespace in ("shop-dev", "shop-staging", "shop-production"):
        image = cluster.images("Deployment", namespace, "web")["web"]
        repository = image.split("@")[0].split("/")[-1]
        rows.append(f"{namespace:<16} web  {repository}@{short_digest(image)}")
    return "\n".join(rows)


def stage_of(cluster: Cluster, name: str) -> str:
    return str((cluster.must_get("Release", NAMESPACE, name).get("status") or {}).get("stage", ""))


def fail_broken_version(job: dict[str, Any], code: int) -> int:
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0].get("env", [])}
    return 1 if env.get("GANTRY_VERSION") == BROKEN_VERSION else code


def status(cluster: Cluster) -> None:
    show("kubectl get releases -n gantry", kubectl.get(cluster, "Release", NAMESPACE))
    lines: list[str] = []
    kubectl_gantry(["-n", NAMESPACE, "status", "shop"], out=lines.append)
    show("kubectl gantry status shop -n gantry", "\n".join(lines))


def production_pipeline(prometheus: Prometheus) -> dict[str, Any]:
    """examples/pipeline.yaml, with production baking against the demo's Prometheus (fast settings)."""
    pipeline = load("pipeline.yaml")[0]
    pipeline["spec"].pop("requireTag")  # the demo's Releases come from git: only tagged ones go on
    production = pipeline["spec"]["stages"][-1]
    production["analysis"] = {
        "prometheus": {"url": prometheus.url},
        "threshold": 0.1,
        "minRequestRate": 1,
        "window": "5s",
        "intervalSeconds": 1,
        "bakeSeconds": 10,
        "consecutiveBreaches": 2,
        "onBreach": "Rollback",
    }
    return pipeline


def main(argv: list[str] | None = None) -> int:
    gitops = "--gitops" in (sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.ERROR)
    missing = [path for path in services.started_by("demo").values() if not shutil.which(path)]
    if missing:
        print(
            f"The demo needs {', '.join(missing)}: install them with `.ci/install-services --for demo` "
            "(`make demo` does, from the list in .ci/services)."
        )
        return 2
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory() as tmp,
        cluster_for_tests(Path(tmp), emulated=True) as cluster,  # the demo needs no cluster, ever
        observability(Path(tmp) / "observability") as (app, prometheus, _),
        contextlib.ExitStack() as tools,
    ):
        os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
        assert cluster.controllers is not None
        cluster.controllers.job_exit_code = fail_broken_version
        git = origin_and_clone(Path(tmp), "shop")
        git[1].commit("chore(SHOP-0): start")
        say("An emulated Kubernetes API server is up (CRDs from crds/), with a git origin and Prometheus")
        alerts = RecordingAlerter()
        config = Config(
            reconcile_interval=0.2,
            waiting_interval=0.3,
            lock_sweep_interval=1.0,
            metrics_port=0,
            git_cache=str(Path(tmp) / "git-cache"),
        )
        operator = OperatorThread(config, alerts).start()
        deploy = deploy_repository(cluster, Path(tmp), tools) if gitops else None
        try:
            walk(cluster, git, app, prometheus, alerts, deploy)
        finally:
            operator.stop()
        if deploy is not None:
            show_deploy_repository(deploy)
        tags = git[1].git("ls-remote", "--tags", "origin").splitlines()
        print(
            "\nrelease tags Gantry pushed to origin: "
            + ", ".join(t.split("refs/tags/")[1] for t in tags if "^{}" not in t)
        )
    say(f"Done in {time.monotonic() - started:.1f}s.")
    return 0


def walk(
    cluster: Cluster,
    git: tuple[Path, Clone],
    app: MetricsApp,
    prometheus: Prometheus,
    alerts: RecordingAlerter,
    deploy: Path | None = None,
) -> None:
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    pipeline = production_pipeline(prometheus)
    if deploy is not None:
        through_git(pipeline, deploy)
    for manifest in [*load("workloads.yaml"), pipeline]:
        cluster.apply(manifest)
    app.set("shop-production", rps=20, error_ratio=0.0)
    cluster.wait_for(
        "the Pipeline to be validated",
        lambda: (cluster.must_get("Pipeline", NAMESPACE, "shop").get("status") or {}).get("stageSummary"),
    )
    show(
        "kubectl apply -f examples/ && kubectl get pipelines -n gantry",
        kubectl.get(cluster, "Pipeline", NAMESPACE),
    )
    show("kubectl get deployments (images)", images(cluster))

    say("1. A merge on main; CI pushes its image and hands over v1.4.0 to Gantry")
    base = load("release.yaml")[0]
    name = hand_over(cluster, "v1.4.0", "a", git, image=base["spec"]["artifacts"][0]["image"])
    cluster.wait_for_phase(NAMESPACE, name, "Deploying", "Testing", "Verified", "Failed")
    show("kubectl get releases -n gantry   # a moment later", kubectl.get(cluster, "Release", NAMESPACE))
    cluster.wait_for_phase(NAMESPACE, name, "Verified", "Failed")
    status(cluster)

    say(f"2. v1.5.0 and v1.5.1 race for the staging lock; {BROKEN_VERSION}'s integration tests fail")
    # Staging's rollout of v1.5.0 is held until v1.5.1 has queued behind it, so the race is shown
    # the same way every time (on a busy machine v1.5.0 could otherwise finish before v1.5.1 asks).
    cluster.hold_rollouts("shop-staging", "web")
    hand_over(cluster, "v1.5.0", "b", git)
    cluster.wait_for("v1.5.0 to reach staging", lambda: stage_of(cluster, "shop-v1.5.0") == "staging")
    hand_over(cluster, "v1.5.1", "c", git)
    cluster.wait_for_phase(NAMESPACE, "shop-v1.5.1", "Queued")
    cluster.release_rollouts("shop-staging", "web")
    show("kubectl get releases -n gantry", kubectl.get(cluster, "Release", NAMESPACE))
    show(
        "kubectl get environmentlocks -n gantry -o wide",
        kubectl.get(cluster, "EnvironmentLock", NAMESPACE, wide=True),
    )
    failed = cluster.wait_for_phase(NAMESPACE, "shop-v1.5.0", "Failed", "Verified")
    cluster.wait_for_phase(NAMESPACE, "shop-v1.5.1", "Verified", "Failed")
    show("kubectl get releases -n gantry -o wide", kubectl.get(cluster, "Release", NAMESPACE, wide=True))
    show(
        "kubectl describe release shop-v1.5.0 -n gantry   # (events)",
        kubectl.describe_events(cluster, NAMESPACE, "shop-v1.5.0"),
    )
    run = failed["status"]["stages"][-1]
    print("staging images recorded before v1.5.0 and restored by its rollback:")
    for change in run["images"]:
        before, after = short_digest(change["before"]), short_digest(change["after"])
        print(f"  {change['workload']} {change['container']}: {after} -> {before}")
    history = cluster.must_get("EnvironmentLock", NAMESPACE, "staging")["status"]["history"]
    print("staging lock history: " + ", ".join(f"{h['release']} ({h['reason']})" for h in history))

    say("3. On-call approves v1.4.0 for production; it bakes against Prometheus and is Released")
    traffic(cluster, prometheus, "20 req/s, no errors", lambda rate, ratio: rate > 15 and ratio < 0.05)
    approve("shop-v1.4.0")
    cluster.wait_for_phase(NAMESPACE, "shop-v1.4.0", "Baking", "Released", "Failed", timeout=60)
    show(
        "kubectl get releases -n gantry   # baking: 1 s evaluations of the 5xx ratio",
        kubectl.get(cluster, "Release", NAMESPACE),
    )
    cluster.wait_for_phase(NAMESPACE, "shop-v1.4.0", "Released", "RolledBack", "Held", "Failed", timeout=90)
    status(cluster)

    say("4. v1.5.1 is approved; while it bakes, its error rate jumps to 50 % and Gantry rolls back")
    approve("shop-v1.5.1")
    cluster.wait_for_phase(NAMESPACE, "shop-v1.5.1", "Baking", "Released", "Failed", timeout=60)
    app.set("shop-production", rps=20, error_ratio=0.5)
    print("(the checkout starts failing: 50 % of requests answer 5xx)")
    cluster.wait_for_phase(NAMESPACE, "shop-v1.5.1", "RolledBack", "Released", "Held", "Failed", timeout=90)
    app.set("shop-production", rps=20, error_ratio=0.0)
    status(cluster)
    show(
        "kubectl describe release shop-v1.5.1 -n gantry   # (events)",
        kubectl.describe_events(cluster, NAMESPACE, "shop-v1.5.1"),
    )
    lines: list[str] = []
    kubectl_gantry(["-n", NAMESPACE, "history", "shop"], out=lines.append)
    show("kubectl gantry history shop -n gantry", "\n".join(lines))
    show("kubectl get deployments (images)", images(cluster))
    print("alerts sent to the team:")
    for alert, _ in alerts.alerts:
        print(f"  {alert.severity:<8} {alert.reason}: {alert.message[:150]}")
    quarantined = (cluster.must_get("Pipeline", NAMESPACE, "shop").get("status") or {}).get(
        "quarantine"
    ) or []
    print("quarantined digests (a new Release carrying one is refused until someone lifts it):")
    for entry in quarantined:
        print(f"  {entry['digest']} of {entry['release']} ({entry['version']}): {entry['reason']}")
    hotfix(cluster, git, prometheus)


def hotfix(cluster: Cluster, git: tuple[Path, Clone], prometheus: Prometheus) -> None:
    say("5. A data-loss bug in v1.4.0: on-call declares an Emergency; the fix ships from HOT-1")
    lines: list[str] = []
    kubectl_gantry(
        ["-n", NAMESPACE, "emergency", "shop", "--reason", "orders lost on retry", "--yes"], out=lines.append
    )
    show("kubectl gantry emergency shop --reason 'orders lost on retry' -n gantry", "\n".join(lines))
    cluster.wait_for_phase(NAMESPACE, "shop-v1.4.0", "Emergency", timeout=60)
    show("kubectl gantry lock status -n gantry", gantry_says("lock", "status"))
    origin, work = git
    work.git("fetch", "-q", "origin", "--tags")
    work.git("checkout", "-q", "-b", "HOT-1", "v1.4.0")  # the hotfix branch, from the production tag
    revision = work.commit("fix(HOT-1): keep orders on retry")
    work.git("push", "-q", "origin", "HOT-1")
    work.git("checkout", "-q", "main")
    image = f"docker.io/library/nginx@sha256:{'d' * 64}"
    request = Request(
        NAMESPACE, "shop", revision, str(origin), [f"web={image}"], name="shop-v1.4.1", hotfix=True
    )
    publish.create(cluster.kube, request, RegistryClient())
    show(
        f"gantry release create --hotfix --application shop --revision {revision} "
        f"--artifact web={image} --name shop-v1.4.1   # CI, on HOT-1",
        "release.gantry.dev/shop-v1.4.1 created",
    )
    cluster.wait_for_phase(NAMESPACE, "shop-v1.4.1", "Verified", "Failed", "Blocked", timeout=60)
    traffic(cluster, prometheus, "20 req/s, no errors", lambda rate, ratio: rate > 15 and ratio < 0.05)
    approve("shop-v1.4.1")
    done = cluster.wait_for_phase(
        NAMESPACE, "shop-v1.4.1", "Released", "RolledBack", "Held", "Failed", timeout=90
    )
    status(cluster)
    show("kubectl gantry lock status -n gantry   # the freeze lifted", gantry_says("lock", "status"))
    print(f"shop-v1.4.1: {done['status']['message']}")


def deploy_repository(cluster: Cluster, tmp: Path, tools: contextlib.ExitStack) -> Path:
    """The seed's deploy repository: shop/ (a kustomization over the web Deployment) on main, which
    staging runs, and on production; a GitOps tool applies each branch to its namespace."""
    web = next(d for d in load("workloads.yaml") if d["kind"] == "Deployment")
    (tmp / "deploy").mkdir()
    origin = branch_per_environment(tmp / "deploy", [web])
    for branch, namespace in (("main", "shop-staging"), ("production", "shop-production")):
        tools.enter_context(Syncer(cluster, origin, "shop", branch=branch, namespace=namespace))
    say(f"GitOps mode: deploy repository {origin.name} (main: staging, production: production)")
    return origin


def through_git(pipeline: dict[str, Any], origin: Path) -> None:
    """Staging commits to main; production takes the tag of what staging ran, merged."""
    *_, staging, production = pipeline["spec"]["stages"]
    staging["git"] = {"repository": str(origin), "branch": "main", "path": "shop"}
    production["git"] = {
        "repository": str(origin),
        "branch": "production",
        "path": "shop",
        "promoteFrom": "staging",
    }


def show_deploy_repository(origin: Path) -> None:
    say("The deploy repository: every promotion and rollback is a commit")
    for what in (
        ["log", "--format=%h %s", "main"],
        ["log", "--first-parent", "--format=%h %s", "production"],
        ["tag"],
    ):
        out = subprocess.run(
            ["git", "--git-dir", str(origin), *what], check=True, capture_output=True, text=True
        ).stdout
        show(f"git {' '.join(what)}", out.rstrip())


def gantry_says(*argv: str) -> str:
    lines: list[str] = []
    kubectl_gantry(["-n", NAMESPACE, *argv], out=lines.append)
    return "\n".join(lines)


def traffic(cluster: Cluster, prometheus: Prometheus, what: str, shows: Any) -> None:
    """Wait until Prometheus's 5 s rates for production show `what` (a fresh Prometheus has none)."""
    selector = 'namespace="shop-production"'
    total = f"sum(rate(http_requests_total{{{selector}}}[5s]))"
    errors = f'sum(rate(http_requests_total{{{selector},code=~"5.."}}[5s]))'

    def seen() -> bool:
        rate, ratio = prometheus.query(total), prometheus.query(f"{errors} / {total}")
        return bool(rate and ratio) and shows(float(rate[0]["value"][1]), float(ratio[0]["value"][1]))

    cluster.wait_for(f"Prometheus to show {what}", seen, timeout=60, interval=0.5)
    print(f"Prometheus shows production at {what}")


def approve(release: str) -> None:
    lines: list[str] = []
    kubectl_gantry(
        ["-n", NAMESPACE, "approve", release, "--reason", "looks good in staging"], out=lines.append
    )
    show(f"kubectl gantry approve {release} -n gantry", "\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
