"""What a Release deleted mid-flight does before it goes (domain.flow.leaving)."""

from __future__ import annotations

import pytest

from gantry.domain.flow.leaving import leave
from gantry.domain.flow.model import Alert, DeleteJob, SetImages
from gantry.domain.inputs.workloads import ObservedWorkload, Rollout, WorkloadRef
from tests.unit.test_observe_execute import NEW, OLD, WEB, release, run
from tests.unit.test_waits import PROD, production_run


def running(ref: WorkloadRef, image: str) -> dict[WorkloadRef, ObservedWorkload]:
    return {ref: ObservedWorkload(ref, {"web": image}, Rollout(True, "1/1 updated"))}


@pytest.mark.parametrize("step", ["Deploying", "RollingOut", "Testing"])
def test_an_unfinished_stage_gets_its_images_back(step: str) -> None:
    leaving = leave(release(run(step)), running(WEB, NEW))
    assert leaving.effects == (SetImages(((WEB, "web", OLD),), restore=True),)
    (event,) = leaving.events
    assert event.reason == "ReleaseDeleted" and "re-applied the images" in event.message


def test_a_running_test_job_is_stopped() -> None:
    leaving = leave(release(run("Testing", testJob="shop/shop-v1-staging-x")), running(WEB, NEW))
    assert DeleteJob("shop", "shop-v1-staging-x") in leaving.effects


@pytest.mark.parametrize("step", ["Passed", "Failed", "WaitingForLock", "Pending"])
def test_a_stage_that_passed_failed_or_never_deployed_is_left_as_it_is(step: str) -> None:
    leaving = leave(release(run(step)), running(WEB, NEW if step == "Passed" else OLD))
    assert leaving.effects == () and leaving.events == ()


def test_a_rollback_already_applied_is_not_applied_again() -> None:
    status = run("RollingBack", rolledBackAt="2026-05-01T09:01:00Z")
    assert leave(release(status), running(WEB, OLD)).effects == ()


def test_someone_elses_image_is_left_alone_and_the_event_says_so() -> None:
    leaving = leave(release(run("RollingOut")), running(WEB, "reg.io/shop/web@sha256:" + "9" * 64))
    assert leaving.effects == ()
    (event,) = leaving.events
    assert "left its images in place" in event.message


def test_in_production_a_bake_is_rolled_back_and_alerted() -> None:
    prod = WorkloadRef.from_key(PROD)
    leaving = leave(
        release(production_run("Baking")), {prod: ObservedWorkload(prod, {"web": "b"}, Rollout(True, ""))}
    )
    assert leaving.effects[0] == SetImages(((prod, "web", "a"),), restore=True)
    alert = leaving.effects[-1]
    assert isinstance(alert, Alert) and alert.reason == "ReleaseDeleted"
    assert "was deleted while stage production was Baking" in alert.message


def test_every_step_says_what_its_stage_is_doing() -> None:
    """The one list that leaving, giving way and waiting read: a new step must be placed in it."""
    from gantry.domain.vocabulary.phases import ACTIVITY, Step

    assert set(ACTIVITY) == set(Step)


@pytest.mark.parametrize("step", ["Baking", "Soaking", "AwaitingDecision", "Held"])
def test_a_canary_that_bakes_soaks_or_waits_gets_its_images_back(step: str) -> None:
    """Reported: a Release deleted while its canary baked left the canary on its images."""
    leaving = leave(release(run(step)), running(WEB, NEW))
    assert leaving.effects == (SetImages(((WEB, "web", OLD),), restore=True),)
    (event,) = leaving.events
    assert f"was deleted while stage staging was {step}" in event.message


def test_a_deleted_release_gives_back_a_lock_its_status_never_mentioned() -> None:
    """Stopped after taking the next stage's lock and before writing that down (a way-station, or
    a write lost): the lock says who holds it, and that is what is given back, at once."""
    from datetime import timedelta

    from gantry.domain.records import locks
    from tests.unit.test_observe_execute import pipeline
    from tests.unit.world import NAMESPACE, World

    world = World(pipeline(), {WEB: NEW})
    gone, other = (
        locks.Claimant(f"{NAMESPACE}/shop-v1", "uid-1"),
        locks.Claimant(f"{NAMESPACE}/shop-v2", "uid-2"),
    )
    state, _ = locks.acquire(locks.LockState(), gone, world.now, timedelta(minutes=5))
    state, _ = locks.acquire(state, other, world.now, timedelta(minutes=5))
    world.lock = state
    body = {"metadata": {"name": "shop-v1", "namespace": NAMESPACE, "uid": "uid-1"}, "status": {}}
    world.resources.leave_locks(body, world.now)
    assert world.lock.holder is None  # free at once, the next in line takes it on its next look
    assert [w.claimant for w in world.lock.queue] == [other]
    assert [(t.claimant, t.reason) for t in world.lock.history] == [(gone, "ReleaseDeleted")]
