"""Releases contending for the staging EnvironmentLock, and leases that outlive their holder."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gantry.adapters.kube import ApiError
from tests.e2e import manifests as m
from tests.e2e.test_staging_flow import setup_app
from tests.harness.cluster import Cluster
from tests.harness.operator import OperatorThread

pytestmark = pytest.mark.e2e


def record_lock_states(cluster: Cluster) -> list[dict[str, Any]]:
    """Every state the lock's status passes through, as the API server committed them."""
    states: list[dict[str, Any]] = []
    assert cluster.server is not None

    def hook(kind: str, key: tuple[str, str, str], obj: dict[str, Any]) -> None:
        if key[2] == "environmentlocks":
            states.append(obj.get("status") or {})

    cluster.server.change_hooks.append(hook)
    return states


def staging_runs(cluster: Cluster, namespace: str, names: list[str]) -> list[dict[str, Any]]:
    runs = []
    for name in names:
        status = cluster.release(namespace, name)["status"]
        assert status["phase"] == "Verified", (name, status.get("message"))
        runs.append({"release": name, **status["stages"][0]})
    return sorted(runs, key=lambda r: r["lockAcquiredAt"])


@pytest.mark.emulator_only("observes every committed lock state through the emulator")
@pytest.mark.parametrize("contenders", [2, 10])
def test_racing_releases_take_turns_in_queue_order(
    cluster: Cluster, operator: OperatorThread, namespace: str, contenders: int
) -> None:
    setup_app(cluster, namespace)
    states = record_lock_states(cluster)
    names = [f"shop-r{i}" for i in range(contenders)]
    for name in names:
        cluster.apply(m.release(namespace, name, name))
    for name in names:
        cluster.wait_for_phase(namespace, name, "Verified", "Failed", timeout=60)

    runs = staging_runs(cluster, namespace, names)
    # Never two holders: each stage run ended before the next one acquired the lock.
    for earlier, later in itertools.pairwise(runs):
        assert earlier["finishedAt"] <= later["lockAcquiredAt"], (earlier["release"], later["release"])
    # Each deploy's "before" is exactly the previous holder's "after": no interleaving, exact records.
    for earlier, later in itertools.pairwise(runs):
        after = {(i["workload"], i["container"]): i["after"] for i in earlier["images"]}
        before = {(i["workload"], i["container"]): i["before"] for i in later["images"]}
        assert before == after
    # Queue order kept: the lock went to waiters in the order they joined the queue.
    joined: list[str] = []
    for state in states:
        for waiter in state.get("queue") or ():
            if waiter["release"] not in joined:
                joined.append(waiter["release"])
    acquired = [f"{namespace}/{r['release']}" for r in runs]
    queued_acquisitions = [r for r in acquired if r in joined]
    assert queued_acquisitions == joined
    assert len(joined) >= contenders - 1
    # At no committed moment was a holder also waiting, or anyone queued twice.
    for state in states:
        queue = [w["uid"] for w in state.get("queue") or ()]
        assert len(queue) == len(set(queue))
        holder = state.get("holder")
        assert holder is None or holder["uid"] not in queue
    final = cluster.must_get("EnvironmentLock", namespace, "staging")["status"]
    assert "holder" not in final and final["queueLength"] == 0
    assert cluster.images("Deployment", namespace, "web")["web"] == runs[-1]["images"][0]["after"]


def test_a_crashed_holder_loses_the_lock_when_its_lease_expires(
    cluster: Cluster, operator: OperatorThread, namespace: str
) -> None:
    setup_app(cluster, namespace)
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    cluster.apply(m.environment_lock(namespace, lease_seconds=2))
    # The holder's operator crashed: its Release still exists (blocked here, so no operator takes
    # it up again); only its lease can free the lock. (A holder whose Release was deleted is freed
    # at once: tests/e2e/test_edges.py.)
    body = cluster.apply(m.release(namespace, "ghost", "ghost", version="v0.9.0", pipeline_name="absent"))
    ghost = {"release": f"{namespace}/ghost", "uid": body["metadata"]["uid"], "since": now, "renewTime": now}
    # A merge patch, not a replace: the running operator may have written the lock since it was
    # applied (Kopf's finalizer), and a replace carrying the old resourceVersion would get 409.
    cluster.kube.merge_patch(
        f"/apis/gantry.dev/v1alpha1/namespaces/{namespace}/environmentlocks/staging/status",
        {"status": {"holder": ghost, "queue": [], "queueLength": 0, "history": []}},
    )

    cluster.apply(m.release(namespace, "shop-v3", "v3"))
    cluster.wait_for(
        "the Release to say whom it waits for",
        lambda: (
            f"behind {namespace}/ghost"
            in (cluster.release(namespace, "shop-v3").get("status") or {}).get("message", "")
        ),
    )
    assert cluster.release(namespace, "shop-v3")["status"]["phase"] == "Queued"
    assert cluster.images("Deployment", namespace, "web")["web"] == m.OLD_WEB  # nothing deployed while queued

    verified = cluster.wait_for_phase(namespace, "shop-v3", "Verified", "Failed", timeout=20)
    assert verified["status"]["phase"] == "Verified"
    history = cluster.must_get("EnvironmentLock", namespace, "staging")["status"]["history"]
    assert [(h["release"], h["reason"]) for h in history] == [
        (f"{namespace}/ghost", "LeaseExpired"),
        (f"{namespace}/shop-v3", "Passed"),
    ]


