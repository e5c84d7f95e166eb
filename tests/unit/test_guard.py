"""Production watched after the bake (the production stage's guard): a breach after Released
alerts with the three buttons and is recorded; the guard ends when the next Release replaces it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from gantry.domain.flow import guard
from gantry.domain.flow.cadence import needs_driver
from gantry.domain.flow.model import ReleaseView
from gantry.domain.flow.release import decide
from gantry.domain.inputs.pipeline import Pipeline, parse_pipeline
from gantry.domain.records import ledger
from gantry.domain.vocabulary.problems import Problem
from gantry.plugin import views
from tests.unit.test_production import FAILING, HEALTHY, PROD, QUIET, V1, V2, World


def guarded(**fields: Any) -> Pipeline:
    parsed = parse_pipeline("shop", spec(**fields))
    assert isinstance(parsed, Pipeline), parsed
    return parsed


def spec(production: bool = True, **fields: Any) -> dict[str, Any]:
    stage = {
        "name": "production",
        "targets": [{"namespace": "shop-prod", "name": "web"}],
        "analysis": {"threshold": 0.1, "minRequestRate": 1, "intervalSeconds": 1, "bakeSeconds": 2},
        "guard": {"intervalSeconds": 5, "consecutiveBreaches": 2, **fields},
    }
    if production:
        stage.update(production=True, promotion="Auto")
    return {
        "application": "shop",
        "requireTag": False,
        "stages": [
            {"name": "staging", "lock": True, "targets": [{"namespace": "shop-staging", "name": "web"}]},
            stage,
            *([] if production else [{"name": "prod", "production": True, "targets": stage["targets"]}]),
        ],
    }


def tick(world: World, status: dict[str, Any], sample: Any, seconds: int = 1) -> dict[str, Any]:
    world.now += timedelta(seconds=seconds)
    release = ReleaseView("team", "shop-v2", "uid-v2", 1, "shop", "shop", "v2.0.0", {"web": V2}, status)
    world.prometheus.answer = sample
    plan = decide(release, world.observe(release))
    world.apply(release, plan)
    return plan.status


def released(world: World) -> dict[str, Any]:
    status: dict[str, Any] = {}
    for _ in range(20):
        status = tick(world, status, HEALTHY)
        if status["phase"] == "Released":
            return status
    raise AssertionError(status)


def test_a_guarded_release_is_watched_after_its_release_and_a_breach_offers_the_three_buttons() -> None:
    world = World(guarded())
    status = released(world)
    assert guard.active(status) and needs_driver(status, {"generation": 1})
    status = tick(world, status, HEALTHY, seconds=5)
    assert (
        status["guard"]["state"] == "Watching" and status["guard"]["evaluations"][-1]["verdict"] == "Healthy"
    )
    status = tick(world, status, FAILING, seconds=5)
    assert status["guard"]["state"] == "Watching"  # one breach is not two in a row
    status = tick(world, status, FAILING, seconds=5)
    assert status["phase"] == "Released" and status["guard"]["state"] == "Breached"
    assert (
        status["reason"] == "ErrorRateBreach"
        and "decide Rollback, Emergency or FailForward" in status["message"]
    )
    alert = world.alerter.sent[-1]
    assert alert.severity == "critical" and "kubectl gantry -n team rollback shop" in alert.message
    assert world.history[-1]["result"] == "Breached" and "error rate 40.00%" in world.history[-1]["reason"]
    assert world.images[PROD] == V2  # a person decides (onBreach: Decide, the guard's default)
    release = {"metadata": {"name": "shop-v2", "creationTimestamp": "2026-05-01T09:00:00Z"}}
    shown = views.in_flight_table(
        {"metadata": {"name": "shop", "namespace": "team"}, "spec": {"application": "shop"}},
        [{**release, "spec": {"application": "shop"}, "status": status}],
        world.now,
    )
    assert [r[0] for r in shown.rows] == ["shop-v2"]
    assert "its guard saw a breach" in shown.notes[0] and "fail-forward shop-v2" in shown.notes[2]


def test_fail_forward_on_a_breach_keeps_the_version_and_the_guard_watches_on() -> None:
    world = World(guarded())
    status = released(world)
    for _ in range(3):
        status = tick(world, status, FAILING, seconds=5)
    assert status["guard"]["state"] == "Breached"
    decided = {
        **status,
        "decisions": [{"name": "d1", "action": "FailForward", "decidedBy": "bob", "reason": "fix in v2.0.1"}],
    }
    status = tick(world, decided, HEALTHY)
    assert status["decisionResults"][-1]["result"] == "Applied"
    assert status["phase"] == "Released" and status["guard"]["state"] == "Watching"
    assert status["guard"]["evaluations"] == []
    entry = world.history[-1]
    assert (entry["result"], entry["decidedBy"], entry["reason"]) == ("FailedForward", "bob", "fix in v2.0.1")
    assert world.images[PROD] == V2


def test_a_breach_nobody_decides_on_applies_the_default_decision_at_its_deadline() -> None:
    world = World(guarded(decision={"deadlineSeconds": 60, "default": "Rollback"}))
    status = released(world)
    for _ in range(3):
        status = tick(world, status, FAILING, seconds=5)
    assert status["guard"]["state"] == "Breached"
    assert guard.next_due(status) == world.now + timedelta(seconds=55)
    status = tick(world, status, FAILING, seconds=61)
    for _ in range(5):
        status = tick(world, status, FAILING)
    assert status["phase"] == "RolledBack" and world.images[PROD] == V1
    assert status["guard"]["state"] == "Ended" and not guard.active(status)
    assert [e["result"] for e in world.history][-2:] == ["RolledBack", "Restored"]


def test_on_breach_rollback_rolls_back_at_once() -> None:
    world = World(guarded(onBreach="Rollback"))
    status = released(world)
    for _ in range(2):
        status = tick(world, status, FAILING, seconds=5)
    for _ in range(5):
        status = tick(world, status, FAILING)
    assert status["phase"] == "RolledBack" and world.images[PROD] == V1
    assert status["guard"]["state"] == "Ended" and "rolled back" in status["guard"]["ended"]


def test_the_guard_ends_when_the_next_release_replaces_it() -> None:
    world = World(guarded())
    status = released(world)
    v3 = {"release": "team/shop-v3", "uid": "uid-v3", "version": "v3.0.0", "result": "Released"}
    world.resources.update_ledger(
        "team", "shop", lambda s: {**s, "production": {"history": [*ledger.entries(s), v3]}}
    )
    status = tick(world, status, FAILING, seconds=5)
    assert status["guard"]["state"] == "Ended" and "team/shop-v3 (v3.0.0)" in status["guard"]["ended"]
    assert not guard.active(status) and not needs_driver(status, {"generation": 1})
    status = tick(world, status, FAILING, seconds=5)
    assert status["guard"]["state"] == "Ended"


def test_metrics_that_cannot_tell_never_breach_and_are_said_once() -> None:
    world = World(guarded(inconclusiveLimit=2))
    status = released(world)
    before = len(world.alerter.sent)
    for _ in range(6):
        status = tick(world, status, QUIET, seconds=5)
    assert status["phase"] == "Released" and status["guard"]["state"] == "Watching"
    blind = [a for a in world.alerter.sent[before:] if a.reason == "MetricsInconclusive"]
    assert len(blind) == 1 and "guard cannot judge" in blind[0].message


def test_a_guard_reads_what_it_does_not_say_from_the_stage_analysis() -> None:
    stage = guarded().stages[-1]
    assert stage.guard is not None
    assert (stage.guard.threshold, stage.guard.min_request_rate, stage.guard.interval_seconds) == (0.1, 1, 5)
    assert str(stage.guard.on_breach) == "Decide"


def test_a_guard_before_production_is_refused_naming_the_field() -> None:
    problem = parse_pipeline("shop", spec(production=False))
    assert isinstance(problem, Problem)
    assert problem.field == "spec.stages[1].guard" and "production stage" in problem.fix
