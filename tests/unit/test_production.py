"""Production in the stage machine: promotion, bake verdicts, buttons, rollback, quarantine."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gantry.domain.flow.model import (
    Alert,
    PreemptLock,
    ReleaseView,
)
from gantry.domain.flow.release import decide
from gantry.domain.inputs.analysis import AnalysisSpec, Sample, Verdict, judge, render
from gantry.domain.inputs.pipeline import Pipeline, parse_pipeline
from gantry.domain.inputs.workloads import WorkloadRef
from gantry.domain.records import ledger, locks
from gantry.domain.records.decisions import refusal
from gantry.domain.vocabulary.phases import Phase
from tests.unit import world

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
STAGING_OLD = "reg.io/shop/web@sha256:" + "0" * 64
V1 = "reg.io/shop/web@sha256:" + "1" * 64
V2 = "reg.io/shop/web@sha256:" + "2" * 64
STAGING = WorkloadRef("Deployment", "shop-staging", "web")
PROD = WorkloadRef("Deployment", "shop-prod", "web")
SPEC = AnalysisSpec(
    threshold=0.1, min_request_rate=1, interval_seconds=1, bake_seconds=3, consecutive_breaches=2
)


def pipeline(on_breach: str = "Rollback", promotion: str = "Auto", **analysis: Any) -> Pipeline:
    parsed = parse_pipeline(
        "shop",
        {
            "application": "shop",
            "requireTag": False,  # these Releases carry no git source
            "stages": [
                {"name": "staging", "lock": True, "targets": [{"namespace": "shop-staging", "name": "web"}]},
                {
                    "name": "production",
                    "production": True,
                    "promotion": promotion,
                    "targets": [{"namespace": "shop-prod", "name": "web"}],
                    "analysis": {
                        "threshold": 0.1,
                        "minRequestRate": 1,
                        "intervalSeconds": 1,
                        "bakeSeconds": 3,
                        "consecutiveBreaches": 2,
                        "onBreach": on_breach,
                        **analysis,
                    },
                },
            ],
        },
    )
    assert isinstance(parsed, Pipeline)
    return parsed


class World(world.World):
    """The production stage's world: staging and production Deployments, v1 released to production."""

    def __init__(self, pipe: Pipeline, history: list[dict[str, Any]] | None = None, image: str = V1) -> None:
        super().__init__(pipe, {STAGING: STAGING_OLD, PROD: image})
        self.history = (
            history
            if history is not None
            else [
                {
                    "release": "team/shop-v1",
                    "uid": "uid-v1",
                    "version": "v1.0.0",
                    "result": "Released",
                    "images": [{"workload": PROD.key(), "container": "web", "image": V1}],
                }
            ]
        )
        self.hotfix = False


def run(
    world: World,
    status: dict[str, Any],
    ticks: int = 12,
    sample: Sample | None = None,
    until: tuple[str, ...] = ("Released", "RolledBack", "Held", "AwaitingDecision", "Emergency"),
    hotfix: bool = False,
) -> dict[str, Any]:
    for _ in range(ticks):
        world.now += timedelta(seconds=1)
        release = ReleaseView(
            "team", "shop-v2", "uid-v2", 1, "shop", "shop", "v2.0.0", {"web": V2}, status, hotfix=hotfix
        )
        world.prometheus.answer = sample
        plan = decide(release, world.observe(release))
        world.apply(release, plan)
        status = plan.status
        if status["phase"] in until:
            break
    return status


HEALTHY = Sample(error_rate=0.01, request_rate=50)
FAILING = Sample(error_rate=0.4, request_rate=50)
QUIET = Sample(error_rate=math.nan, request_rate=0.0)


def test_a_verified_release_is_promoted_with_provenance_and_released_after_a_healthy_bake() -> None:
    world = World(pipeline())
    status = run(world, {}, until=("Baking",))
    assert status["phase"] == "Baking"
    production = status["stages"][-1]
    assert production["provenance"]["stage"] == "staging" and production["provenance"]["images"] == [V2]
    status = run(world, status, sample=HEALTHY)
    assert status["phase"] == "Released"
    assert world.images[PROD] == V2
    assert [(e["release"], e["result"]) for e in world.history] == [
        ("team/shop-v1", "Released"),
        ("team/shop-v2", "Released"),
    ]


