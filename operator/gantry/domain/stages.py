"""The steps of one stage: validate, lock, record, deploy, roll out, test, pass or roll back.

Every function takes the tick's Draft and moves it forward; none does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

from gantry.domain import production, registry, testjob
from gantry.domain.model import (
    AcquireLock,
    Alert,
    CreateJob,
    CreateTag,
    Draft,
    Phase,
    ReleaseLock,
    SetImages,
    Source,
    StageRun,
    Step,
)
from gantry.domain.pipeline import Pipeline, Stage
from gantry.domain.problems import Problem
from gantry.domain.timefmt import from_rfc3339
from gantry.domain.workloads import ImageChange, plan_changes


def pipeline_stage(d: Draft) -> Stage | Problem:
    pipeline = d.obs.pipeline
    if isinstance(pipeline, Problem):
        return pipeline
    if pipeline.application != d.release.application:
        return Problem(
            "PipelineMismatch",
            "spec.pipeline",
            f"Pipeline {pipeline.name} serves application {pipeline.application!r}, "
            f"not {d.release.application!r}",
            "point spec.pipeline at this application's Pipeline",
        )
    stages = pipeline.stages
    if d.stage_index >= len(stages):
        return Problem(
            "PipelineChanged",
            "spec.pipeline",
            f"Pipeline {pipeline.name} has no stage #{d.stage_index} any more",
            "restore the stage, or create a new Release",
        )
    return stages[d.stage_index]


def validate(d: Draft, stage: Stage) -> tuple[ImageChange, ...] | Problem:
    pipeline = d.obs.pipeline
    assert not isinstance(pipeline, Problem)
    quarantined = quarantine_problem(d)
    if quarantined is not None:
        return quarantined
    if stage.test is not None:
        problem = testjob.check_template(
            stage.test.job_template, f"Pipeline {pipeline.name} {stage.field}.test.jobTemplate"
        )
        if problem is not None:
            return problem
    changes = plan_changes(pipeline.name, stage, d.release.artifacts, d.obs.targets)
    if stage.production and not isinstance(changes, Problem):
        provenance = production.check_provenance(d, changes)
        if isinstance(provenance, Problem):
            return provenance
        older = production.not_newer(d)
        if older is not None:
            return older
    return changes


def quarantine_problem(d: Draft) -> Problem | None:
    """A digest rolled back from production stays refused until someone lifts the quarantine."""
    for index, (name, image) in enumerate(d.release.artifacts.items()):
        digest = image.rsplit("@", 1)[-1]
        record = d.obs.production.quarantine.get(digest)
        if record is not None:
            return Problem(
                "Quarantined",
                f"spec.artifacts[{index}].image",
                f"{name}'s digest {digest} was rolled back from production ({record.get('release')} "
                f"{record.get('version')}, {record.get('reason')}, {record.get('since')})",
                "build and release a fixed image; if the rollback was a mistake, lift the quarantine with a "
                "ReleaseDecision (action: LiftQuarantine)",
            )
    return None


def raw_stage(pipeline: Pipeline, stage: Stage) -> Mapping[str, Any]:
    """The stage as plain data, so a run is self-contained even if the Pipeline changes later."""
    out: dict[str, Any] = {
        "environment": stage.environment,
        "lock": stage.lock,
        "rollbackOnFailure": stage.rollback_on_failure,
        "rolloutTimeoutSeconds": stage.rollout_timeout_seconds,
        "targets": [
            {
                "namespace": t.namespace,
                "kind": t.kind,
                **({"name": t.name} if t.name else {"selector": {"matchLabels": dict(t.match_labels)}}),
                **({"containers": list(t.containers)} if t.containers else {}),
            }
            for t in stage.targets
        ],
    }
    if stage.test is not None:
        out["test"] = {
            "jobTemplate": stage.test.job_template,
            "timeoutSeconds": stage.test.timeout_seconds,
            **({"namespace": stage.test.namespace} if stage.test.namespace else {}),
        }
    if stage.production:
        out["production"] = True
        out["promotion"] = stage.promotion
    if stage.analysis is not None:
        out["analysis"] = stage.analysis.to_spec()
    if stage.registry is not None:
        out["registry"] = stage.registry.to_spec()
    return out


def block(d: Draft, problem: Problem) -> None:
    if d.phase != Phase.BLOCKED or d.reason != problem.reason or d.message != problem.describe():
        d.event("Warning", problem.reason, problem.describe())
    d.phase, d.reason, d.message = Phase.BLOCKED, problem.reason, problem.describe()


def version_settled(d: Draft) -> bool:
    """Before anything is deployed: the version tag exists on the Release's revision (or is made so)."""
    source = d.obs.source
    if d.version or d.release.repository is None or source is None:
        d.version = d.version or d.release.version  # as given: no git source to check it against
        return True
    problem = source_problem(d, source)
    if problem is not None:
        block(d, problem)
        return False
    wanted = d.release.version or source.tag
    assert wanted is not None and source.revision is not None
    if source.tag_commit is None:
        d.effects.append(CreateTag(wanted, source.revision, f"{wanted} ({d.release.key})"))
    d.version, d.changelog = wanted, source.changelog
    return True


