"""Fault injection across the whole flow: the operator SIGKILLed at random moments from staging
through production to a rollback, and fifty Releases of ten applications sharing staging locks.

Both read what the API server committed (every Deployment image and every lock state, through
the emulator's change hooks), so they run on the emulator only.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from gantry.settings import Config
from tests.conftest import FAST
from tests.e2e import manifests as m
from tests.e2e.test_staging_flow import setup_app
from tests.harness.cluster import Cluster
from tests.harness.operator import OperatorProcess, OperatorThread, RecordingAlerter

pytestmark = pytest.mark.e2e
PROD = "shop-prod"
CHAOS_CONFIG = Config(reconcile_interval=0.2, waiting_interval=0.3, lock_sweep_interval=0.5, metrics_port=0)


def image_history(cluster: Cluster) -> dict[tuple[str, str, str], list[str]]:
    """(namespace, deployment, container) -> the images it ran, consecutive repeats collapsed."""
    assert cluster.server is not None
    seen: dict[tuple[str, str, str], list[str]] = defaultdict(list)

    def hook(kind: str, key: tuple[str, str, str], obj: dict[str, Any]) -> None:
        if key[2] != "deployments" or kind == "DELETED":
            return
        meta = obj["metadata"]
        for container in obj["spec"]["template"]["spec"]["containers"]:
            images = seen[(meta["namespace"], meta["name"], container["name"])]
            if not images or images[-1] != container["image"]:
                images.append(container["image"])

    cluster.record_changes(hook)  # from what is there now: the first image is part of the history
    return seen


def chaos_pipeline(namespace: str) -> dict[str, Any]:
    both = [{"namespace": namespace, "name": "web"}, {"namespace": namespace, "name": "worker"}]
    return {
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": "shop", "namespace": namespace},
        "spec": {
            "application": "shop",
            "requireTag": False,  # these tests' Releases name their version and carry no git source
            "stages": [
                {
                    "name": "staging",
                    "lock": True,
                    "targets": both,
                    "test": {"jobTemplate": m.test_job_template("exit 0"), "timeoutSeconds": 60},
                },
                {
                    "name": "production",
                    "production": True,
                    "promotion": "Auto",
                    "targets": [{"namespace": PROD, "name": "web"}, {"namespace": PROD, "name": "worker"}],
                },
            ],
        },
    }


class Killer:
    """Keeps one operator process running and SIGKILLs it at random moments, `kills` times."""

    def __init__(self, cluster: Cluster, log: Path, rng: random.Random, kills: int) -> None:
        self.cluster, self.log, self.rng, self.left = cluster, log, rng, kills
        self.kills: list[float] = []
        self.process = OperatorProcess(cluster.kubeconfig, CHAOS_CONFIG, log).start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while self.left > 0 and not self._stop.wait(self.rng.uniform(0.2, 1.0)):
            self.process.kill()
            self.kills.append(time.monotonic())
            self.left -= 1
            self.process = OperatorProcess(self.cluster.kubeconfig, CHAOS_CONFIG, self.log).start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
        self.process.stop()


def phases(status: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for entry in status.get("history") or ():
        if not out or out[-1] != entry["phase"]:
            out.append(entry["phase"])
    return out


@pytest.mark.emulator_only("reads every committed Deployment state through the emulator")
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_sigkill_at_random_moments_from_staging_to_production_rollback_leaves_a_correct_end_state(
    cluster: Cluster, namespace: str, tmp_path: Path, seed: int
) -> None:
    for workload in m.workloads(namespace) + m.workloads(PROD):
        cluster.apply(workload)
    cluster.apply(chaos_pipeline(namespace))
    images = image_history(cluster)
    killer = Killer(cluster, tmp_path / "operator.log", random.Random(seed), kills=8)
    try:
        cluster.apply(m.release(namespace, "shop-v1", "v1", version="v1.0.0"))
        cluster.wait_for_phase(namespace, "shop-v1", "Released", "Failed", "RolledBack", timeout=90)
        cluster.apply(m.release(namespace, "shop-v2", "v2", version="v1.1.0"))
        cluster.wait_for_phase(namespace, "shop-v2", "Released", "Failed", "RolledBack", timeout=90)
        cluster.apply(m.decision(namespace, "shop-v2", "Rollback", by="oncall"))
        cluster.wait_for_phase(namespace, "shop-v2", "RolledBack", "Failed", timeout=90)
    finally:
        killer.stop()
    assert killer.kills, "the operator was never killed"

    v1 = {"web": m.image("web", "v1"), "worker": m.image("worker", "v1")}
    v2 = {"web": m.image("web", "v2"), "worker": m.image("worker", "v2")}
    old = {"web": m.OLD_WEB, "worker": m.OLD_WORKER}
    for container in ("web", "worker"):
        # Production: each version applied once, and the rollback re-applied v1's exact digests.
        assert images[(PROD, container, container)] == [
            old[container],
            v1[container],
            v2[container],
            v1[container],
        ]
        # Staging ran each version once; it still ran v2 when production rolled back, so it was reverted too.
        assert images[(namespace, container, container)] == [
            old[container],
            v1[container],
            v2[container],
            v1[container],
        ]
    assert len(images[(namespace, "web", "istio-proxy")]) == 1  # the sidecar was never touched

    first, second = (
        cluster.release(namespace, "shop-v1")["status"],
        cluster.release(namespace, "shop-v2")["status"],
    )
    assert first["phase"] == "Released" and second["phase"] == "RolledBack"
    for status in (first, second):
        # No stage skipped, each tested once, and the history says so in order.
        assert [s["name"] for s in status["stages"]] == ["staging", "production"]
        assert status["stages"][0]["testResult"] == "Succeeded"
        assert phases(status)[-1] == status["phase"]
        order = [p for p in phases(status) if p in ("Testing", "Verified", "Deploying", "Released")]
        assert order[:2] == ["Deploying", "Testing"] and "Verified" in order and "Released" in order
    for name in ("shop-v1", "shop-v2"):
        assert len(cluster.list("Job", namespace, f"gantry.dev/release={name}")) == 1
    lock = cluster.must_get("EnvironmentLock", namespace, "staging")["status"]
    assert "holder" not in lock and not lock.get("queue")  # nobody holds it, dead or alive
    ledger = cluster.must_get("Pipeline", namespace, "shop")["status"]["production"]["history"]
    assert [(e["version"], e["result"]) for e in ledger] == [
        ("v1.0.0", "Released"),
        ("v1.1.0", "RolledBack"),
        ("v1.0.0", "Restored"),
    ]


def contention_pipeline(namespace: str, app: str, environment: str) -> dict[str, Any]:
    return {
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": app, "namespace": namespace},
        "spec": {
            "application": app,
            "stages": [
                {
                    "name": "staging",
                    "environment": environment,
                    "lock": True,
                    "targets": [{"namespace": namespace, "name": app}],
                    "test": {"jobTemplate": m.test_job_template("exit 0"), "timeoutSeconds": 60},
                }
            ],
        },
    }


@pytest.mark.emulator_only("observes every committed lock state through the emulator")
def test_fifty_releases_of_ten_applications_share_three_staging_locks_fairly(
    cluster: Cluster, namespace: str, operator: OperatorThread
) -> None:
    assert cluster.server is not None
    apps = [f"app{a}" for a in range(10)]
    environment = {app: f"staging-{a % 3}" for a, app in enumerate(apps)}
    for app in apps:
        cluster.apply(m.deployment(namespace, app, {"web": m.OLD_WEB}, replicas=1))
        cluster.apply(contention_pipeline(namespace, app, environment[app]))
    failing = {f"{app}-r{r}" for r in range(5) for a, app in enumerate(apps) if (r * 10 + a) % 7 == 3}
    assert cluster.controllers is not None
    cluster.controllers.job_exit_code = lambda job, code: (
        1 if job["metadata"].get("labels", {}).get("gantry.dev/release") in failing else code
    )
    locks: dict[str, list[dict[str, Any]]] = defaultdict(list)
    changes: list[tuple[str, str, str | None]] = []  # (deployment, new image, lock holder then)
    last_image = dict.fromkeys(apps, m.OLD_WEB)

    def hook(kind: str, key: tuple[str, str, str], obj: dict[str, Any]) -> None:
        if key[2] == "environmentlocks":
            locks[obj["metadata"]["name"]].append(obj.get("status") or {})
        elif key[2] == "deployments" and obj["metadata"]["name"] in environment:
            app = obj["metadata"]["name"]
            image = obj["spec"]["template"]["spec"]["containers"][0]["image"]
            if last_image[app] != image:
                last_image[app] = image
                states = locks[environment[app]]
                holder = ((states[-1] if states else {}).get("holder") or {}).get("release")
                changes.append((app, image, holder))

    cluster.server.change_hooks.append(hook)
    names: list[str] = []
    for round_ in range(5):  # interleaved: every application gets a Release per round
        for app in apps:
            name = f"{app}-r{round_}"
            manifest = m.release(namespace, name, name, version=f"v1.{round_}.0")
            manifest["spec"].update(
                application=app, pipeline=app, artifacts=[{"name": "web", "image": m.image("web", name)}]
            )
            cluster.apply(manifest)
            names.append(name)

    ends = {
        n: cluster.wait_for_phase(namespace, n, "Verified", "Failed", timeout=240)["status"] for n in names
    }
    assert {n for n, s in ends.items() if s["phase"] == "Failed"} == failing
    assert {n for n, s in ends.items() if s["phase"] == "Verified"} == set(names) - failing
    # Every image change happened under the lock, by its holder: its own deploy, or its rollback.
    assert len(changes) == len(names) + len(failing)
    for app, image, holder in changes:
        assert holder is not None, (app, image)
        release = holder.split("/", 1)[1]
        assert release.startswith(f"{app}-"), (app, holder)
        assert image == m.image("web", release) or release in failing, (app, image, holder)
    for name, states in locks.items():
        grants: list[str] = []
        joined: list[str] = []
        for state in states:
            holder = (state.get("holder") or {}).get("release")
            queue = [w["release"] for w in state.get("queue") or ()]
            assert holder not in queue and len(queue) == len(set(queue)), (name, state)
            for claimant in [*queue, *([holder] if holder else [])]:
                if claimant not in joined:
                    joined.append(claimant)
            if holder and (not grants or grants[-1] != holder):
                grants.append(holder)
        # First come, first served: the lock was granted in the order Releases joined it.
        assert grants == joined, name
        assert len(grants) == sum(1 for app in apps if environment[app] == name) * 5
        assert "holder" not in states[-1] and not states[-1].get("queue")


def test_two_operators_without_peering_alert_once_per_failed_release(
    cluster: Cluster, operator: OperatorThread, alerts: RecordingAlerter, namespace: str
) -> None:
    """Two replicas both active (no peering): both look at every Release, but only the one whose
    status write won sends the alert, so the team hears of each failure once."""
    second_alerts = RecordingAlerter()
    second = OperatorThread(FAST, second_alerts).start()
    try:
        setup_app(cluster, namespace, script="echo broken; exit 1")
        names = [f"shop-f{i}" for i in range(5)]
        for i, name in enumerate(names):
            cluster.apply(m.release(namespace, name, f"f{i}", version=f"v2.{i}.0"))
        for name in names:
            body = cluster.wait_for_phase(namespace, name, "Failed", "Verified", timeout=90)
            assert body["status"]["reason"] == "TestFailed", body["status"]["message"]

        def told() -> list[str]:
            return [
                a.message
                for a, _ in alerts.alerts + second_alerts.alerts
                if a.reason == "TestFailed" and namespace in a.message
            ]

        cluster.wait_for("an alert per failed Release", lambda: len(told()) >= len(names), timeout=20)
        time.sleep(2)  # a duplicate would come from the other replica's look a tick or two later
        for name in names:
            assert sum(f"{namespace}/{name}:" in said for said in told()) == 1, (name, told())
    finally:
        second.stop()
