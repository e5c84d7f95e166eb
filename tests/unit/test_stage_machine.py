"""The stage machine (`domain.flow.release.decide`), step by step and as a simulated world."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gantry.adapters.kube import workload_path
from gantry.domain.flow.model import (
    AcquireLock,
    Alert,
    CreateJob,
    EffectFailure,
    Failure,
    Observation,
    ObservedJob,
    ObservedLock,
    Plan,
    ReleaseLock,
    ReleaseView,
    SetImages,
)
from gantry.domain.flow.release import decide
from gantry.domain.inputs.pipeline import Pipeline, parse_pipeline
from gantry.domain.inputs.workloads import ObservedWorkload, Rollout, WorkloadRef
from gantry.domain.vocabulary.problems import Problem
from tests.unit import world

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OLD = "reg.io/shop/web@sha256:" + "0" * 64
NEW = "reg.io/shop/web@sha256:" + "1" * 64
WEB = WorkloadRef("Deployment", "shop", "web")
HELD = ObservedLock(held=True)
JOB_TEMPLATE = {"spec": {"template": {"spec": {"containers": [{"name": "t", "image": "busybox"}]}}}}


def pipeline(lock: bool = True, test: bool = True, rollback: bool = True, dev: bool = False) -> Pipeline:
    staging: dict[str, Any] = {
        "name": "staging",
        "lock": lock,
        "rollbackOnFailure": rollback,
        "rolloutTimeoutSeconds": 60,
        "targets": [{"namespace": "shop", "name": "web"}],
    }
    if test:
        staging["test"] = {"jobTemplate": JOB_TEMPLATE, "timeoutSeconds": 120}
    stages = [
        staging,
        {"name": "prod", "production": True, "targets": [{"namespace": "prod", "name": "web"}]},
    ]
    if dev:
        stages.insert(0, {"name": "dev", "targets": [{"namespace": "shop", "name": "web"}]})
    parsed = parse_pipeline("shop", {"application": "shop", "stages": stages})
    assert isinstance(parsed, Pipeline)
    return parsed


def release(status: dict[str, Any] | None = None) -> ReleaseView:
    return ReleaseView("team", "shop-v1", "uid-1", 1, "shop", "shop", "v1.0.0", {"web": NEW}, status or {})


def web(image: str, done: bool = True, manager: str | None = None) -> ObservedWorkload:
    return ObservedWorkload(
        WEB,
        {"web": image},
        Rollout(done, "1/2 updated, 0 available" if not done else ""),
        {"web": manager} if manager else {},
    )


def observe(
    seconds: float = 0,
    pipe: Pipeline | Problem | None = None,
    image: str = OLD,
    done: bool = True,
    lock: ObservedLock | None = HELD,
    job: ObservedJob | None = None,
    error: EffectFailure | None = None,
    manager: str | None = None,
) -> Observation:
    seen = web(image, done, manager)
    return Observation(
        now=T0 + timedelta(seconds=seconds),
        pipeline=pipe if pipe is not None else pipeline(),
        targets={0: (seen,)},
        workloads={WEB: seen},
        lock=lock,
        job=job,
        error=error,
    )


def step(status: dict[str, Any], obs: Observation) -> Plan:
    return decide(release(status), obs)


def run_of(plan: Plan) -> dict[str, Any]:
    runs: list[dict[str, Any]] = plan.status["stages"]
    return runs[-1]


def settle(plan: Plan, obs: Observation) -> Plan:
    """One more tick: a stage's outcome is recorded first, its lock let go on the next tick."""
    assert run_of(plan)["step"] in ("Passed", "Failed"), run_of(plan)["step"]
    return step(plan.status, obs)


def to_rolling_out() -> dict[str, Any]:
    plan = step({}, observe(lock=ObservedLock(held=False)))
    plan = step(plan.status, observe(1))
    plan = step(plan.status, observe(2))
    plan = step(plan.status, observe(3))
    assert run_of(plan)["step"] == "RollingOut"
    return plan.status


# --- one tick at a time ---------------------------------------------------------------------------


def test_a_new_release_asks_for_the_lock_first() -> None:
    plan = step({}, observe(lock=ObservedLock(held=False)))
    assert plan.status["phase"] == "Queued"
    assert plan.effects == (AcquireLock("staging"),)
    assert [e.reason for e in plan.events] == ["LockRequested"]
    assert run_of(plan)["step"] == "WaitingForLock"


