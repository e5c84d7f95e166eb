"""The steps every stage shares: start, queue for the lock, record, deploy, roll out, test.

Each takes the tick's Draft and moves it forward; none does I/O. Where a step fails it hands over
to the `rollback` it is given (a stage's own, or production's), and when a rollout completes to
`then`: the router (`domain.flow.release`) binds both, so this module knows neither track.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

from gantry.domain.flow import gates, gitops, source
from gantry.domain.flow.draft import Draft, Rollback
from gantry.domain.flow.model import (
    AUTOMATIC,
    AcquireLock,
    Alert,
    ClaimProduction,
    CreateJob,
    ReleaseLock,
    SetImages,
    StageRun,
)
from gantry.domain.inputs import approvals, testjob
from gantry.domain.inputs.pipeline import Pipeline, Stage, pin
from gantry.domain.inputs.workloads import (
    ImageChange,
    ObservedWorkload,
    WorkloadRef,
    plan_changes,
)
from gantry.domain.records.ledger import Result
from gantry.domain.vocabulary import commands
from gantry.domain.vocabulary.images import digest_of
from gantry.domain.vocabulary.phases import FINAL, NOT_BEGUN, Phase, Step
from gantry.domain.vocabulary.problems import Problem
from gantry.domain.vocabulary.reasons import Reason
from gantry.domain.vocabulary.timefmt import to_rfc3339

AWAITING_APPROVAL = (
    "passed every stage before production; "
    "waiting for approval to promote (a ReleaseDecision with action: Approve)"
)
Then = Callable[[Draft], None]  # what a complete rollout leads to


def pipeline_stage(d: Draft) -> Stage | Problem:
    pipeline = d.pipeline
    if isinstance(pipeline, Problem):
        return pipeline
    if pipeline.application != d.release.application:
        return Problem(
            Reason.PIPELINE_MISMATCH,
            "spec.pipeline",
            f"Pipeline {pipeline.name} serves application {pipeline.application!r}, "
            f"not {d.release.application!r}",
            "point spec.pipeline at this application's Pipeline",
        )
    if d.stage_index >= len(pipeline.stages):
        return Problem(
            Reason.PIPELINE_CHANGED,
            "spec.pipeline",
            f"Pipeline {pipeline.name} has no stage #{d.stage_index} any more",
            "restore the stage, or create a new Release",
        )
    return pipeline.stages[d.stage_index]


def validate(d: Draft, stage: Stage) -> tuple[ImageChange, ...] | Problem:
    pipeline = d.pipeline
    assert not isinstance(pipeline, Problem)
    quarantined = gates.quarantine_problem(d)
    if quarantined is not None:
        return quarantined
    if stage.test is not None:
        problem = testjob.check_template(
            stage.test.job_template, f"Pipeline {pipeline.name} {stage.field}.test.jobTemplate"
        )
        if problem is not None:
            return problem
    if not stage.production:
        behind = gates.behind_production(d)
        if behind is not None:
            return behind
    changes = plan_changes(pipeline.name, stage, d.release.artifacts, d.obs.targets)
    if not isinstance(changes, Problem):
        keyless = gitops.missing_keys(stage, changes)
        if keyless is not None:
            return keyless
    if stage.production and not isinstance(changes, Problem):
        provenance = gates.check_provenance(d, changes)
        if isinstance(provenance, Problem):
            return provenance
        older = (
            gates.untagged(d) or gates.production_frozen(d) or gates.not_newer(d) or gates.production_busy(d)
        )
        if older is not None:
            return older
    return changes


# --- entering a stage ----------------------------------------------------------------------------


def start_stage(d: Draft) -> None:
    claim = d.rejected(ClaimProduction)
    if claim is not None:
        d.block(gates.claim_refused(claim))
        return
    if not source.version_settled(d):
        return
    untagged = source.untagged_problem(d)
    if untagged is not None:
        d.block(untagged)
        return
    stage = pipeline_stage(d)
    if isinstance(stage, Problem):
        d.block(stage)
        return
    changes = validate(d, stage)
    if isinstance(changes, Problem):
        d.block(changes)
        return
    if waits_for_older(d, stage):
        return
    if d.pinned is None and isinstance(d.pipeline, Pipeline):
        d.pinned = pin(d.pipeline)  # from now on the Release runs on these stages
    approver = entry_approval(d)
    if stage.manual and not stage.production and approver is None:
        await_approval(d, stage)
        return
    d.run = new_run(d, stage, Step.PENDING, decided_by=entered_by(d, stage, approver))
    if stage.production:
        provenance = gates.check_provenance(d, changes)
        assert not isinstance(provenance, Problem)  # validate() already checked it
        why = d.approved_reason if stage.manual else None
        d.run = replace(d.run, provenance=provenance, decision_reason=why)
        d.effects.append(
            ClaimProduction(gates.ledger_entry(d, Result.DEPLOYING, d.run.decided_by or "gantry", why or ""))
        )
    if stage.registry is not None:
        # The seed's order: tag (and copy) the existing artifact first, then lock and deploy.
        message = f"stage {stage.name}: tagging {d.version or d.release.version} in the registry"
        d.move(Step.PROMOTING, Reason.PROMOTING, message)
        return
    enter_stage(d)


def supersedable(d: Draft) -> bool:
    """A newer Release of the same source exists (NewestOnly) and this one has not begun the stage
    it is at: it gives way, if the newer one has come as far. One that already deploys, or waits
    for production, goes on."""
    if d.release.superseded_by is None or d.phase in (Phase.VERIFIED, *FINAL):
        return False
    door = d.run is None or (not d.run.production and d.run.step in NOT_BEGUN)
    if door and d.run is not None and d.run.step == Step.WAITING_FOR_LOCK and d.run.lock:
        # In a lock's queue: give way only once the newer one has taken our place there, so
        # the application keeps its turn (leaving first would send the newer one to the back).
        return d.obs.lock is not None and d.obs.lock.heir_waiting
    return door and gives_way(d.stage_index, d.obs.newer_reached)


def gives_way(at: int, newer_reached: int | None) -> bool:
    """Newest wins only against a newer Release that has reached this stage (or passed it). One
    still in an earlier stage would leave this stage's door empty while it catches up; with
    commits merged faster than a stage takes, every Release would give way at the door and no
    newer one would ever get through (GitLab's newest_first starvation). So the stage always
    serves the furthest Release there is."""
    return newer_reached is not None and newer_reached >= at


def waits_for_older(d: Draft, stage: Stage) -> bool:
    """An older Release of the same ReleaseSource is in this stage (deploying, testing, soaking):
    it finishes the stage before this one enters it, so neither re-pins the other's containers
    mid-test. (One that has not begun it gives way instead: see supersedable.)"""
    older = [name for name, where in d.obs.ahead if where == stage.name]
    if not older:
        return False
    message = (
        f"waiting for {', '.join(older)} to finish stage {stage.name}: an older Release of the same "
        "ReleaseSource that is in a stage finishes it before a newer one enters"
    )
    d.wait(Reason.WAITING_FOR_OLDER, message)
    return True


def supersede(d: Draft) -> None:
    where = f"stage {d.run.name}" if d.run is not None else "its first stage"
    if d.run is not None and d.run.lock and d.run.step == Step.WAITING_FOR_LOCK:
        d.effects.append(ReleaseLock(d.run.environment, Reason.SUPERSEDED))  # its place in the queue
    d.phase, d.reason = Phase.SUPERSEDED, Reason.SUPERSEDED_BY_NEWER
    d.message = (
        f"superseded by {d.release.superseded_by}, a newer commit's Release of the same ReleaseSource "
        f"(policy NewestOnly), before it began {where}"
    )
    d.event("Normal", Reason.SUPERSEDED_BY_NEWER, d.message)
    # Once (the phase is final): a team that watches its alerts sees work it merged skipped.
    d.effects.append(Alert("info", Reason.SUPERSEDED_BY_NEWER, f"Release {d.release.key}: {d.message}"))


def new_run(d: Draft, stage: Stage, step: Step, decided_by: str | None = None) -> StageRun:
    """The Release's run of `stage` from now, with the stage as it is now pinned into it."""
    return StageRun(
        index=d.stage_index,
        name=stage.name,
        environment=stage.environment,
        step=step,
        started_at=d.now,
        spec=stage.to_spec(),
        lock=stage.lock,
        decided_by=decided_by,
    )


def entered_by(d: Draft, stage: Stage, approver: str | None) -> str | None:
    """Who decided this Release enters `stage`: the approval of production, for production (an
    approval of an earlier stage, a canary's, is not one of production); the stage's own approver
    for a gated stage; for a stage that promotes on its own, nobody but Gantry."""
    if stage.production:
        return d.approved_by if stage.manual else AUTOMATIC
    return approver


def entry_approval(d: Draft) -> str | None:
    """Who approved this Release into its current stage (promotion: Manual before production)."""
    run = d.run
    if run is None or run.index != d.stage_index or run.step != Step.AWAITING_APPROVAL:
        return None
    return run.decided_by


def await_approval(d: Draft, stage: Stage) -> None:
    """A stage with promotion: Manual takes the Release only when a person approves: wait, saying
    how (once: an Event and an alert with the command)."""
    command = commands.approve(d.release.namespace, d.release.name)
    message = waiting_message(d, stage)
    first = d.phase != Phase.AWAITING_APPROVAL
    d.run = new_run(d, stage, Step.AWAITING_APPROVAL)
    d.move(Step.AWAITING_APPROVAL, Reason.AWAITING_APPROVAL, message)
    if first:
        d.event("Normal", Reason.AWAITING_APPROVAL, message)
        version = d.version or d.release.version
        said = (
            f"Release {d.release.key} ({version}) waits for approval to enter stage {stage.name}: {command}"
        )
        d.effects.append(Alert("info", Reason.AWAITING_APPROVAL, said))


def waiting_message(d: Draft, stage: Stage) -> str:
    """What a Release waiting for approval into `stage` says, with where its approval policy stands."""
    if stage.production:
        message = AWAITING_APPROVAL
    else:
        command = commands.approve(d.release.namespace, d.release.name)
        message = f"stage {stage.name} takes a Release only with approval (promotion: Manual): {command}"
    if stage.approval is None:
        return message
    given = [a for a in d.approvals if a.get("stage") == stage.name]
    return f"{message}; {approvals.state(stage.approval, given)}"


def approving_stage(d: Draft) -> Stage | None:
    """The stage an Approve decision lets the Release into now: production from Verified, else
    the Manual stage it waits at."""
    if d.phase == Phase.VERIFIED:
        return d.pipeline.production if isinstance(d.pipeline, Pipeline) else None
    return d.run.stage if d.run is not None and d.run.step == Step.AWAITING_APPROVAL else None


def short_of_approvals(d: Draft, decision: Mapping[str, Any], said: str) -> bool:
    """Count an Approve against the stage's approval policy. True while the policy still waits
    (this approval recorded, or refused with why: Ignored); False when it is met (or there is no
    policy): then the approvers, all of them, are who decided."""
    stage = approving_stage(d)
    policy = stage.approval if stage is not None else None
    if stage is None or policy is None:
        return False
    by = str(decision.get("decidedBy") or "unknown")
    groups = [str(g) for g in decision.get("groups") or ()]
    given = [a for a in d.approvals if a.get("stage") == stage.name]
    refused = approvals.refusal(policy, by, groups, d.release.authors, given)
    if refused is not None:
        d.ignored = f"{said}; {refused}"
        d.event("Warning", Reason.DECISION_IGNORED, d.ignored)
        return True
    record: dict[str, Any] = {
        "stage": stage.name,
        "by": by,
        "reason": str(decision.get("reason") or ""),
        "time": d.now,
    }
    if groups:
        record["groups"] = groups
    d.approvals.append(record)
    given.append(record)
    state = approvals.state(policy, given)
    if len(given) < policy.approvals:
        d.message = waiting_message(d, stage)
        d.event("Normal", Reason.APPROVED, f"{said}; {state}")
        return True
    d.approved_by = ", ".join(str(a["by"]) for a in given)
    return False


def approved_entry(d: Draft) -> None:
    """Waiting to enter a stage: once approved (the approval is kept on the waiting run), start it;
    while a gate blocks it after the approval, try again at each look."""
    if entry_approval(d) is not None:
        start_stage(d)


def enter_stage(d: Draft) -> None:
    """Queue for the stage's lock, or go straight to deploying."""
    assert d.run is not None
    stage = d.run.stage
    if stage.lock:
        d.effects.append(AcquireLock(stage.environment))
        message = f"waiting for EnvironmentLock {stage.environment}"
        d.move(Step.WAITING_FOR_LOCK, Reason.WAITING_FOR_LOCK, message)
        d.event("Normal", Reason.LOCK_REQUESTED, f"stage {stage.name}: {message}")
        d.passing = True  # the next look sees whether the lock is ours: held, or a place in its queue
    else:
        d.move(Step.DEPLOYING, Reason.DEPLOYING, f"deploying to stage {stage.name}")
        record_images(d)  # no lock to wait for: what this look saw running is the rollback target


def wait_for_lock(d: Draft) -> None:
    assert d.run is not None
    lock = d.obs.lock
    stage = pipeline_stage(d)
    problem = stage if isinstance(stage, Problem) else validate(d, stage)
    if lock is not None and lock.too_short and not isinstance(problem, Problem):
        problem = Problem(
            Reason.LEASE_TOO_SHORT,
            f"EnvironmentLock {d.run.environment} spec.leaseSeconds",
            lock.too_short,
            "set spec.leaseSeconds to three reconcile intervals or more (or lower GANTRY_RECONCILE_INTERVAL)",
        )
    if isinstance(problem, Problem):
        # Nothing is deployed yet: leave the queue so others are not held up, and wait for a fix.
        d.effects.append(ReleaseLock(d.run.environment, Reason.BLOCKED))
        d.run = replace(d.run, step=Step.PENDING)
        d.block(problem)
        return
    if lock is not None and lock.held:
        message = f"holding EnvironmentLock {d.run.environment}; deploying to stage {d.run.name}"
        d.move(Step.DEPLOYING, Reason.LOCK_ACQUIRED, message, lock_acquired_at=d.now)
        d.event("Normal", Reason.LOCK_ACQUIRED, message)
        # The observer reads the lock before the workloads: what this look saw running is what
        # the last holder left, so it is recorded now (the write before any image changes).
        record_images(d)
        if d.run.changes is not None:
            d.message = f"holding EnvironmentLock {d.run.environment}; {d.message}"
        return
    d.effects.append(AcquireLock(d.run.environment))  # joins the queue, or keeps our place alive
    where = f"position {lock.position}" if lock and lock.position else "in queue"
    if lock is not None and lock.hotfixes_ahead:
        where += f" ({lock.hotfixes_ahead} hotfix Release(s) ahead: hotfixes go first)"
    behind = f" behind {lock.holder}" if lock and lock.holder else ""
    d.phase, d.reason = Phase.QUEUED, Reason.WAITING_FOR_LOCK
    d.message = f"waiting for EnvironmentLock {d.run.environment}: {where}{behind}"
    if lock is not None and lock.frozen is not None:
        d.reason = Reason.LOCK_FROZEN
        d.message = (
            f"EnvironmentLock {d.run.environment} is {lock.frozen.describe()}: only hotfix Releases "
            f"(spec.hotfix: true) may deploy until {lock.frozen.lifted_when(d.run.environment)}; to pass it "
            f"now on the record: {commands.override_freeze(d.release.namespace, d.release.name)}"
        )


def holds_lock(d: Draft) -> bool:
    """Check (and renew) the lock of a stage that needs one; False means we lost it."""
    assert d.run is not None
    if not d.run.lock:
        return True
    lock = d.obs.lock
    if lock is None or not lock.held:
        return False
    if lock.renewal_due:
        d.effects.append(AcquireLock(d.run.environment))
    return True


def lock_lost(d: Draft, rollback: Rollback) -> None:
    assert d.run is not None
    if d.obs.lock is not None and d.obs.lock.preempted:
        holder = d.obs.lock.holder or "an emergency"
        rollback(d, Reason.PREEMPTED, f"preempted by {holder} (production rollback or emergency)")
        return
    lock = d.obs.lock
    what = lock.lost if lock is not None and lock.lost else "the EnvironmentLock object was deleted"
    message = f"lost EnvironmentLock {d.run.environment}: {what}"
    if lock is not None and lock.holder:
        # Another Release works there now and has recorded what runs as its rollback target:
        # rolling back under it would pull the floor from under its records.
        message += f"; stage {d.run.name} was left as it is for {lock.holder}"
        d.move(Step.FAILED, Reason.LOCK_LOST, message, finished_at=d.now)
        return
    rollback(d, Reason.LOCK_LOST, message)  # nobody else is there: put back what this stage changed


# --- deploying and watching the rollout ----------------------------------------------------------


def stage_artifacts(d: Draft) -> dict[str, str]:
    """The Release's artifacts as this stage deploys them: a digest copied to another repository by
    this or an earlier stage is deployed from there; the digest itself never changes."""
    images = dict(d.release.artifacts)
    runs = [StageRun.from_status(r) for r in d.release.status.get("stages") or ()]
    if d.run is not None:
        runs = [r for r in runs if r.index != d.run.index] + [d.run]
    for run in runs:
        for name, image in ((run.registry or {}).get("images") or {}).items():
            if name in images and digest_of(images[name]) == digest_of(image):
                images[name] = image
    return images


def deploy(d: Draft, rollback: Rollback) -> None:
    assert d.run is not None
    if not holds_lock(d):
        if d.run.changes is None:  # nothing touched yet: queue again
            d.move(
                Step.WAITING_FOR_LOCK,
                Reason.WAITING_FOR_LOCK,
                f"waiting for EnvironmentLock {d.run.environment}",
            )
            d.effects.append(AcquireLock(d.run.environment))
        else:
            lock_lost(d, rollback)
        return
    if d.run.changes is None:
        record_images(d)
        return
    refusal = d.rejected(SetImages)
    if refusal is not None:
        where = "git" if d.run.stage.git is not None else "the API server"
        rollback(d, Reason.DEPLOY_REJECTED, f"{where} refused the new images: {refusal.message}")
        return
    images = tuple((c.workload, c.container, c.after) for c in d.run.changes)
    d.effects.append(gitops.set_images(d.run, images, gitops.commit_of(d)))
    workloads = sorted({str(c.workload) for c in d.run.changes})
    message = f"stage {d.run.name}: set {len(images)} container image(s) on {', '.join(workloads)}"
    if d.run.stage.git is not None:
        message += f" by {gitops.describe(d.run.stage.git)}; the GitOps tool applies it"
    d.move(Step.ROLLING_OUT, Reason.ROLLING_OUT, message, deployed_at=d.now)
    d.event("Normal", Reason.DEPLOYED, message)


def record_images(d: Draft) -> None:
    """First record what runs now (the rollback target); only the next tick patches."""
    assert d.run is not None
    pipeline = d.pipeline
    name = pipeline.name if not isinstance(pipeline, Problem) else d.release.pipeline
    changes = plan_changes(name, d.run.stage, stage_artifacts(d), d.obs.targets)
    if isinstance(changes, Problem):
        if d.run.lock:
            d.effects.append(ReleaseLock(d.run.environment, Reason.BLOCKED))
        d.run = replace(d.run, step=Step.PENDING)
        d.block(changes)
        return
    d.run = replace(d.run, changes=changes)
    d.message = f"recorded the images stage {d.run.name} runs now; deploying"


def restore_refused(d: Draft, reason: str, detail: str) -> bool:
    """A rollback's restore refused for every workload (nothing was restored): fail, saying so,
    and never ask again. True when that happened."""
    refusal = d.rejected(SetImages)
    if refusal is None:
        return False
    message = f"{detail}; the rollback itself was refused: {refusal.message}"
    d.move(Step.FAILED, reason, message, finished_at=d.now)
    return True


GONE = ": not found"  # a workload deleted since the stage recorded it: nothing left to restore


def restorable(d: Draft, changes: tuple[ImageChange, ...]) -> tuple[tuple[WorkloadRef, str, str], ...]:
    """What a rollback re-applies: the recorded images, except where someone else's image runs now
    (a rollback never overwrites another Release's or a person's change)."""
    return restorable_in(d.obs.workloads, changes)


def restorable_in(
    workloads: Mapping[WorkloadRef, ObservedWorkload], changes: tuple[ImageChange, ...]
) -> tuple[tuple[WorkloadRef, str, str], ...]:
    out = []
    for c in changes:
        seen = workloads.get(c.workload)
        image = seen.containers.get(c.container) if seen is not None else None
        if image is None or image in (c.before, c.after):
            out.append((c.workload, c.container, c.before))
    return tuple(out)


def replaced(d: Draft, want: str) -> list[str]:
    """Containers that now run an image that is neither ours nor what we replaced: someone else's."""
    assert d.run is not None and d.run.changes is not None
    foreign: list[str] = []
    for change in d.run.changes:
        seen = d.obs.workloads.get(change.workload)
        image = seen.containers.get(change.container) if seen is not None else None
        if seen is not None and image is None:
            foreign.append(f"{change.workload} has no container {change.container} any more (renamed?)")
        elif (
            image is not None
            and image != getattr(change, want)
            and image not in (change.before, change.after)
        ):
            foreign.append(f"{change.workload} container {change.container} now runs {image}")
    return foreign


def rollout_pending(d: Draft, want: str) -> list[str]:
    """Workloads not yet fully rolled out to the wanted images ('after' or 'before')."""
    assert d.run is not None and d.run.changes is not None
    pending: list[str] = []
    for ref in sorted({c.workload for c in d.run.changes}):
        seen = d.obs.workloads.get(ref)
        if seen is None:
            pending.append(f"{ref}{GONE}")
            continue
        changes = [c for c in d.run.changes if c.workload == ref]
        images = [seen.containers.get(c.container) for c in changes]
        if any(image not in (c.before, c.after) for c, image in zip(changes, images, strict=True)):
            continue  # someone else's images: reported by replaced(), nothing of ours to wait for
        behind = [c.container for c, image in zip(changes, images, strict=True) if image != getattr(c, want)]
        if behind:
            pending.append(f"{ref}: container(s) {', '.join(behind)} not yet set")
        elif not seen.rollout.done:
            pending.append(f"{ref}: {seen.rollout.detail}")
    return pending


def superseded(d: Draft, rollback: Rollback) -> bool:
    """Another Release or a person re-pinned (or renamed) some of our containers mid-stage: stop,
    and do not fight them; but the containers still on our images go back to what they ran
    before, so no workload is left on images whose stage failed. (Set back to what they ran
    before is another controller's doing: see fought.)"""
    assert d.run is not None
    if gitops.fought(d, rollback):
        return True
    foreign = replaced(d, "after")
    if not foreign:
        return False
    ours = still_ours(d)
    if ours and d.run.stage.rollback_on_failure:
        d.effects.append(
            gitops.set_images(d.run, ours, gitops.commit_of(d, "images replaced mid-stage"), restore=True)
        )
        put_back = f"; put back the images of {', '.join(sorted({str(w) for w, _, _ in ours}))}"
    else:
        put_back = ""
    message = (
        f"stage {d.run.name}: images were replaced before the stage finished ({'; '.join(foreign)}); "
        f"not rolling back over someone else's change{put_back}"
    )
    d.event("Warning", Reason.SUPERSEDED, message)
    d.move(Step.FAILED, Reason.SUPERSEDED, message, finished_at=d.now)
    return True


def still_ours(d: Draft) -> tuple[tuple[WorkloadRef, str, str], ...]:
    """The containers that still run exactly the images this stage set."""
    assert d.run is not None
    out = []
    for change in d.run.changes or ():
        seen = d.obs.workloads.get(change.workload)
        if seen is not None and seen.containers.get(change.container) == change.after:
            out.append((change.workload, change.container, change.before))
    return tuple(out)


def roll_out(d: Draft, rollback: Rollback, then: Then) -> None:
    """Wait until every workload runs the new images; `then` decides what a complete rollout leads to."""
    assert d.run is not None
    if not holds_lock(d):
        lock_lost(d, rollback)
        return
    if superseded(d, rollback):
        return
    if gitops.waits_in_git(d, rollback):
        return
    pending = rollout_pending(d, "after")
    if not pending:
        warn_idle(d)
        then(d)
        return
    timeout = d.run.stage.rollout_timeout_seconds
    if d.elapsed((d.run.git or {}).get("mergedAt") or d.run.deployed_at) > timedelta(seconds=timeout):
        rollback(d, Reason.ROLLOUT_TIMEOUT, f"rollout not complete after {timeout}s: {'; '.join(pending)}")
        return
    d.message = f"stage {d.run.name}: waiting for rollout: {'; '.join(pending)}"


def warn_idle(d: Draft) -> None:
    """A workload scaled to 0 "rolls out" at once with nothing running the new images: say so."""
    assert d.run is not None and d.run.changes is not None
    idle = sorted(
        {str(c.workload) for c in d.run.changes if (s := d.obs.workloads.get(c.workload)) and s.rollout.idle}
    )
    if idle:
        d.event(
            "Warning",
            Reason.ZERO_REPLICAS,
            f"stage {d.run.name}: {', '.join(idle)} scaled to 0 replicas: nothing runs the new images",
        )


def begin_bake(d: Draft, message: str) -> None:
    """A complete rollout under `analysis`: watch the error rate from now (production or a canary)."""
    d.move(
        Step.BAKING,
        Reason.BAKING,
        message,
        rolled_out_at=d.now,
        analysis={"startedAt": d.now, "evaluations": []},
    )
    d.event("Normal", Reason.BAKING, message)


def test_or_pass(d: Draft, rollback: Rollback) -> None:
    """A complete rollout: run the stage's integration test, or pass when it has none."""
    assert d.run is not None
    rolled_out_at = d.run.rolled_out_at or d.now  # a canary's was set when its bake began
    if d.run.stage.test is None:
        passed(d, Reason.ROLLED_OUT, f"stage {d.run.name}: rollout complete", rolled_out_at=rolled_out_at)
        return
    message = f"stage {d.run.name}: rollout complete; running integration tests"
    d.move(Step.TESTING, Reason.ROLLED_OUT, message, rolled_out_at=rolled_out_at)
    d.event("Normal", Reason.ROLLED_OUT, message)
    run_test(d, rollback)


def passed(d: Draft, reason: str, message: str, **fields: Any) -> None:
    """The stage's checks passed: it soaks first when it asks to (soakSeconds), else it passed."""
    assert d.run is not None
    seconds = d.run.stage.soak_seconds
    if not seconds:
        d.move(Step.PASSED, reason, message, **fields)
        return
    until = to_rfc3339(d.obs.now + timedelta(seconds=seconds))
    soaking = f"{message}; soaking until {until} ({seconds}s healthy) before the next stage may take it"
    d.move(Step.SOAKING, Reason.SOAKING, soaking, soak_started_at=d.now, **fields)
    d.event("Normal", Reason.SOAKING, soaking)


# --- the integration test ------------------------------------------------------------------------


def run_test(d: Draft, rollback: Rollback) -> None:
    assert d.run is not None
    if not holds_lock(d):
        lock_lost(d, rollback)
        return
    stage = d.run.stage
    assert stage.test is not None
    refusal = d.rejected(CreateJob)
    if refusal is not None:
        rollback(d, Reason.TEST_JOB_REJECTED, f"the API server refused the test Job: {refusal.message}")
        return
    if superseded(d, rollback):  # a test result would not be about this Release's images any more
        return
    job = d.obs.job
    if job is None and d.run.test_job is not None:
        # Created (its name is recorded only after it was), now gone: someone deleted it. A test
        # nobody saw finish is no pass; running it again would hide that.
        rollback(d, Reason.TEST_JOB_DELETED, f"test Job {d.run.test_job} was deleted before it finished")
        return
    if job is None:
        start_test(d, stage)
        return
    if job.finished and job.succeeded:
        message = f"stage {d.run.name}: test Job {d.run.test_job} succeeded"
        d.event("Normal", Reason.TEST_PASSED, message)
        passed(d, Reason.TEST_PASSED, message, test_result="Succeeded")
        return
    if job.finished:
        d.run = replace(d.run, test_result="Failed")
        detail = f": {job.message}" if job.message else ""
        rollback(d, Reason.TEST_FAILED, f"test Job {d.run.test_job} failed{detail}")
        return
    timeout = stage.test.timeout_seconds
    if d.elapsed(d.run.test_started_at) > timedelta(seconds=timeout):
        d.run = replace(d.run, test_result="TimedOut")
        rollback(d, Reason.TEST_TIMEOUT, f"test Job {d.run.test_job} did not finish within {timeout}s")
        return
    d.message = f"stage {d.run.name}: test Job {d.run.test_job} running"


def start_test(d: Draft, stage: Stage) -> None:
    """Not there (yet, or deleted by someone): create it; the name is fixed, so never twice."""
    assert d.run is not None and stage.test is not None
    name = testjob.job_name(d.release.name, d.run.name, d.release.uid)
    manifest = testjob.build_job(
        stage.test.job_template,
        name=name,
        namespace=stage.test_namespace,
        release=d.release.name,
        release_uid=d.release.uid,
        application=d.release.application,
        version=d.version or d.release.version,
        stage=d.run.name,
        timeout_seconds=stage.test.timeout_seconds,
        owner=d.release.reference(),
    )
    d.effects.append(CreateJob(manifest, stage.cluster))
    if d.run.test_job is None:
        where = f"{stage.test_namespace}/{name}"
        d.run = replace(d.run, test_job=where, test_started_at=d.now)
        d.event("Normal", Reason.TEST_STARTED, f"stage {d.run.name}: started test Job {where}")
        d.message = f"stage {d.run.name}: test Job {where} running"
