"""Stages before production that ask for a person to let a Release in (promotion: Manual) or for
a version to run healthy a while before the next stage takes it (soakSeconds); which stage's
tests earn the version tag (spec.tagAfter); and an older Release giving way to a newer commit's
before it begins its stage (a ReleaseSource's NewestOnly)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gantry.domain.flow.model import (
    AcquireLock,
    Alert,
    ObservedJob,
    ObservedLock,
    Plan,
    ReleaseLock,
    SetImages,
)
from gantry.domain.flow.release import decide
from gantry.domain.inputs.pipeline import Pipeline, parse_pipeline, pin, pinned
from gantry.domain.vocabulary.problems import Problem
from tests.unit.test_stage_machine import (
    NEW,
    OLD,
    WEB,
    observe,
    release,
    run_of,
    settle,
    step,
    to_rolling_out,
)

TARGETS = [{"namespace": "shop", "name": "web"}]
PRODUCTION = {"name": "prod", "production": True, "targets": [{"namespace": "prod", "name": "web"}]}


def canary_pipeline(**canary: Any) -> Pipeline:
    stage = {"name": "canary", "lock": True, "rolloutTimeoutSeconds": 60, "targets": TARGETS, **canary}
    parsed = parse_pipeline("shop", {"application": "shop", "stages": [stage, PRODUCTION]})
    assert isinstance(parsed, Pipeline), parsed
    return parsed


def decided(status: dict[str, Any], action: str = "Approve", by: str = "alice") -> dict[str, Any]:
    """A ReleaseDecision copied into the Release's status, as the operator does."""
    decision = {"name": f"d{len(status.get('decisions') or [])}", "action": action, "decidedBy": by}
    return {**status, "decisions": [*(status.get("decisions") or []), decision]}


def soaking(pipe: Pipeline) -> Plan:
    """Through the lock, the deploy and the rollout, into the soak (no test on this stage)."""
    plan = step({}, observe(pipe=pipe, lock=ObservedLock(held=False)))
    for second in (1, 2, 3):
        plan = step(plan.status, observe(second, pipe=pipe))
    plan = step(plan.status, observe(4, pipe=pipe, image=NEW))
    assert run_of(plan)["step"] == "Soaking", plan.status["message"]
    return plan


# --- promotion: Manual before production ------------------------------------------------------------


def test_a_manual_stage_waits_for_approval_saying_how_and_alerts_once() -> None:
    pipe = canary_pipeline(promotion="Manual")
    waiting = step({}, observe(pipe=pipe, lock=ObservedLock(held=False)))
    assert waiting.status["phase"] == "AwaitingApproval"
    assert "kubectl gantry -n team approve shop-v1 --reason" in waiting.status["message"]
    assert not [e for e in waiting.effects if isinstance(e, AcquireLock)]  # no queue place while waiting
    [alert] = [e for e in waiting.effects if isinstance(e, Alert)]
    assert alert.severity == "info" and "approve shop-v1" in alert.message
    again = step(waiting.status, observe(30, pipe=pipe, lock=ObservedLock(held=False)))
    assert not again.changed and again.effects == ()  # waiting costs no write and no second alert


def test_an_approval_lets_the_release_into_the_stage_on_the_record() -> None:
    pipe = canary_pipeline(promotion="Manual")
    waiting = step({}, observe(pipe=pipe, lock=ObservedLock(held=False))).status
    entered = step(decided(waiting), observe(5, pipe=pipe, lock=ObservedLock(held=False)))
    assert entered.status["phase"] == "Queued"
    assert AcquireLock("canary") in entered.effects
    assert run_of(entered)["decidedBy"] == "alice"
    assert entered.status["decisionResults"] == [{"name": "d0", "result": "Applied"}]