def test_waiting_keeps_the_queue_place_alive_and_says_where_it_stands() -> None:
    queued = step({}, observe(lock=ObservedLock(held=False))).status
    plan = step(queued, observe(1, lock=ObservedLock(held=False, position=2, holder="team/shop-v0")))
    assert plan.effects == (AcquireLock("staging"),)
    assert plan.status["message"] == "waiting for EnvironmentLock staging: position 2 behind team/shop-v0"
    again = step(plan.status, observe(2, lock=ObservedLock(held=False, position=2, holder="team/shop-v0")))
    assert not again.changed and again.idle  # nothing new: no status write, no event


def test_with_the_lock_the_previous_images_are_recorded_before_anything_is_patched() -> None:
    queued = step({}, observe(lock=ObservedLock(held=False))).status
    recorded = step(queued, observe(1))  # the look that finds the lock ours records what runs
    assert recorded.status["phase"] == "Deploying" and recorded.effects == ()
    assert recorded.status["reason"] == "LockAcquired"
    assert recorded.status["message"] == (
        "holding EnvironmentLock staging; recorded the images stage staging runs now; deploying"
    )
    assert run_of(recorded)["images"] == [
        {"workload": "Deployment/shop/web", "container": "web", "before": OLD, "after": NEW}
    ]
    patched = step(recorded.status, observe(3))
    assert patched.effects == (SetImages(((WEB, "web", NEW),)),)
    assert run_of(patched)["step"] == "RollingOut"
    assert patched.status["lock"] == {"name": "staging", "acquiredAt": run_of(patched)["lockAcquiredAt"]}


def test_a_finished_rollout_starts_the_test_job_once() -> None:
    status = to_rolling_out()
    plan = step(status, observe(4, image=NEW))
    assert run_of(plan)["step"] == "Testing"
    [create] = [e for e in plan.effects if isinstance(e, CreateJob)]
    assert create.manifest["metadata"]["labels"]["gantry.dev/release"] == "shop-v1"
    running = ObservedJob(create.manifest["metadata"]["name"], finished=False, succeeded=False)
    later = step(plan.status, observe(5, image=NEW, job=running))
    assert later.effects == () and not later.changed


def test_a_test_job_deleted_by_someone_fails_the_stage_instead_of_running_again() -> None:
    # (Until issue 16 a vanished Job was silently created again: a test nobody saw finish passed.)
    tested = step(to_rolling_out(), observe(4, image=NEW))
    assert [e for e in tested.effects if isinstance(e, CreateJob)]
    again = step(tested.status, observe(5, image=NEW, job=None))
    assert not [e for e in again.effects if isinstance(e, CreateJob)]
    assert again.status["reason"] == "TestJobDeleted" and "rolling back" in again.status["message"]
    assert SetImages(((WEB, "web", OLD),)) in again.effects


def test_a_job_created_but_not_yet_on_record_is_asked_for_again_under_the_same_name() -> None:
    # The status write after CreateJob was lost: nothing says a Job exists, so ask again (409 = fine).
    tested = step(to_rolling_out(), observe(4, image=NEW))
    [first] = [e for e in tested.effects if isinstance(e, CreateJob)]
    again = step(to_rolling_out(), observe(4, image=NEW))
    [second] = [e for e in again.effects if isinstance(e, CreateJob)]
    assert second.manifest["metadata"]["name"] == first.manifest["metadata"]["name"]


def test_a_passing_test_verifies_and_gives_the_lock_back() -> None:
    tested = step(to_rolling_out(), observe(4, image=NEW))
    passed = ObservedJob("job", finished=True, succeeded=True)
    recorded = step(tested.status, observe(5, image=NEW, job=passed))
    assert recorded.status["phase"] == "Testing" and recorded.effects == ()
    assert recorded.status["lock"]["name"] == "staging"  # still held until the outcome is on record
    plan = settle(recorded, observe(6, image=NEW, job=passed))
    assert plan.status["phase"] == "Verified"
    assert ReleaseLock("staging", "Passed") in plan.effects
    assert "lock" not in plan.status or plan.status.get("lock") is None
    conditions = {c["type"]: c["status"] for c in plan.status["conditions"]}
    assert conditions == {"Ready": "True", "Reconciling": "False", "Stalled": "False"}
    assert decide(release(plan.status), observe(6)).effects == ()  # terminal: nothing more happens