def source_problem(d: Draft, source: Source) -> Problem | None:
    refusal = rejected(d, "CreateTag")
    if refusal is not None:
        return Problem(
            "TagPushRejected",
            "spec.source.repository",
            f"pushing the tag failed: {refusal}",
            "check the credentials Secret and that origin accepts tags",
        )
    if source.error is not None:
        return Problem(
            "GitSourceUnavailable",
            "spec.source",
            source.error,
            "check spec.source.repository and spec.source.revision, and the credentials Secret",
        )
    if d.release.hotfix and source.hotfix_branch is None:
        return Problem(
            "NotAHotfixBranch",
            "spec.hotfix",
            "spec.source.revision is on no HOT-<n> branch",
            "build hotfixes from the HOT-<n> branch of the emergency, or drop spec.hotfix",
        )
    wanted = d.release.version or source.tag
    if not wanted or source.revision is None:
        since = source.base or "the first commit"
        return Problem(
            "NothingToRelease",
            "spec.version",
            f"no feat, fix, perf or breaking commit since {since} up to spec.source.revision",
            "set spec.version, or release a revision with a release-worthy commit",
        )
    if source.tag_commit is not None and source.tag_commit != source.revision:
        return Problem(
            "TagMismatch",
            "spec.version",
            f"tag {wanted} already points at {source.tag_commit[:12]}, not at spec.source.revision "
            f"{source.revision[:12]}",
            "tags are never moved: release the tagged commit, or use the next version",
        )
    return None


def start_stage(d: Draft) -> None:
    if not version_settled(d):
        return
    stage = pipeline_stage(d)
    if isinstance(stage, Problem):
        block(d, stage)
        return
    changes = validate(d, stage)
    if isinstance(changes, Problem):
        block(d, changes)
        return
    pipeline = d.obs.pipeline
    assert not isinstance(pipeline, Problem)
    d.run = StageRun(
        index=d.stage_index,
        name=stage.name,
        environment=stage.environment,
        step=Step.PENDING,
        started_at=d.now,
        spec=raw_stage(pipeline, stage),
        lock=stage.lock,
    )
    if stage.production:
        provenance = production.check_provenance(d, changes)
        assert not isinstance(provenance, Problem)  # validate() already checked it
        d.run = replace(d.run, provenance=provenance)
    if stage.registry is not None:
        # The seed's order: tag (and copy) the existing artifact first, then lock and deploy.
        message = f"stage {stage.name}: tagging {d.version or d.release.version} in the registry"
        d.move(Step.PROMOTING, "Promoting", message)
        return
    enter_stage(d)


def enter_stage(d: Draft) -> None:
    """Queue for the stage's lock, or go straight to deploying."""
    assert d.run is not None
    stage = d.run.stage(d.release.pipeline)
    if stage.lock:
        d.effects.append(AcquireLock(stage.environment))
        message = f"waiting for EnvironmentLock {stage.environment}"
        d.move(Step.WAITING_FOR_LOCK, "WaitingForLock", message)
        d.event("Normal", "LockRequested", f"stage {stage.name}: {message}")
    else:
        d.move(Step.DEPLOYING, "Deploying", f"deploying to stage {stage.name}")