def test_an_approval_of_a_release_that_waits_for_nothing_is_ignored_saying_why() -> None:
    pipe = canary_pipeline()  # Auto: nothing to approve before production
    queued = step({}, observe(pipe=pipe, lock=ObservedLock(held=False))).status
    plan = step(decided(queued), observe(1, pipe=pipe, lock=ObservedLock(held=False)))
    [result] = plan.status["decisionResults"]
    assert result["result"] == "Ignored" and "this one is Queued" in result["message"]


def test_a_manual_stage_after_a_passed_one_waits_there() -> None:
    dev = {"name": "dev", "targets": [{"namespace": "dev", "name": "web"}]}
    canary = {"name": "canary", "promotion": "Manual", "targets": TARGETS}
    parsed = parse_pipeline("shop", {"application": "shop", "stages": [dev, canary, PRODUCTION]})
    assert isinstance(parsed, Pipeline)
    assert [s.manual for s in parsed.stages] == [False, True, True]  # production: Manual by default
    assert parsed.stages[1].to_spec()["promotion"] == "Manual"  # pinned with the Release


# --- soakSeconds -----------------------------------------------------------------------------------


def test_a_soaking_stage_keeps_its_lock_and_passes_only_after_the_soak() -> None:
    pipe = canary_pipeline(soakSeconds=300)
    plan = soaking(pipe)
    assert plan.status["phase"] == "Soaking" and plan.status["lock"]["name"] == "canary"
    assert "soaking until 2026-03-01T12:05:04.000Z (300s healthy)" in plan.status["message"]
    middle = step(plan.status, observe(150, pipe=pipe, image=NEW))
    assert not middle.changed and middle.effects == ()
    done = step(middle.status, observe(305, pipe=pipe, image=NEW))
    assert run_of(done)["step"] == "Passed" and done.status["reason"] == "Soaked"
    verified = settle(done, observe(306, pipe=pipe, image=NEW))
    assert verified.status["phase"] == "Verified" and ReleaseLock("canary", "Passed") in verified.effects


def test_a_dip_while_soaking_restarts_the_soak_once_healthy_again() -> None:
    pipe = canary_pipeline(soakSeconds=300)
    plan = soaking(pipe)
    dipped = step(plan.status, observe(100, pipe=pipe, image=NEW, done=False))
    assert dipped.status["reason"] == "SoakUnhealthy" and "soak interrupted" in dipped.status["message"]
    assert [e.reason for e in dipped.events] == ["SoakUnhealthy"]
    back = step(dipped.status, observe(120, pipe=pipe, image=NEW))
    assert back.status["reason"] == "Soaking" and run_of(back)["soakStartedAt"] == "2026-03-01T12:02:00.000Z"
    not_yet = step(back.status, observe(350, pipe=pipe, image=NEW))  # 300s after the first start
    assert run_of(not_yet)["step"] == "Soaking"
    assert run_of(step(not_yet.status, observe(421, pipe=pipe, image=NEW)))["step"] == "Passed"


def test_a_stage_that_stays_unhealthy_while_soaking_rolls_back() -> None:
    pipe = canary_pipeline(soakSeconds=300)
    dipped = step(soaking(pipe).status, observe(100, pipe=pipe, image=NEW, done=False))
    still = step(dipped.status, observe(150, pipe=pipe, image=NEW, done=False))
    assert run_of(still)["step"] == "Soaking"
    gave_up = step(still.status, observe(161, pipe=pipe, image=NEW, done=False))  # past the 60s timeout
    assert gave_up.status["phase"] == "RollingBack" and gave_up.status["reason"] == "SoakUnhealthy"
    assert SetImages(((WEB, "web", OLD),), restore=True) in gave_up.effects


def test_production_cannot_soak_and_the_field_is_named() -> None:
    stages = [{"name": "staging", "targets": TARGETS}, {**PRODUCTION, "soakSeconds": 60}]
    problem = parse_pipeline("shop", {"application": "shop", "stages": stages})
    assert isinstance(problem, Problem) and problem.field == "spec.stages[1].soakSeconds"


