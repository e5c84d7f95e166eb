"""Injected API faults on random writes: conflicts (409), server errors (503) and timeouts (504, or
a silent server; the write applied or not). The operator retries and converges on exactly the
state a fault-free run reaches."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from tests.conftest import FAST
from tests.e2e import manifests as m
from tests.e2e.test_staging_flow import setup_app
from tests.harness.apiserver import ApiStatus, Key, Timeout
from tests.harness.cluster import Cluster
from tests.harness.operator import OperatorThread, RecordingAlerter

pytestmark = pytest.mark.e2e
WRITES = ("POST", "PUT", "PATCH")
TOUCHED = ("releases", "environmentlocks", "deployments", "jobs", "pipelines")


def inject_faults(cluster: Cluster, seed: int, conflict: float, unavailable: float) -> Counter[str]:
    assert cluster.server is not None
    chance = random.Random(seed)
    injected: Counter[str] = Counter()

    def fault(method: str, key: Key, name: str | None) -> ApiStatus | None:
        if method not in WRITES or key[2] not in TOUCHED:
            return None
        roll = chance.random()
        if roll < conflict:
            injected["409"] += 1
            return ApiStatus(409, "Conflict", "injected: the object has been modified; please retry")
        if roll < conflict + unavailable:
            injected["503"] += 1
            return ApiStatus(
                503, "ServiceUnavailable", "injected: the server is currently unable to handle it"
            )
        return None

    cluster.server.fault_hooks.append(fault)
    return injected


@pytest.mark.emulator_only("injects faults through the emulated API server")
@pytest.mark.parametrize("seed", [1, 2])
def test_the_staging_flow_converges_under_injected_conflicts_and_server_errors(
    cluster: Cluster, operator: OperatorThread, namespace: str, seed: int
) -> None:
    setup_app(cluster, namespace)
    injected = inject_faults(cluster, seed, conflict=0.15, unavailable=0.10)
    generation = cluster.must_get("Deployment", namespace, "web")["metadata"]["generation"]

    cluster.apply_with_retries = None  # the test's own writes below retry too (faults hit everyone)
    body: dict[str, Any] = {}
    for _ in range(20):
        try:
            body = cluster.apply(m.release(namespace, "shop-v1", "v1"))
            break
        except Exception:
            continue
    assert body, "could not create the Release through the injected faults"
    done = cluster.wait_for_phase(namespace, "shop-v1", "Verified", "Failed", timeout=60)

    assert_verified_exactly_once(cluster, namespace, done, generation)
    assert injected["409"] > 0 and injected["503"] > 0, injected  # the faults really happened


def inject_timeouts(cluster: Cluster, seed: int, chance_of_timeout: float, stall: float) -> Counter[str]:
    """Writes that time out three ways: 504 after the write took effect, and the client giving up
    on a silent server before or after the write took effect. The first write to each kind of
    object always times out, so deploys and test Jobs are hit too, not only the busy statuses."""
    assert cluster.server is not None
    chance = random.Random(seed)
    injected: Counter[str] = Counter()
    kinds = itertools.cycle(("applied-silent", "applied-504", "lost-silent"))
    for _ in range(seed):
        next(kinds)  # each seed pairs kinds of objects with different kinds of timeout

    def fault(method: str, key: Key, name: str | None) -> Timeout | None:
        if method not in WRITES or key[2] not in TOUCHED:
            return None
        if key[2] in injected and chance.random() >= chance_of_timeout:
            return None
        kind = next(kinds)
        injected[kind] += 1
        injected[key[2]] += 1
        return Timeout(applied=kind.startswith("applied"), stall=0.0 if kind.endswith("504") else stall)

    cluster.server.fault_hooks.append(fault)
    return injected


@pytest.mark.emulator_only("injects faults through the emulated API server")
@pytest.mark.parametrize("seed", [3, 4])
def test_the_staging_flow_converges_when_writes_time_out_applied_or_not(
    cluster: Cluster, alerts: RecordingAlerter, namespace: str, seed: int
) -> None:
    """A timed-out write may or may not have happened; the operator must not care which. Its
    API timeout is cut to 0.5 s so a silent server costs little."""
    setup_app(cluster, namespace)
    generation = cluster.must_get("Deployment", namespace, "web")["metadata"]["generation"]
    cluster.apply(m.release(namespace, "shop-v1", "v1"))
    injected = inject_timeouts(cluster, seed, chance_of_timeout=0.3, stall=1.0)
    running = OperatorThread(replace(FAST, api_timeout=0.5), alerts).start()
    try:
        done = cluster.wait_for_phase(namespace, "shop-v1", "Verified", "Failed", timeout=90)
    finally:
        running.stop()

    assert_verified_exactly_once(cluster, namespace, done, generation)
    assert min(injected[k] for k in ("applied-silent", "applied-504", "lost-silent")) > 0, injected
    assert min(injected[k] for k in ("releases", "environmentlocks", "deployments", "jobs")) > 0, injected


def assert_verified_exactly_once(
    cluster: Cluster, namespace: str, done: dict[str, Any], generation: int
) -> None:
    """shop-v1 went through staging as in a fault-free run: one deploy, one test Job, one lock
    grant, and no step recorded twice."""
    assert done["status"]["phase"] == "Verified", done["status"]["message"]
    assert cluster.images("Deployment", namespace, "worker") == {"worker": m.image("worker", "v1")}
    assert cluster.must_get("Deployment", namespace, "web")["metadata"]["generation"] == generation + 1
    assert len(cluster.list("Job", namespace, "gantry.dev/release=shop-v1")) == 1
    lock = cluster.must_get("EnvironmentLock", namespace, "staging")["status"]
    assert "holder" not in lock and [h["reason"] for h in lock["history"]] == ["Passed"]
    steps = [(e["phase"], e.get("stage"), e["reason"]) for e in done["status"]["history"]]
    assert all(a != b for a, b in itertools.pairwise(steps)), steps