def test_manual_promotion_waits_at_verified_until_approved() -> None:
    world = World(pipeline(promotion="Manual"))
    status = run(world, {}, until=("Verified",))
    status = run(world, status, ticks=3, until=("Deploying",))
    assert status["phase"] == "Verified" and world.images[PROD] == V1
    approved = {**status, "decisions": [{"name": "d1", "action": "Approve", "decidedBy": "bob"}]}
    status = run(world, approved, until=("Baking",))
    assert status["phase"] == "Baking" and status["decisionsApplied"] == 1


def test_a_breach_rolls_back_to_the_previous_release_quarantines_and_takes_staging_over() -> None:
    world = World(pipeline())
    status = run(world, run(world, {}, until=("Baking",)), sample=FAILING, until=("RolledBack",))
    assert (status["phase"], status["reason"]) == ("RolledBack", "ErrorRateBreach")
    assert world.images[PROD] == V1
    assert world.images[STAGING] == STAGING_OLD  # staging still ran this version: reverted too
    assert set(world.quarantine) == {V2.split("@")[1]}
    assert [e["result"] for e in world.history] == ["Released", "RolledBack", "Restored"]
    preempts = [e for e in world.effects if isinstance(e, PreemptLock)]
    assert preempts and preempts[0].hold and not preempts[0].freeze
    assert world.lock.holder is None  # given back once production was rolled back
    assert any(isinstance(e, Alert) and e.severity == "critical" for e in world.effects)


def test_a_single_bad_evaluation_is_not_a_breach() -> None:
    world = World(pipeline())
    status = run(world, {}, until=("Baking",))
    status = run(world, status, ticks=1, sample=FAILING)
    assert status["phase"] == "Baking"
    status = run(world, status, sample=HEALTHY)
    assert status["phase"] == "Released"


def test_no_previous_release_is_a_clear_hold_not_a_crash() -> None:
    world = World(pipeline(), history=[])
    status = run(world, run(world, {}, until=("Baking",)), sample=FAILING)
    assert (status["phase"], status["reason"]) == ("Held", "NoPreviousRelease")
    assert world.images[PROD] == V2


def test_inconclusive_metrics_hold_and_never_pass() -> None:
    world = World(pipeline())
    status = run(world, run(world, {}, until=("Baking",)), ticks=30, sample=QUIET)
    assert (status["phase"], status["reason"]) == ("Held", "MetricsInconclusive")
    status = run(world, status, ticks=5, sample=HEALTHY)
    assert status["phase"] == "Held"  # a hold waits for a person, even if metrics come back


def test_decide_policy_waits_then_applies_the_default_at_the_deadline() -> None:
    world = World(pipeline(on_breach="Decide", decision={"deadlineSeconds": 5, "default": "Rollback"}))
    status = run(world, run(world, {}, until=("Baking",)), sample=FAILING)
    assert status["phase"] == "AwaitingDecision"
    status = run(world, status, ticks=3, until=("RolledBack",))
    assert status["phase"] == "AwaitingDecision"
    status = run(world, status, ticks=10, until=("RolledBack",))
    assert status["phase"] == "RolledBack"
    assert world.history[-2]["decidedBy"].startswith("gantry (deadline")


@pytest.mark.parametrize(
    ("action", "phase", "image"),
    [("Rollback", "RolledBack", V1), ("FailForward", "Released", V2), ("Emergency", "Emergency", V2)],
)
def test_the_three_buttons(action: str, phase: str, image: str) -> None:
    world = World(pipeline(on_breach="Decide"))
    status = run(world, run(world, {}, until=("Baking",)), sample=FAILING)
    pressed = {
        **status,
        "decisions": [{"name": "d1", "action": action, "decidedBy": "bob", "reason": "call"}],
    }
    status = run(world, pressed, until=(phase,))
    assert status["phase"] == phase
    assert world.images[PROD] == image
    if action == "Emergency":
        assert world.lock.frozen is not None and world.lock.frozen.by == "team/shop-v2"
        assert world.history[-1]["result"] == "Emergency" and world.history[-1]["decidedBy"] == "bob"
    if action == "FailForward":
        assert world.history[-1]["result"] == "FailedForward"