def test_a_holder_whose_clock_runs_behind_keeps_the_lock_while_it_renews(
    cluster: Cluster, operator: OperatorThread, namespace: str
) -> None:
    """Another operator (say, in a second cluster sharing nothing but this API server) holds the
    lock and renews it, but its clock is ten minutes behind ours: judged by its timestamps the
    lease ran out long ago; judged, like leader election, by when we saw it renew, it is alive."""
    setup_app(cluster, namespace)
    cluster.apply(m.environment_lock(namespace, lease_seconds=5))  # renewed every 0.5 s
    other = cluster.apply(m.release(namespace, "other", "other", version="v0.9.0", pipeline_name="absent"))
    path = f"/apis/gantry.dev/v1alpha1/namespaces/{namespace}/environmentlocks/staging/status"

    def renew() -> None:
        """As that operator does: read, renew, write with the version read; 409 (Gantry queued the
        next Release in between) means read again."""
        stamp = (datetime.now(UTC) - timedelta(minutes=10)).isoformat().replace("+00:00", "Z")
        holder = {"release": f"{namespace}/other", "uid": other["metadata"]["uid"], "since": stamp}
        for _ in range(20):
            current = cluster.must_get("EnvironmentLock", namespace, "staging")
            status = {**(current.get("status") or {}), "holder": {**holder, "renewTime": stamp}}
            try:
                cluster.kube.replace(path, {**current, "status": status})
                return
            except ApiError as error:
                if error.status != 409:
                    raise
        raise AssertionError("could not renew the lock: 20 conflicts in a row")

    renew()
    cluster.apply(m.release(namespace, "shop-v3", "v3"))
    deadline = time.monotonic() + 8  # past the 5 s lease; by the holder's stamps it ran out at once
    while time.monotonic() < deadline:
        renew()
        time.sleep(0.5)
        status = cluster.release(namespace, "shop-v3").get("status") or {}
        assert status.get("phase") in (None, "Pending", "Queued"), status
    assert cluster.images("Deployment", namespace, "web")["web"] == m.OLD_WEB
    # It stops renewing (crashed): one lease after we last saw it renew, the lock is taken over.
    verified = cluster.wait_for_phase(namespace, "shop-v3", "Verified", "Failed", timeout=30)
    assert verified["status"]["phase"] == "Verified", verified["status"]["message"]
    history = cluster.must_get("EnvironmentLock", namespace, "staging")["status"]["history"]
    assert (history[0]["release"], history[0]["reason"]) == (f"{namespace}/other", "LeaseExpired")


def test_applying_a_pipeline_makes_its_locks_free_and_a_freeze_set_before_the_first_release_holds_it(
    cluster: Cluster, operator: OperatorThread, namespace: str
) -> None:
    from tests.e2e.test_freezes import frozen_out, window_open_now

    setup_app(cluster, namespace)
    lock = cluster.wait_for(
        "the staging lock, made with the Pipeline",
        lambda: cluster.get("EnvironmentLock", namespace, "staging"),
    )
    assert lock["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "gantry"
    assert not (lock.get("status") or {}).get("holder")
    assert not cluster.list("Release", namespace)  # no Release has asked for it yet

    # Frozen before anything was ever deployed there: the first Release waits, nothing changes.
    body = cluster.must_get("EnvironmentLock", namespace, "staging")
    body["spec"]["freezeWindows"] = [window_open_now("launch-day")]
    cluster.apply(body)
    cluster.apply(m.release(namespace, "shop-v1", "v1"))
    held = frozen_out(cluster, namespace, "shop-v1")
    assert "launch-day" in held["message"]
    assert cluster.images("Deployment", namespace, "web")["web"] == m.OLD_WEB