def test_a_failing_test_rolls_back_to_the_recorded_images_then_fails_and_alerts() -> None:
    tested = step(to_rolling_out(), observe(4, image=NEW))
    failed = ObservedJob("job", finished=True, succeeded=False, message="exit code 1")
    rolling_back = step(tested.status, observe(5, image=NEW, job=failed))
    assert rolling_back.status["phase"] == "RollingBack"
    assert rolling_back.effects == (SetImages(((WEB, "web", OLD),)),)
    still = step(rolling_back.status, observe(6, image=OLD, done=False, job=failed))
    assert still.status["phase"] == "RollingBack" and still.effects == ()
    done = settle(step(still.status, observe(7, image=OLD, job=failed)), observe(8, image=OLD, job=failed))
    assert done.status["phase"] == "Failed" and done.status["reason"] == "TestFailed"
    assert "exit code 1" in done.status["message"] and "rolled back" in done.status["message"]
    assert ReleaseLock("staging", "Failed") in done.effects
    assert any(isinstance(e, Alert) and e.reason == "TestFailed" for e in done.effects)


def test_rollout_timeout_rolls_back() -> None:
    status = to_rolling_out()
    waiting = step(status, observe(30, image=NEW, done=False))
    assert "waiting for rollout: Deployment shop/web: 1/2 updated" in waiting.status["message"]
    timed_out = step(waiting.status, observe(64, image=NEW, done=False))
    assert timed_out.status["reason"] == "RolloutTimeout"
    assert timed_out.effects == (SetImages(((WEB, "web", OLD),)),)


def test_someone_else_changing_the_image_mid_rollout_supersedes_without_a_rollback() -> None:
    status = to_rolling_out()
    other = "reg.io/shop/web@sha256:" + "9" * 64
    plan = step(status, observe(4, image=other))
    assert run_of(plan)["step"] == "Failed" and plan.status["reason"] == "Superseded"
    assert f"now runs {other}" in plan.status["message"]
    done = settle(plan, observe(5, image=other))
    assert done.status["phase"] == "Failed"
    assert not any(isinstance(e, SetImages) for e in plan.effects + done.effects)  # we do not fight them
    assert ReleaseLock("staging", "Failed") in done.effects


def test_a_container_still_on_the_previous_image_is_waited_for_not_passed() -> None:
    # Set back by Gantry itself (its own rollback, whose record a crash lost) or by nobody named.
    for manager in (None, "gantry"):
        plan = step(to_rolling_out(), observe(4, image=OLD, manager=manager))
        assert run_of(plan)["step"] == "RollingOut"
        assert "container(s) web not yet set" in plan.status["message"]


def test_images_set_back_once_are_applied_again_and_twice_is_a_controller_fight() -> None:
    # Another field manager set the previous image back. Once: applied again, said so. Twice: it
    # owns the field (a GitOps tool re-applying git): stop, name it and the fix.
    once = step(to_rolling_out(), observe(4, image=OLD, manager="argocd-controller"))
    assert run_of(once)["step"] == "RollingOut" and run_of(once)["revertedBy"] == "argocd-controller"
    assert SetImages(((WEB, "web", NEW),)) in once.effects
    assert any(e.reason == "Reverted" for e in once.events)
    twice = step(once.status, observe(5, image=OLD, manager="argocd-controller"))
    assert run_of(twice)["reason"] == "ControllerFight", run_of(twice)
    message = run_of(twice)["message"]
    assert "set back again by argocd-controller" in message and "spec.stages[0].git" in message
    assert not any(e.reason == "Reverted" for e in twice.events)


def test_test_timeout_rolls_back() -> None:
    tested = step(to_rolling_out(), observe(4, image=NEW))
    hanging = ObservedJob("job", finished=False, succeeded=False)
    plan = step(tested.status, observe(200, image=NEW, job=hanging))
    assert plan.status["reason"] == "TestTimeout" and run_of(plan)["testResult"] == "TimedOut"


def test_losing_the_lock_mid_rollout_fails_without_touching_the_new_holders_environment() -> None:
    lost = observe(4, image=NEW, lock=ObservedLock(held=False, holder="team/other"))
    plan = settle(step(to_rolling_out(), lost), lost)
    assert plan.status["phase"] == "Failed" and plan.status["reason"] == "LockLost"
    assert not any(isinstance(e, SetImages | ReleaseLock) for e in plan.effects)