def test_a_decision_that_does_not_apply_is_ignored_with_a_warning() -> None:
    world = World(pipeline())
    status = run(world, {}, until=("Baking",))
    release = ReleaseView(
        "team",
        "shop-v2",
        "uid-v2",
        1,
        "shop",
        "shop",
        "v2.0.0",
        {"web": V2},
        {**status, "decisions": [{"name": "d1", "action": "FailForward", "decidedBy": "x"}]},
    )
    plan = decide(release, world.observe(release))
    assert plan.status["phase"] == "Baking" and plan.status["decisionsApplied"] == 1
    assert [e.reason for e in plan.events] == ["DecisionIgnored"]


def test_a_quarantined_digest_is_refused_at_any_stage() -> None:
    world = World(pipeline())
    world.quarantine[V2.split("@")[1]] = {
        "release": "team/shop-v2-old",
        "version": "v2.0.0",
        "reason": "ErrorRateBreach",
    }
    status = run(world, {}, ticks=3)
    assert (status["phase"], status["reason"]) == ("Blocked", "Quarantined")
    assert "LiftQuarantine" in status["message"] and world.images[STAGING] == STAGING_OLD


def test_a_hotfix_release_reaching_production_lifts_the_freeze() -> None:
    world = World(pipeline())
    world.lock = locks.LockState(frozen=locks.Freeze("team/shop-v1", "emergency", T0))
    world.hotfix = True
    status = run(world, {}, until=("Baking",), hotfix=True)
    status = run(world, status, sample=HEALTHY, hotfix=True)
    assert status["phase"] == "Released"
    assert world.lock.frozen is None


def test_a_preempted_staging_release_rolls_its_own_work_back() -> None:
    world = World(pipeline())
    status = run(world, {}, ticks=3, until=("Baking",))  # staging patched, rolling out, lock held
    assert world.images[STAGING] == V2 and status["step"] == "RollingOut"
    world.lock = locks.preempt(
        world.lock, locks.Claimant("team/shop-v1", "uid-v1"), world.now, "rollback", hold=True, freeze=False
    )
    status = run(world, status, until=("Failed",))
    assert (status["phase"], status["reason"]) == ("Failed", "Preempted")
    assert world.images[STAGING] == STAGING_OLD


# --- pure helpers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample", "verdict"),
    [
        (Sample(0.0, 10), Verdict.HEALTHY),
        (Sample(0.1, 10), Verdict.HEALTHY),  # at the threshold is not above it
        (Sample(0.11, 10), Verdict.BREACH),
        (Sample(0.5, 0.5), Verdict.INCONCLUSIVE),  # too little traffic, however bad
        (Sample(math.nan, 10), Verdict.INCONCLUSIVE),
        (Sample(None, 10), Verdict.INCONCLUSIVE),
        (Sample(0.0, None), Verdict.INCONCLUSIVE),
        (Sample(0.0, math.nan), Verdict.INCONCLUSIVE),
        (Sample(None, None, error="ConnectionError"), Verdict.INCONCLUSIVE),
    ],
)
def test_judge(sample: Sample, verdict: Verdict) -> None:
    assert judge(sample, SPEC)[0] == verdict


def test_render_fills_only_the_known_names() -> None:
    query = render(
        'sum(rate(x{ns="{namespace}",v="{version}"}[{window}])) by (le) {other}',
        application="shop",
        namespace="prod",
        version="v1",
        window="5m",
    )
    assert query == 'sum(rate(x{ns="prod",v="v1"}[5m])) by (le) {other}'


def test_refusals_name_the_phases_that_would_do() -> None:
    from gantry.domain.records.decisions import Action

    assert refusal(Action.APPROVE, Phase.VERIFIED) is None
    message = refusal(Action.FAIL_FORWARD, Phase.TESTING)
    assert message is not None and "AwaitingDecision" in message and "Testing" in message


