"""What a Release waits on (domain.flow.waits) and the bells that the watch events ring (wakeups)."""

from __future__ import annotations

import asyncio
from typing import Any

from gantry.domain.flow.waits import Wake, next_due, waits_on
from gantry.domain.vocabulary.timefmt import from_rfc3339
from gantry.wakeups import Wakeups
from tests.unit.test_observe_execute import WEB, pipeline, run

PROD = "Deployment/prod/web"


def production_run(step: str, **fields: Any) -> dict[str, Any]:
    spec = pipeline().stages[1].to_spec()
    record = {
        "index": 1,
        "name": "production",
        "environment": "production",
        "step": step,
        "startedAt": "2026-05-01T09:00:00Z",
        "spec": {**spec, "production": True},
        "images": [{"workload": PROD, "container": "web", "before": "a", "after": "b"}],
        **fields,
    }
    staging = run("Passed")["stages"][0]
    return {"phase": "Baking", "stageIndex": 1, "stages": [staging, record]}


def test_a_rollout_waits_on_its_workloads_a_test_on_its_job_a_queue_on_its_lock() -> None:
    assert waits_on("team", "shop", run("RollingOut")) == {(Wake.WORKLOAD, WEB.key())}
    assert waits_on("team", "shop", run("Testing", testJob="shop/shop-v1-staging-x")) == {
        (Wake.JOB, "shop/shop-v1-staging-x")
    }
    assert waits_on("team", "shop", run("WaitingForLock")) == {(Wake.LOCK, "team/staging")}
    assert waits_on("team", "shop", {}) == frozenset()


def test_a_bake_waits_on_every_workload_it_may_roll_back_and_on_the_next_evaluation() -> None:
    status = production_run(
        "Baking",
        analysis={
            "startedAt": "2026-05-01T10:00:00.000Z",
            "evaluations": [{"time": "2026-05-01T10:00:05.000Z", "verdict": "Healthy"}],
        },
    )
    assert waits_on("team", "shop", status) == {(Wake.WORKLOAD, WEB.key()), (Wake.WORKLOAD, PROD)}
    assert next_due(status) == from_rfc3339("2026-05-01T10:00:35.000Z")  # intervalSeconds: 30


def test_production_busy_waits_on_the_pipeline_and_nothing_is_due_by_the_clock() -> None:
    blocked = {
        "phase": "Blocked",
        "reason": "ProductionBusy",
        **{k: v for k, v in run("Passed").items() if k != "phase"},
    }
    assert waits_on("team", "shop", blocked) == {(Wake.PIPELINE, "team/shop")}
    assert next_due(blocked) is None


def test_a_decision_deadline_is_due_by_the_clock() -> None:
    status = production_run("AwaitingDecision", decisionDeadline="2026-05-01T11:00:00.000Z")
    assert next_due(status) == from_rfc3339("2026-05-01T11:00:00.000Z")


def test_a_ring_wakes_only_the_releases_waiting_on_that_object() -> None:
    async def scenario() -> None:
        wakeups = Wakeups()
        a, b = wakeups.bell("a"), wakeups.bell("b")
        wakeups.expect("a", frozenset({(Wake.JOB, "shop/job-a")}), "10", 0)
        wakeups.expect("b", frozenset({(Wake.WORKLOAD, WEB.key())}), "20", 0)
        wakeups.ring((Wake.JOB, "shop/job-a"))
        assert a.is_set() and not b.is_set()
        a.clear()
        wakeups.expect("a", frozenset(), "11", 0)  # no longer waiting on the Job
        wakeups.ring((Wake.JOB, "shop/job-a"))
        assert not a.is_set()
        assert wakeups.rung == {"job": 1}

    asyncio.run(scenario())


def test_our_own_status_write_does_not_wake_the_release_but_anyone_elses_change_does() -> None:
    async def scenario() -> None:
        wakeups = Wakeups()
        bell = wakeups.bell("a")
        wakeups.expect("a", frozenset(), "10", 0)
        wakeups.release_changed("a", "10")  # the event of our own write
        assert not bell.is_set()
        wakeups.release_changed("a", "11")  # a person edited it, or a decision was recorded
        assert bell.is_set()

    asyncio.run(scenario())


def test_lock_waiters_wake_when_the_holder_changes_not_on_lease_renewals() -> None:
    async def scenario() -> None:
        wakeups = Wakeups()
        bell = wakeups.bell("b")
        wakeups.expect("b", frozenset({(Wake.LOCK, "team/staging")}), "1", 0)
        wakeups.lock_changed("team/staging", ("holder-a", None))
        bell.clear()
        wakeups.lock_changed("team/staging", ("holder-a", None))  # holder-a renewed its lease
        assert not bell.is_set()
        wakeups.lock_changed("team/staging", (None, None))  # holder-a let go
        assert bell.is_set()
        wakeups.forget("b")
        assert wakeups.waiting() == 0

    asyncio.run(scenario())


def test_an_event_that_came_during_the_reconcile_still_wakes_the_release() -> None:
    async def scenario() -> None:
        wakeups = Wakeups()
        bell = wakeups.bell("a")
        since = wakeups.sequence  # the reconcile begins
        wakeups.ring((Wake.WORKLOAD, WEB.key()))  # the rollout finished while it ran
        wakeups.expect("a", frozenset({(Wake.WORKLOAD, WEB.key())}), "10", since)
        assert bell.is_set()

    asyncio.run(scenario())


def test_a_soak_waits_on_its_workloads_and_ends_on_time_or_at_its_rollout_timeout_when_unhealthy() -> None:
    status = run("Soaking", soakStartedAt="2026-05-01T10:00:00.000Z")
    status["stages"][0]["spec"] = {**status["stages"][0]["spec"], "soakSeconds": 600}
    assert waits_on("team", "shop", status) == {(Wake.WORKLOAD, WEB.key())}  # a dip is seen at once
    assert next_due(status) == from_rfc3339("2026-05-01T10:10:00.000Z")
    status["stages"][0]["unhealthySince"] = "2026-05-01T10:01:00.000Z"
    timeout = status["stages"][0]["spec"]["rolloutTimeoutSeconds"]
    assert (next_due(status) - from_rfc3339("2026-05-01T10:01:00.000Z")).total_seconds() == timeout