def test_losing_the_lock_before_recording_anything_just_queues_again() -> None:
    queued = step({}, observe(lock=ObservedLock(held=False))).status
    deploying = step(queued, observe(1)).status
    del deploying["stages"][-1]["images"]  # as an older Gantry left it: the lock taken, nothing recorded
    plan = step(deploying, observe(2, lock=ObservedLock(held=False, position=1)))
    assert plan.status["phase"] == "Queued" and plan.effects == (AcquireLock("staging"),)


def test_lock_renewal_while_working() -> None:
    plan = step(
        to_rolling_out(), observe(4, image=NEW, done=False, lock=ObservedLock(held=True, renewal_due=True))
    )
    assert AcquireLock("staging") in plan.effects


def test_refused_new_images_roll_back_what_may_have_changed() -> None:
    queued = step({}, observe(lock=ObservedLock(held=False))).status
    recorded = step(queued, observe(1)).status
    plan = step(
        recorded, observe(2, error=EffectFailure(SetImages, Failure.REFUSED, "admission webhook denied it"))
    )
    assert plan.status["reason"] == "DeployRejected"
    assert plan.effects == (SetImages(((WEB, "web", OLD),)),)


def test_a_refused_rollback_fails_loudly() -> None:
    tested = step(to_rolling_out(), observe(4, image=NEW))
    failed = ObservedJob("job", finished=True, succeeded=False)
    rolling_back = step(tested.status, observe(5, image=NEW, job=failed)).status
    refused = observe(
        6, image=NEW, job=failed, error=EffectFailure(SetImages, Failure.UNAUTHORIZED, "forbidden")
    )
    plan = settle(step(rolling_back, refused), observe(7, image=NEW, job=failed))
    assert (
        plan.status["phase"] == "Failed"
        and "rollback itself was refused: forbidden" in plan.status["message"]
    )


def test_a_refused_test_job_rolls_back() -> None:
    plan = step(
        to_rolling_out(),
        observe(4, image=NEW, error=EffectFailure(CreateJob, Failure.REFUSED, "namespace qa not found")),
    )
    assert plan.status["reason"] == "TestJobRejected"
    assert SetImages(((WEB, "web", OLD),)) in plan.effects


def test_without_rollback_a_failure_leaves_the_stage_as_it_is() -> None:
    pipe = pipeline(rollback=False)
    plan = step({}, observe(pipe=pipe, lock=ObservedLock(held=False)))
    for seconds in (1, 2, 3):
        plan = step(plan.status, observe(seconds, pipe=pipe))
    tested = step(plan.status, observe(4, pipe=pipe, image=NEW))
    outcome = observe(5, pipe=pipe, image=NEW, job=ObservedJob("j", True, False))
    failed = settle(step(tested.status, outcome), outcome)
    assert failed.status["phase"] == "Failed" and "rollback disabled" in failed.status["message"]
    assert not any(isinstance(e, SetImages) for e in failed.effects)


def test_a_problem_blocks_without_effects_and_is_announced_once() -> None:
    problem = Problem("PipelineNotFound", "spec.pipeline", "Pipeline 'x' does not exist", "create it")
    first = step({}, observe(pipe=problem))
    assert first.status["phase"] == "Blocked"
    assert first.status["message"] == "spec.pipeline: Pipeline 'x' does not exist; fix: create it"
    assert [e.type for e in first.events] == ["Warning"]
    (alert,) = first.effects  # the team is told once, with the fix; nothing deployed is touched
    assert isinstance(alert, Alert) and alert.reason == "PipelineNotFound"
    assert alert.message == f"Release team/shop-v1 is Blocked (PipelineNotFound): {first.status['message']}"
    second = step(first.status, observe(1, pipe=problem))
    assert second.events == () and second.effects == () and not second.changed


def test_a_problem_found_while_queued_leaves_the_queue() -> None:
    queued = step({}, observe(lock=ObservedLock(held=False))).status
    gone = Observation(T0, pipeline(), targets={0: ()}, lock=ObservedLock(held=False, position=1))
    plan = step(queued, gone)
    assert plan.status["phase"] == "Blocked" and plan.status["reason"] == "WorkloadNotFound"
    assert plan.effects[0] == ReleaseLock("staging", "Blocked")
    assert [type(e) for e in plan.effects[1:]] == [Alert]