def test_ledger_updates_in_place_and_stays_bounded() -> None:
    history: list[dict[str, Any]] = []
    history = ledger.record(history, {"uid": "a", "result": "Baking", "deployedAt": "t1"})
    history = ledger.record(history, {"uid": "a", "result": "Released", "deployedAt": "t2"})
    assert history == [{"uid": "a", "result": "Released", "deployedAt": "t1"}]
    for i in range(ledger.HISTORY_LIMIT + 3):
        history = ledger.record(history, {"uid": f"r{i}", "result": "Released"})
    assert len(history) == ledger.HISTORY_LIMIT
    assert ledger.current(history) == history[-1]


def test_a_rollback_recorded_twice_after_a_lost_status_write_is_in_the_ledger_once() -> None:
    history = [{"uid": "v1", "result": "Released"}, {"uid": "v2", "result": "Released"}]
    rolled_back = {"uid": "v2", "result": "RolledBack", "reason": None}
    restored = {"uid": "v1", "result": "Restored", "reason": "rollback of ns/v2"}
    once = ledger.record(ledger.record(history, rolled_back), restored)
    twice = ledger.record(ledger.record(once, rolled_back), restored)  # the effects ran again
    assert [(e["uid"], e["result"]) for e in twice] == [
        ("v1", "Released"),
        ("v2", "RolledBack"),
        ("v1", "Restored"),
    ]
    later = ledger.record(twice, {"uid": "v1", "result": "Restored", "reason": "rollback of ns/v3"})
    assert len(later) == 4  # another rollback to v1 is another event


def test_frozen_locks_admit_only_hotfixes_and_let_them_jump_the_queue() -> None:
    lease = timedelta(minutes=5)
    a, b, hot = (locks.Claimant(f"ns/{n}", n) for n in ("a", "b", "hot"))
    state = locks.preempt(locks.LockState(), a, T0, "emergency", hold=False, freeze=True)
    state, outcome = locks.acquire(state, b, T0, lease)
    assert isinstance(outcome, locks.Waiting) and outcome.frozen is not None
    state, outcome = locks.acquire(state, hot, T0, lease, hotfix=True)
    assert isinstance(outcome, locks.Granted)
    assert locks.from_status(locks.to_status(state)) == state


def test_production_only_moves_forward() -> None:
    world = World(
        pipeline(),
        history=[
            {
                "release": "team/shop-v3",
                "uid": "uid-v3",
                "version": "v3.0.0",
                "result": "Released",
                "images": [{"workload": PROD.key(), "container": "web", "image": V1}],
            }
        ],
    )
    status = run(world, {}, until=("Blocked", "Baking"))  # our Release is v2.0.0
    assert (status["phase"], status["reason"]) == ("Blocked", "VersionNotNewer")
    assert "decide Rollback" in status["message"] and world.images[PROD] == V1
    # Refused before staging, not after it (reported: it held staging's lock and ran its tests first).
    assert "production would refuse it, so no stage takes it" in status["message"]
    assert world.images[STAGING] == STAGING_OLD and not status.get("stages")
    assert not [e for e in world.effects if type(e).__name__ == "AcquireLock"]


def test_the_ledger_keeps_the_first_deploy_time_even_after_a_claim_recorded_none() -> None:
    """A claim (Deploying) has no deploy time yet, and may come back from the API as null: the
    entry then takes the first real one and keeps it (kubectl gantry status showed SINCE '-')."""
    claimed = ledger.record([], {"uid": "u", "result": "Deploying", "deployedAt": None})
    baking = ledger.record(claimed, {"uid": "u", "result": "Baking", "deployedAt": "2026-05-01T09:00:00Z"})
    released = ledger.record(baking, {"uid": "u", "result": "Released", "deployedAt": "2026-05-01T09:05:00Z"})
    assert [e["deployedAt"] for e in released] == ["2026-05-01T09:00:00Z"]


def alerts_of(world: World) -> list[Alert]:
    return [e for e in world.effects if isinstance(e, Alert)]