# --- spec.tagAfter -----------------------------------------------------------------------------------


def test_tag_after_names_a_stage_before_production_and_is_pinned_with_the_release() -> None:
    stages = [{"name": "dev", "targets": TARGETS}, {"name": "staging", "targets": TARGETS}, PRODUCTION]
    parsed = parse_pipeline("shop", {"application": "shop", "tagAfter": "staging", "stages": stages})
    assert isinstance(parsed, Pipeline) and parsed.tag_stage == 1
    snapshot = pin(parsed)
    assert snapshot["tagAfter"] == "staging"
    edited = parse_pipeline("shop", {"application": "shop", "stages": stages})  # tagAfter dropped later
    assert isinstance(edited, Pipeline)
    again = pinned(snapshot, edited, "shop", "shop")
    assert isinstance(again, Pipeline) and again.tag_stage == 1  # the Release keeps its tagging point
    for wrong in ("qa", "prod"):
        problem = parse_pipeline("shop", {"application": "shop", "tagAfter": wrong, "stages": stages})
        assert isinstance(problem, Problem) and problem.field == "spec.tagAfter", wrong
        assert "dev, staging" in problem.fix


# --- superseded by a newer commit's Release ----------------------------------------------------------


def newer(status: dict[str, Any], seconds: float, newer_reached: int | None = 0, **seen: Any) -> Plan:
    """A tick of a Release its ReleaseSource has marked as superseded by shop-newer, which has
    reached stage `newer_reached` (None: it is gone)."""
    obs = replace(observe(seconds, **seen), newer_reached=newer_reached)
    return decide(replace(release(status), superseded_by="shop-newer"), obs)


def test_a_release_still_queued_gives_way_to_a_newer_one_that_has_come_as_far_and_leaves_the_queue() -> None:
    queued = step({}, observe(lock=ObservedLock(held=False))).status
    plan = newer(queued, 1, lock=ObservedLock(held=False, position=2, heir_waiting=True), newer_reached=0)
    assert (plan.status["phase"], plan.status["reason"]) == ("Superseded", "SupersededByNewer")
    assert (
        "superseded by shop-newer" in plan.status["message"]
        and "before it began stage staging" in (plan.status["message"])
    )
    assert plan.effects[0] == ReleaseLock("staging", "Superseded")
    assert [(a.severity, a.reason) for a in plan.effects[1:]] == [
        ("info", "SupersededByNewer")
    ]  # alerted once
    assert [e.reason for e in plan.events][-1] == "SupersededByNewer"


def test_a_release_at_a_door_goes_on_while_the_newer_one_is_behind_it_or_gone() -> None:
    """Newest wins only against a newer Release that has come as far: otherwise the stage's door
    would stay empty while it catches up (tests/unit/test_newest_wins.py: starvation)."""
    queued = step({}, observe(lock=ObservedLock(held=False))).status
    for reached in (None, -1):  # gone (or failed); still before this stage
        plan = newer(queued, 1, lock=ObservedLock(held=False, position=2), newer_reached=reached)
        assert plan.status["phase"] == "Queued", reached
    # At the door too, but not in the queue yet: keep the place until the newer one takes it.
    plan = newer(queued, 1, lock=ObservedLock(held=False, position=2), newer_reached=0)
    assert plan.status["phase"] == "Queued"


def test_a_release_that_already_deploys_or_is_verified_goes_on() -> None:
    rolling = newer(to_rolling_out(), 4, image=NEW)
    assert rolling.status["phase"] == "Testing"  # its stage had begun: it finishes it
    tested = step(to_rolling_out(), observe(4, image=NEW))
    passed = step(tested.status, observe(5, image=NEW, job=ObservedJob("job", True, True)))
    verified = settle(passed, observe(6, image=NEW, job=ObservedJob("job", True, True)))
    assert verified.status["phase"] == "Verified"
    assert newer(verified.status, 7).status["phase"] == "Verified"  # it waits for production, on record