def wait_for_lock(d: Draft) -> None:
    assert d.run is not None
    lock = d.obs.lock
    stage = pipeline_stage(d)
    problem = stage if isinstance(stage, Problem) else validate(d, stage)
    if isinstance(problem, Problem):
        # Nothing is deployed yet: leave the queue so others are not held up, and wait for a fix.
        d.effects.append(ReleaseLock(d.run.environment, "Blocked"))
        d.run = replace(d.run, step=Step.PENDING)
        block(d, problem)
        return
    if lock is not None and lock.held:
        pipeline = d.obs.pipeline
        assert not isinstance(pipeline, Problem) and not isinstance(stage, Problem)
        message = f"holding EnvironmentLock {d.run.environment}; deploying to stage {d.run.name}"
        spec = raw_stage(pipeline, stage)  # the Pipeline may have changed while we queued
        d.move(Step.DEPLOYING, "LockAcquired", message, lock_acquired_at=d.now, spec=spec)
        d.event("Normal", "LockAcquired", message)
        return
    d.effects.append(AcquireLock(d.run.environment))  # joins the queue, or keeps our place alive
    where = f"position {lock.position}" if lock and lock.position else "in queue"
    behind = f" behind {lock.holder}" if lock and lock.holder else ""
    d.phase, d.reason = Phase.QUEUED, "WaitingForLock"
    d.message = f"waiting for EnvironmentLock {d.run.environment}: {where}{behind}"
    if lock is not None and lock.frozen_by:
        d.reason = "LockFrozen"
        d.message = (
            f"EnvironmentLock {d.run.environment} is frozen after the emergency of {lock.frozen_by}: "
            "only hotfix Releases (spec.hotfix: true) may deploy until a hotfix reaches production"
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


def lock_lost(d: Draft) -> None:
    assert d.run is not None
    if d.obs.lock is not None and d.obs.lock.preempted:
        holder = d.obs.lock.holder or "an emergency"
        start_rollback(d, "Preempted", f"preempted by {holder} (production rollback or emergency)")
        return
    message = (
        f"lost EnvironmentLock {d.run.environment} (lease expired while Gantry was not renewing it); "
        f"stage {d.run.name} was left as it is because another Release now owns it"
    )
    d.move(Step.FAILED, "LockLost", message, finished_at=d.now)


def deploy(d: Draft) -> None:
    assert d.run is not None
    if not holds_lock(d):
        if d.run.changes is None:  # nothing touched yet: queue again
            d.move(
                Step.WAITING_FOR_LOCK, "WaitingForLock", f"waiting for EnvironmentLock {d.run.environment}"
            )
            d.effects.append(AcquireLock(d.run.environment))
        else:
            lock_lost(d)
        return
    if d.run.changes is None:
        # First record what runs now (the rollback target); only the next tick patches.
        stage = d.run.stage(d.release.pipeline)
        pipeline = d.obs.pipeline
        name = pipeline.name if not isinstance(pipeline, Problem) else d.release.pipeline
        changes = plan_changes(name, stage, registry.stage_artifacts(d), d.obs.targets)
        if isinstance(changes, Problem):
            if d.run.lock:
                d.effects.append(ReleaseLock(d.run.environment, "Blocked"))
            d.run = replace(d.run, step=Step.PENDING)
            block(d, changes)
            return
        d.run = replace(d.run, changes=changes)
        d.message = f"recorded the images stage {d.run.name} runs now; deploying"
        return
    refusal = rejected(d, "SetImages")
    if refusal is not None:
        start_rollback(d, "DeployRejected", f"the API server refused the new images: {refusal}")
        return
    images = tuple((c.workload, c.container, c.after) for c in d.run.changes)
    d.effects.append(SetImages(images))
    workloads = sorted({str(c.workload) for c in d.run.changes})
    message = f"stage {d.run.name}: set {len(images)} container image(s) on {', '.join(workloads)}"
    d.move(Step.ROLLING_OUT, "RollingOut", message, deployed_at=d.now)
    d.event("Normal", "Deployed", message)


def replaced(d: Draft, want: str) -> list[str]:
    """Containers that now run an image that is neither ours nor what we replaced: someone else's."""
    assert d.run is not None and d.run.changes is not None
    foreign: list[str] = []
    for change in d.run.changes:
        seen = d.obs.workloads.get(change.workload)
        image = seen.containers.get(change.container) if seen is not None else None
        if (
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
            pending.append(f"{ref}: not found")
            continue
        changes = [c for c in d.run.changes if c.workload == ref]
        images = [seen.containers.get(c.container) for c in changes]
        if any(image not in (c.before, c.after) for c, image in zip(changes, images, strict=True)):
            continue  # someone else's images: reported by _replaced, nothing of ours to wait for
        behind = [c.container for c, image in zip(changes, images, strict=True) if image != getattr(c, want)]
        if behind:
            pending.append(f"{ref}: container(s) {', '.join(behind)} not yet set")
        elif not seen.rollout.done:
            pending.append(f"{ref}: {seen.rollout.detail}")
    return pending


def superseded(d: Draft) -> bool:
    """Another Release or a person re-pinned our containers mid-stage: stop, and do not fight them."""
    assert d.run is not None
    foreign = replaced(d, "after")
    if not foreign:
        return False
    message = (
        f"stage {d.run.name}: images were replaced before the stage finished ({'; '.join(foreign)}); "
        "not rolling back over someone else's change"
    )
    d.event("Warning", "Superseded", message)
    d.move(Step.FAILED, "Superseded", message, finished_at=d.now)
    return True


def rejected(d: Draft, effect: str) -> str | None:
    """The API server's refusal of an effect this tick tried, if any; each refusal is acted on once."""
    error = d.obs.error
    if error is None or error.effect != effect or d.error_handled:
        return None
    d.error_handled = True
    return error.message


def elapsed(d: Draft, since: str | None) -> timedelta:
    return d.obs.now - from_rfc3339(since) if since else timedelta(0)


def roll_out(d: Draft) -> None:
    assert d.run is not None
    if not holds_lock(d):
        lock_lost(d)
        return
    if superseded(d):
        return
    pending = rollout_pending(d, "after")
    stage = d.run.stage(d.release.pipeline)
    if not pending:
        if stage.analysis is not None:
            production.start_bake(d)
        elif stage.test is None:
            d.move(Step.PASSED, "RolledOut", f"stage {d.run.name}: rollout complete", rolled_out_at=d.now)
        else:
            message = f"stage {d.run.name}: rollout complete; running integration tests"
            d.move(Step.TESTING, "RolledOut", message, rolled_out_at=d.now)
            d.event("Normal", "RolledOut", message)
            run_test(d)
        return
    timeout = stage.rollout_timeout_seconds
    if elapsed(d, d.run.deployed_at) > timedelta(seconds=timeout):
        start_rollback(d, "RolloutTimeout", f"rollout not complete after {timeout}s: {'; '.join(pending)}")
        return
    d.message = f"stage {d.run.name}: waiting for rollout: {'; '.join(pending)}"


def run_test(d: Draft) -> None:
    assert d.run is not None
    if not holds_lock(d):
        lock_lost(d)
        return
    stage = d.run.stage(d.release.pipeline)
    assert stage.test is not None
    refusal = rejected(d, "CreateJob")
    if refusal is not None:
        start_rollback(d, "TestJobRejected", f"the API server refused the test Job: {refusal}")
        return
    if superseded(d):  # a test result would not be about this Release's images any more
        return
    job = d.obs.job
    if job is None:
        # Not there (yet, or deleted by someone): create it; the name is fixed, so never twice.
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
        )
        d.effects.append(CreateJob(manifest))
        if d.run.test_job is None:
            where = f"{stage.test_namespace}/{name}"
            d.run = replace(d.run, test_job=where, test_started_at=d.now)
            d.event("Normal", "TestStarted", f"stage {d.run.name}: started test Job {where}")
            d.message = f"stage {d.run.name}: test Job {where} running"
        return
    if job.finished and job.succeeded:
        message = f"stage {d.run.name}: test Job {d.run.test_job} succeeded"
        d.move(Step.PASSED, "TestPassed", message, test_result="Succeeded")
        d.event("Normal", "TestPassed", message)
        return
    if job.finished:
        d.run = replace(d.run, test_result="Failed")
        detail = f": {job.message}" if job.message else ""
        start_rollback(d, "TestFailed", f"test Job {d.run.test_job} failed{detail}")
        return
    timeout = stage.test.timeout_seconds
    if elapsed(d, d.run.test_started_at) > timedelta(seconds=timeout):
        d.run = replace(d.run, test_result="TimedOut")
        start_rollback(d, "TestTimeout", f"test Job {d.run.test_job} did not finish within {timeout}s")
        return
    d.message = f"stage {d.run.name}: test Job {d.run.test_job} running"


def start_rollback(d: Draft, reason: str, detail: str) -> None:
    assert d.run is not None
    stage = d.run.stage(d.release.pipeline)
    if stage.production:
        production.start_rollback(d, reason, f"stage {d.run.name}: {detail}", production.SYSTEM)
        return
    message = f"stage {d.run.name}: {detail}"
    d.event("Warning", reason, message)
    if not stage.rollback_on_failure or not d.run.changes:
        d.move(Step.FAILED, reason, message + " (rollback disabled for this stage)", finished_at=d.now)
        return
    d.move(Step.ROLLING_BACK, reason, message + "; rolling back")
    roll_back(d)


def roll_back(d: Draft) -> None:
    assert d.run is not None and d.run.changes is not None
    if d.run.rollback is not None:
        production.roll_back_production(d)
        return
    reason, detail = d.run.reason or "RolledBack", d.run.message or ""
    refusal = rejected(d, "SetImages")
    if refusal is not None:
        d.move(
            Step.FAILED, reason, f"{detail}; the rollback itself was refused: {refusal}", finished_at=d.now
        )
        return
    if d.run.rolled_back_at is None:
        d.effects.append(SetImages(tuple((c.workload, c.container, c.before) for c in d.run.changes)))
        d.run = replace(d.run, rolled_back_at=d.now)
        d.event("Warning", "RollingBack", f"stage {d.run.name}: re-applying the images it ran before")
        d.message = f"{detail}; re-applied previous images"
        return
    pending = rollout_pending(d, "before")
    foreign = replaced(d, "before")
    if foreign:
        detail += f"; left alone because someone changed them since: {'; '.join(foreign)}"
    stage = d.run.stage(d.release.pipeline)
    timed_out = elapsed(d, d.run.rolled_back_at) > timedelta(seconds=stage.rollout_timeout_seconds)
    if pending and not timed_out:
        d.message = f"{detail}; waiting for rollback rollout: {'; '.join(pending)}"
        return
    outcome = "rolled back" if not pending else f"rollback not complete: {'; '.join(pending)}"
    d.move(
        Step.FAILED, reason, f"{detail.removesuffix('; rolling back')}; stage {outcome}", finished_at=d.now
    )


def pass_stage(d: Draft) -> None:
    assert d.run is not None
    run = d.run
    if run.spec.get("production"):
        production.finish_passed(d)
        return
    if run.lock:
        d.effects.append(ReleaseLock(run.environment, "Passed"))
    d.run = replace(run, finished_at=d.now)
    d.event("Normal", "StagePassed", f"stage {run.name} passed")
    pipeline = d.obs.pipeline
    remaining = 0 if isinstance(pipeline, Problem) else len(pipeline.pre_production()) - (run.index + 1)
    if remaining > 0:
        # The next stage starts on a later tick, from the Pipeline as it is then.
        d.stage_index = run.index + 1
        d.phase, d.reason, d.message = Phase.PENDING, "StagePassed", f"stage {run.name} passed; next stage"
        return
    d.phase, d.reason = Phase.VERIFIED, "Verified"
    d.message = f"passed every stage up to production (last: {run.name}); ready for production"
    d.event("Normal", "Verified", d.message)
    if not isinstance(pipeline, Problem) and pipeline.production is not None:
        d.stage_index = pipeline.production.index
        if pipeline.production.promotion != "Auto":
            d.message = production.AWAITING_APPROVAL


def fail_release(d: Draft) -> None:
    assert d.run is not None
    run = d.run
    if run.spec.get("production"):
        production.finish_failed(d)
        return
    if run.lock and run.reason != "LockLost":
        d.effects.append(ReleaseLock(run.environment, "Failed"))
    d.phase, d.reason = Phase.FAILED, run.reason or "Failed"
    d.message = run.message or f"stage {run.name} failed"
    d.effects.append(Alert("warning", d.reason, f"Release {d.release.key}: {d.message}"))
    d.event("Warning", "Failed", d.message)