def test_every_alert_a_bake_raises_names_the_release_and_the_command_to_act() -> None:
    decide_world = World(pipeline(on_breach="Decide"))
    run(decide_world, run(decide_world, {}, until=("Baking",)), sample=FAILING)
    [breach] = alerts_of(decide_world)
    assert "team/shop-v2" in breach.message
    for command in ("rollback shop", "emergency shop", "fail-forward shop-v2"):
        assert f"kubectl gantry -n team {command} --reason" in breach.message, command

    held_world = World(pipeline())
    run(held_world, run(held_world, {}, until=("Baking",)), ticks=30, sample=QUIET)
    [held] = alerts_of(held_world)
    assert "kubectl gantry -n team approve shop-v2 --reason" in held.message

    rolled_world = World(pipeline())
    run(rolled_world, run(rolled_world, {}, until=("Baking",)), sample=FAILING, until=("RolledBack",))
    breached, rolled_back = alerts_of(rolled_world)
    assert "rolls back to the previous Release now" in breached.message
    assert "production runs team/shop-v1 (v1.0.0) again" in rolled_back.message
    assert "kubectl gantry -n team lift-quarantine shop-v2 --reason" in rolled_back.message


def press(world: World, status: dict[str, Any], action: str) -> dict[str, Any]:
    decision = {"name": "d1", "action": action, "decidedBy": "bob", "reason": "call"}
    return run(world, {**status, "decisions": [decision]}, ticks=1, until=())


def test_a_rollback_with_nothing_earlier_is_refused_up_front_not_held() -> None:
    world = World(pipeline(), history=[])
    released = run(world, run(world, {}, until=("Baking",)), sample=HEALTHY)
    assert released["phase"] == "Released"
    status = press(world, released, "Rollback")
    assert status["phase"] == "Released" and world.images[PROD] == V2  # nothing moved
    (outcome,) = status["decisionResults"]
    assert outcome["result"] == "Ignored" and "nothing to roll back to" in outcome["message"]
    assert "FailForward" in outcome["message"] and "Emergency" in outcome["message"]
    assert [e["result"] for e in world.history] == ["Released"]


@pytest.mark.parametrize("action", ["Approve", "FailForward"])
def test_a_held_release_production_has_moved_past_cannot_be_accepted(action: str) -> None:
    world = World(pipeline(), history=[])
    held = run(world, run(world, {}, until=("Baking",)), ticks=30, sample=QUIET)
    assert held["phase"] == "Held"
    # Since then (a person, by hand) v3 stood in production after it.
    world.resources.record_production(
        "team",
        "shop",
        {"release": "team/shop-v3", "uid": "uid-v3", "version": "v3.0.0", "result": "Released"},
    )
    status = press(world, held, action)
    (outcome,) = status["decisionResults"]
    assert outcome["result"] == "Ignored" and "team/shop-v3" in outcome["message"]
    latest = ledger.entries(world.resources.ledger_status("team", "shop"))[-1]
    assert latest["release"] == "team/shop-v3"  # production is never recorded backwards


def test_only_tagged_versions_reach_production_unless_the_pipeline_says_otherwise() -> None:
    strict = parse_pipeline(
        "shop",
        {
            "application": "shop",
            "stages": [
                {"name": "staging", "lock": True, "targets": [{"namespace": "shop-staging", "name": "web"}]},
                {
                    "name": "production",
                    "production": True,
                    "promotion": "Auto",
                    "targets": [{"namespace": "shop-prod", "name": "web"}],
                },
            ],
        },
    )
    assert isinstance(strict, Pipeline) and strict.require_tag
    world = World(strict)
    status = run(world, {}, ticks=20, until=("Blocked", "Baking", "Released"))
    assert (status["phase"], status["reason"]) == ("Blocked", "UntaggedVersion"), status["message"]
    assert "no spec.source" in status["message"] and "spec.requireTag: false" in status["message"]
    assert world.images[PROD] == V1  # production untouched
    assert "untagged allowed" in pipeline().summary() and "untagged" not in strict.summary()
