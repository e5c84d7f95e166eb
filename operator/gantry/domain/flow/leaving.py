"""A Release deleted mid-flight leaves the way a failed one does: it puts back what its stage changed.

Deleting a Release (by hand, or a GitOps prune) while a stage is in progress (deploys, rolls out,
tests, soaks, bakes, in production or on a canary, or waits for a decision: every step whose
activity is IN_STAGE, domain.vocabulary.phases) must not leave that environment on images nobody tests or
watches any more: the stage's recorded previous images are re-applied (only where ours still
run: another Release's or a person's change is left alone) and its test Job is stopped. Its
locks are given back by the caller. A stage that passed stays as it is; one not begun has nothing
to put back; one rolling back finishes putting back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gantry.domain.flow import gitops
from gantry.domain.flow.model import Alert, DeleteJob, Effect, Event, ReleaseView, current_run
from gantry.domain.flow.steps import restorable_in
from gantry.domain.inputs.workloads import ObservedWorkload, WorkloadRef
from gantry.domain.vocabulary import commands
from gantry.domain.vocabulary.phases import IN_STAGE, Step
from gantry.domain.vocabulary.reasons import Reason


@dataclass(frozen=True)
class Leaving:
    effects: tuple[Effect, ...] = ()
    events: tuple[Event, ...] = ()


def leave(release: ReleaseView, workloads: Mapping[WorkloadRef, ObservedWorkload]) -> Leaving:
    """What a deleted Release does before it goes, given the workloads its stage changed as they are."""
    run = current_run(release.status)
    if run is None:
        return Leaving()
    rolling_back = run.step == Step.ROLLING_BACK and run.rolled_back_at is None
    if run.step not in IN_STAGE and not rolling_back:
        return Leaving()
    effects: list[Effect] = []
    said = [f"Release {release.key} was deleted while stage {run.name} was {run.step}"]
    images = restorable_in(workloads, run.changes or ()) if run.stage.rollback_on_failure else ()
    if images:
        why = f"Release {release.key} was deleted mid-stage"
        commit = gitops.Commit(
            release.key, release.application, release.version, run.name, run.decided_by or "gantry", why
        )
        effects.append(gitops.set_images(run, images, commit, restore=True))
        said.append("re-applied the images the stage ran before")
    elif run.changes:
        said.append("left its images in place (rollback disabled, or someone changed them since)")
    if run.test_job and run.step == Step.TESTING:
        namespace, name = run.test_job.split("/", 1)
        effects.append(DeleteJob(namespace, name, run.stage.cluster))
        said.append(f"stopped test Job {run.test_job}")
    if len(said) == 1:
        return Leaving()
    message = "; ".join(said)
    if run.production:
        act = commands.status(release.namespace, release.application)
        effects.append(Alert("warning", Reason.RELEASE_DELETED, f"{message}; {act}"))
    return Leaving(tuple(effects), (Event("Warning", Reason.RELEASE_DELETED, message),))
