"""Progress follows the watch event that ended a wait, not the next tick.

The operator here looks at Releases on its timer only once a minute: every step that finishes
well within that (a rollout, a test Job, a lock handed on) was noticed from its watch event.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from gantry.settings import Config
from tests.e2e import manifests as m
from tests.e2e.test_edges import v1_held_mid_rollout
from tests.e2e.test_staging_flow import setup_app
from tests.harness.cluster import Cluster
from tests.harness.operator import OperatorThread, RecordingAlerter

pytestmark = pytest.mark.e2e

SLOW_TICKS = Config(reconcile_interval=60, waiting_interval=0.3, lock_sweep_interval=0.5, metrics_port=0)
WITHIN = 40  # seconds: far less than one tick, far more than the work on a loaded machine


@pytest.fixture
def slow_ticks(cluster: Cluster) -> Iterator[OperatorThread]:
    running = OperatorThread(SLOW_TICKS, RecordingAlerter()).start()
    yield running
    running.stop()


def test_a_locked_tested_stage_goes_through_without_waiting_for_a_tick(
    cluster: Cluster, slow_ticks: OperatorThread, namespace: str
) -> None:
    setup_app(cluster, namespace)
    cluster.apply(m.release(namespace, "shop-v1", "v1"))
    body = cluster.wait_for_phase(namespace, "shop-v1", "Verified", "Failed", timeout=WITHIN)
    assert body["status"]["phase"] == "Verified", body["status"]["message"]
    assert cluster.images("Deployment", namespace, "web")["web"] == m.image("web", "v1")
    # What the operator's watch selects on: only workloads Gantry re-pinned carry it.
    labels = cluster.must_get("Deployment", namespace, "web")["metadata"]["labels"]
    assert labels["gantry.dev/pipeline"] == "shop"


@pytest.mark.emulator_only("holds a rollout with the stand-in controller")
def test_a_slow_rollout_is_noticed_from_its_watch_event(
    cluster: Cluster, slow_ticks: OperatorThread, namespace: str
) -> None:
    v1_held_mid_rollout(cluster, namespace)

    def step() -> str | None:
        runs = (cluster.release(namespace, "shop-v1").get("status") or {}).get("stages") or [{}]
        return runs[-1].get("step")

    cluster.wait_for("the rollout to be waited on", lambda: step() == "RollingOut", timeout=WITHIN)
    time.sleep(1)  # the reconcile that started the rollout is over: only an event can move it now
    cluster.release_rollouts(namespace, "web")
    body = cluster.wait_for_phase(namespace, "shop-v1", "Verified", "Failed", timeout=WITHIN)
    assert body["status"]["phase"] == "Verified", body["status"]["message"]
    assert slow_ticks.memo.wakeups.rung["workload"] >= 1, slow_ticks.memo.wakeups.rung


def test_releases_racing_for_the_lock_each_take_it_as_soon_as_it_is_free(
    cluster: Cluster, slow_ticks: OperatorThread, namespace: str
) -> None:
    setup_app(cluster, namespace)
    names = [f"shop-r{i}" for i in range(3)]
    for i, name in enumerate(names):
        cluster.apply(m.release(namespace, name, f"r{i}", version=f"v1.{i}.0"))
    for name in names:  # whoever queued was handed the lock by its watch event, not a tick
        body = cluster.wait_for_phase(namespace, name, "Verified", "Failed", timeout=WITHIN)
        assert body["status"]["phase"] == "Verified", body["status"]["message"]


def test_a_look_cut_short_with_more_to_do_goes_on_at_once(
    cluster: Cluster, slow_ticks: OperatorThread, namespace: str
) -> None:
    """On a loaded machine the rollouts and the Job finish as fast as Gantry writes, so one look
    can run out of steps with nothing left to wait on: the next look follows at once, not a tick
    later. Here every look is cut short after one step."""
    slow_ticks.memo.reconciler.max_steps = 1
    setup_app(cluster, namespace, script="echo broken; exit 1")
    cluster.apply(m.release(namespace, "shop-v1", "v1"))
    body = cluster.wait_for_phase(namespace, "shop-v1", "Failed", "Verified", timeout=WITHIN)
    assert body["status"]["phase"] == "Failed", body["status"]["message"]
    assert body["status"]["reason"] == "TestFailed"
    assert cluster.images("Deployment", namespace, "web")["web"] == m.OLD_WEB  # rolled back


def test_a_finished_release_leaves_the_watch_and_deletes_without_the_operator(
    cluster: Cluster, slow_ticks: OperatorThread, namespace: str
) -> None:
    setup_app(cluster, namespace, script="echo broken; exit 1")
    cluster.apply(m.release(namespace, "shop-v1", "v1"))
    body = cluster.wait_for_phase(namespace, "shop-v1", "Failed", "Verified", timeout=WITHIN)
    assert body["status"]["phase"] == "Failed", body["status"]["message"]

    def labelled() -> dict[str, object] | None:
        meta = cluster.release(namespace, "shop-v1")["metadata"]
        return meta if (meta.get("labels") or {}).get("gantry.dev/finished") == "true" else None

    meta = cluster.wait_for("the finished label", labelled, timeout=WITHIN)
    assert not meta.get("finalizers")  # Kopf took its own off before Gantry labelled it
    slow_ticks.stop()
    cluster.delete("Release", namespace, "shop-v1")  # no operator running: nothing holds it
    cluster.wait_for(
        "the Release gone", lambda: cluster.get("Release", namespace, "shop-v1") is None, timeout=30
    )


def with_production(cluster: Cluster, namespace: str) -> None:
    """staging, then production (promotion Manual, no bake) in a namespace of its own."""
    prod = f"{namespace}-prod"
    for workload in m.workloads(namespace) + m.workloads(prod):
        cluster.apply(workload)
    pipeline = m.pipeline(namespace)
    pipeline["spec"]["stages"][1]["targets"] = [{"namespace": prod, "name": n} for n in ("web", "worker")]
    cluster.apply(pipeline)


def test_a_release_approved_the_moment_it_waits_still_gets_a_driver_and_goes_on(
    cluster: Cluster, slow_ticks: OperatorThread, namespace: str
) -> None:
    """A Release waiting for a person has no driver (its Kopf daemon stops as it begins to wait).
    A bot that approves the instant a Release is Verified races that stop; each must still go to
    production at once (not at a tick, and not never), and the waiting one carries no finalizer."""
    import threading

    with_production(cluster, namespace)
    stop = threading.Event()
    approved: set[str] = set()

    def bot() -> None:
        while not stop.is_set():
            for body in cluster.list("Release", namespace):
                name = body["metadata"]["name"]
                if (body.get("status") or {}).get("phase") == "Verified" and name not in approved:
                    cluster.apply(m.decision(namespace, name, "Approve", by="release-bot"))
                    approved.add(name)
            time.sleep(0.01)

    watcher = threading.Thread(target=bot, daemon=True)
    watcher.start()
    try:
        for minor in range(4):
            name = f"shop-v1-{minor}"
            cluster.apply(m.release(namespace, name, f"v1{minor}", version=f"v1.{minor}.0"))
            body = cluster.wait_for_phase(namespace, name, "Released", "Failed", "Blocked", timeout=WITHIN)
            assert body["status"]["phase"] == "Released", body["status"]["message"]
    finally:
        stop.set()
        watcher.join(5)
    assert approved == {f"shop-v1-{minor}" for minor in range(4)}


def test_a_release_that_waits_for_a_person_carries_no_driver_and_no_finalizer(
    cluster: Cluster, slow_ticks: OperatorThread, namespace: str
) -> None:
    with_production(cluster, namespace)
    cluster.apply(m.release(namespace, "shop-v1", "v1"))
    cluster.wait_for_phase(namespace, "shop-v1", "Verified", "Failed", timeout=WITHIN)
    cluster.wait_for(
        "Kopf's finalizer off the waiting Release",
        lambda: not cluster.release(namespace, "shop-v1")["metadata"].get("finalizers"),
        timeout=WITHIN,
    )
    cluster.apply(m.decision(namespace, "shop-v1", "Approve"))
    body = cluster.wait_for_phase(namespace, "shop-v1", "Released", "Failed", timeout=WITHIN)
    assert body["status"]["phase"] == "Released", body["status"]["message"]