def test_stages_run_in_order_and_only_locked_stages_take_the_lock() -> None:
    pipe = pipeline(dev=True, test=False)
    plan = step({}, observe(pipe=pipe, lock=None))
    assert plan.status["stage"] == "dev" and plan.effects == ()
    plan = step(plan.status, observe(1, pipe=pipe, lock=None))  # record
    plan = step(plan.status, observe(2, pipe=pipe, lock=None))  # patch
    rolled_out = observe(3, pipe=pipe, image=NEW, lock=None)
    plan = settle(step(plan.status, rolled_out), rolled_out)  # rolled out: passed
    assert plan.status["phase"] == "Pending" and plan.status["stageIndex"] == 1
    assert not any(isinstance(e, ReleaseLock) for e in plan.effects)
    plan = step(plan.status, observe(4, pipe=pipe, image=NEW, lock=ObservedLock(held=False)))
    assert plan.status["stage"] == "staging" and plan.effects == (AcquireLock("staging"),)


def test_history_records_each_transition_once() -> None:
    tested = step(to_rolling_out(), observe(4, image=NEW))
    passed = observe(5, image=NEW, job=ObservedJob("j", True, True))
    plan = settle(step(tested.status, passed), passed)
    history = [(h["phase"], h["reason"]) for h in plan.status["history"]]
    assert history == [
        ("Queued", "WaitingForLock"),
        ("Deploying", "LockAcquired"),
        ("Deploying", "RollingOut"),
        ("Testing", "RolledOut"),
        ("Testing", "TestPassed"),
        ("Verified", "Verified"),
    ]


# --- a simulated world: effects applied, controllers progressing, writes lost on crashes ----------


class World(world.World):
    """staging's Deployment `shop/web`, with a controller that may fail to roll the new image out."""

    def __init__(self, job_outcome: str, controller_works: bool) -> None:
        super().__init__(pipeline(), {WEB: OLD})
        self.job_outcome = job_outcome
        self.controller_works = controller_works

    @property
    def image(self) -> str:
        return self.images[WEB]

    @property
    def generation(self) -> int:
        return int(self.kube.objects[workload_path("Deployment", "shop", "web")]["metadata"]["generation"])

    @property
    def lock_holder(self) -> str | None:
        return "me" if self.lock.holder is not None else None

    def apply(self, release: ReleaseView, plan: Plan) -> EffectFailure | None:
        # The deployment controller rolls out whatever is current, or the image never pulls.
        self.controller = self.controller_works or self.image == OLD
        failure = super().apply(release, plan)
        self.controller = self.controller_works or self.image == OLD
        if self.controller:
            self.roll_out(WEB)
        return failure


@settings(max_examples=200, deadline=None)
@given(
    job_outcome=st.sampled_from(["succeeded", "failed", "running"]),
    controller_works=st.booleans(),
    lost_writes=st.lists(st.booleans(), min_size=40, max_size=40),
)
def test_any_run_ends_verified_with_new_images_or_failed_with_old_ones(
    job_outcome: str, controller_works: bool, lost_writes: list[bool]
) -> None:
    world = World(job_outcome, controller_works)
    status: dict[str, Any] = {}
    for tick in range(200):
        world.now = T0 + timedelta(seconds=tick * 5)
        plan = decide(release(status), world.observe(release(status)))
        world.apply(release(status), plan)
        # A crash between acting and recording loses the status write; the next tick must cope.
        if plan.changed and not lost_writes[tick % 40]:
            status = plan.status
        if status.get("phase") in ("Verified", "Failed"):
            break
    assert status.get("phase") in ("Verified", "Failed"), status.get("message")
    if status["phase"] == "Verified":
        assert controller_works and job_outcome == "succeeded"
        assert world.image == NEW and world.generation == 2  # deployed exactly once
    else:
        assert world.image == OLD and world.generation <= 3  # deployed at most once, rolled back once
    assert len(world.jobs) <= 1  # the test ran at most once
    assert world.lock_holder is None


def test_a_queued_release_says_its_place_and_why() -> None:
    queued = step({}, observe(lock=ObservedLock(held=False)))
    behind = step(
        queued.status, observe(1, lock=ObservedLock(held=False, position=3, hotfixes_ahead=2, holder="ns/x"))
    )
    assert behind.status["phase"] == "Queued"
    assert "position 3 (2 hotfix Release(s) ahead: hotfixes go first) behind ns/x" in behind.status["message"]
