"""The quick-start demo: Gantry's staging flow end to end, with no cluster.

Runs the real operator against the embedded API emulator, applies the files in examples/,
and prints what `kubectl get` shows at each step:

1. v1.4.0 goes through dev and staging (under the staging lock, tested) and is Verified.
2. v1.5.0 and v1.5.1 race for the staging lock; v1.5.0's integration tests fail, so staging
   is rolled back to exactly what it ran before, and v1.5.1 (queued behind it) then passes.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from gantry.settings import Config
from tests.harness import kubectl
from tests.harness.cluster import ROOT, Cluster, cluster_for_tests
from tests.harness.operator import OperatorThread, RecordingAlerter

NAMESPACE = "gantry"
EXAMPLES = ROOT / "examples"
BROKEN_VERSION = "v1.5.0"


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def show(command: str, output: str) -> None:
    print(f"$ {command}\n{output}", flush=True)


def load(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


def new_release(base: dict[str, Any], version: str, seed: str) -> dict[str, Any]:
    release = copy.deepcopy(base)
    release["metadata"]["name"] = f"shop-{version}"
    release["spec"]["version"] = version
    image = release["spec"]["artifacts"][0]["image"].split("@")[0]
    release["spec"]["artifacts"][0]["image"] = f"{image}@sha256:{seed * 64}"[: len(image) + 72]
    return release


def images(cluster: Cluster) -> str:
    rows = []
    for namespace in ("shop-dev", "shop-staging", "shop-production"):
        image = cluster.images("Deployment", namespace, "web")["web"]
        rows.append(f"{namespace:<16} web  {image.split('/')[-1][:32]}…")
    return "\n".join(rows)


def stage_of(cluster: Cluster, name: str) -> str:
    return str((cluster.must_get("Release", NAMESPACE, name).get("status") or {}).get("stage", ""))


def fail_broken_version(job: dict[str, Any], code: int) -> int:
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0].get("env", [])}
    return 1 if env.get("GANTRY_VERSION") == BROKEN_VERSION else code


def main() -> int:
    logging.basicConfig(level=logging.ERROR)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, cluster_for_tests(Path(tmp)) as cluster:
        os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
        assert cluster.controllers is not None
        cluster.controllers.job_exit_code = fail_broken_version
        say("An emulated Kubernetes API server is up; Gantry's CRDs are installed from crds/")
        alerts = RecordingAlerter()
        operator = OperatorThread(
            Config(reconcile_interval=0.2, waiting_interval=0.3, lock_sweep_interval=1.0, metrics_port=0),
            alerts,
        ).start()
        try:
            cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
            for manifest in load("workloads.yaml") + load("pipeline.yaml"):
                cluster.apply(manifest)
            cluster.wait_for(
                "the Pipeline to be validated",
                lambda: (cluster.must_get("Pipeline", NAMESPACE, "shop").get("status") or {}).get(
                    "stageSummary"
                ),
            )
            show(
                "kubectl apply -f examples/ && kubectl get pipelines -n gantry",
                kubectl.get(cluster, "Pipeline", NAMESPACE),
            )
            show("kubectl get deployments (images)", images(cluster))

            say("1. A Release of v1.4.0 (examples/release.yaml)")
            base = load("release.yaml")[0]
            cluster.apply(base)
            name = base["metadata"]["name"]
            cluster.wait_for_phase(NAMESPACE, name, "Deploying", "Testing", "Verified", "Failed")
            show(
                "kubectl get releases -n gantry   # a moment later",
                kubectl.get(cluster, "Release", NAMESPACE),
            )
            cluster.wait_for_phase(NAMESPACE, name, "Verified", "Failed")
            show("kubectl get releases -n gantry", kubectl.get(cluster, "Release", NAMESPACE))
            show("kubectl get deployments (images)", images(cluster))

            say(f"2. v1.5.0 and v1.5.1 race for the staging lock; {BROKEN_VERSION}'s integration tests fail")
            cluster.apply(new_release(base, "v1.5.0", "b"))
            cluster.wait_for("v1.5.0 to reach staging", lambda: stage_of(cluster, "shop-v1.5.0") == "staging")
            cluster.apply(new_release(base, "v1.5.1", "c"))
            cluster.wait_for_phase(NAMESPACE, "shop-v1.5.1", "Queued")
            show("kubectl get releases -n gantry", kubectl.get(cluster, "Release", NAMESPACE))
            show(
                "kubectl get environmentlocks -n gantry -o wide",
                kubectl.get(cluster, "EnvironmentLock", NAMESPACE, wide=True),
            )
            failed = cluster.wait_for_phase(NAMESPACE, "shop-v1.5.0", "Failed", "Verified")
            cluster.wait_for_phase(NAMESPACE, "shop-v1.5.1", "Verified", "Failed")
            show(
                "kubectl get releases -n gantry -o wide",
                kubectl.get(cluster, "Release", NAMESPACE, wide=True),
            )
            show(
                "kubectl describe release shop-v1.5.0 -n gantry   # (events)",
                kubectl.describe_events(cluster, NAMESPACE, "shop-v1.5.0"),
            )
            run = failed["status"]["stages"][-1]
            print("staging images recorded before v1.5.0 and restored by its rollback:")
            for change in run["images"]:
                before, after = change["before"][-20:], change["after"][-20:]
                print(f"  {change['workload']} {change['container']}: {after} -> {before}")
            print(f"alerts sent to the team: {[(a.reason, a.message) for a, _ in alerts.alerts]}")
            show("kubectl get environmentlocks -n gantry", kubectl.get(cluster, "EnvironmentLock", NAMESPACE))
            history = cluster.must_get("EnvironmentLock", NAMESPACE, "staging")["status"]["history"]
            print("staging lock history: " + ", ".join(f"{h['release']} ({h['reason']})" for h in history))
            show("kubectl get deployments (images)", images(cluster))
        finally:
            operator.stop()
    say(f"Done in {time.monotonic() - started:.1f}s. Verified Releases are ready for production.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
