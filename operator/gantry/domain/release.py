"""The stage machine: given a Release and what the cluster looks like now, what happens next.

`decide` is pure. The operator observes (workloads, lock, Job), calls `decide`, carries out
the returned effects, then writes the returned status with optimistic concurrency. Effects
are idempotent (setting an image to the value it already has changes nothing; a Job has a
deterministic name), so a tick that runs twice or dies half-way is harmless, and the order
"record previous images, then patch" makes every rollback exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from gantry.domain import testjob
from gantry.domain.conditions import set_condition
from gantry.domain.pipeline import Pipeline, Stage, parse_pipeline
from gantry.domain.problems import Problem
from gantry.domain.timefmt import from_rfc3339, to_rfc3339
from gantry.domain.workloads import ImageChange, ObservedWorkload, WorkloadRef, plan_changes

HISTORY_LIMIT = 50
# Keys of Release.status that `decide` owns; anything else there (e.g. Kopf's) is left alone.
MANAGED_STATUS_KEYS = (
    "phase",
    "stage",
    "stageIndex",
    "step",
    "reason",
    "message",
    "lock",
    "observedGeneration",
    "stages",
    "history",
    "conditions",
)


class Phase(StrEnum):
    PENDING = "Pending"
    BLOCKED = "Blocked"
    QUEUED = "Queued"
    DEPLOYING = "Deploying"
    TESTING = "Testing"
    ROLLING_BACK = "RollingBack"
    VERIFIED = "Verified"
    FAILED = "Failed"


TERMINAL = frozenset({Phase.VERIFIED, Phase.FAILED})


class Step(StrEnum):
    PENDING = "Pending"
    WAITING_FOR_LOCK = "WaitingForLock"
    DEPLOYING = "Deploying"
    ROLLING_OUT = "RollingOut"
    TESTING = "Testing"
    ROLLING_BACK = "RollingBack"
    PASSED = "Passed"
    FAILED = "Failed"


PHASE_OF_STEP = {
    Step.PENDING: Phase.PENDING,
    Step.WAITING_FOR_LOCK: Phase.QUEUED,
    Step.DEPLOYING: Phase.DEPLOYING,
    Step.ROLLING_OUT: Phase.DEPLOYING,
    Step.TESTING: Phase.TESTING,
    Step.ROLLING_BACK: Phase.ROLLING_BACK,
}


# --- what the operator sees ----------------------------------------------------------------------


@dataclass(frozen=True)
class ObservedLock:
    held: bool
    position: int | None = None  # in the queue, 1 = next
    holder: str | None = None  # who holds it, when it is not us
    renewal_due: bool = False


@dataclass(frozen=True)
class ObservedJob:
    name: str
    finished: bool
    succeeded: bool
    message: str = ""


@dataclass(frozen=True)
class EffectError:
    """A permanent refusal of an effect by the API server (e.g. 422 Invalid), not a blip."""

    effect: str  # the Effect's class name
    message: str


@dataclass(frozen=True)
class Observation:
    now: datetime
    pipeline: Pipeline | Problem
    targets: Mapping[int, tuple[ObservedWorkload, ...]] = field(default_factory=dict)
    workloads: Mapping[WorkloadRef, ObservedWorkload] = field(default_factory=dict)
    lock: ObservedLock | None = None
    job: ObservedJob | None = None
    error: EffectError | None = None


@dataclass(frozen=True)
class ReleaseView:
    namespace: str
    name: str
    uid: str
    generation: int
    application: str
    pipeline: str
    version: str
    artifacts: Mapping[str, str]
    status: Mapping[str, Any]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ReleaseView:
        meta, spec = body["metadata"], body.get("spec") or {}
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            generation=int(meta.get("generation") or 1),
            application=spec.get("application", ""),
            pipeline=spec.get("pipeline") or spec.get("application", ""),
            version=spec.get("version", ""),
            artifacts={a["name"]: a["image"] for a in spec.get("artifacts") or ()},
            status=body.get("status") or {},
        )


# --- what the operator does ----------------------------------------------------------------------


@dataclass(frozen=True)
class AcquireLock:
    environment: str


@dataclass(frozen=True)
class ReleaseLock:
    environment: str
    reason: str


@dataclass(frozen=True)
class SetImages:
    images: tuple[tuple[WorkloadRef, str, str], ...]  # (workload, container, image)


@dataclass(frozen=True)
class CreateJob:
    manifest: Mapping[str, Any]


@dataclass(frozen=True)
class Alert:
    severity: str
    reason: str
    message: str


Effect = AcquireLock | ReleaseLock | SetImages | CreateJob | Alert


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    status: dict[str, Any]
    effects: tuple[Effect, ...] = ()
    events: tuple[Event, ...] = ()
    changed: bool = False  # status differs from what is stored

    @property
    def idle(self) -> bool:
        """Nothing to do until the world changes: the caller can stop looping."""
        return not self.changed and not any(isinstance(e, SetImages | CreateJob) for e in self.effects)


# --- the stage run: one stage's record in status.stages ------------------------------------------


@dataclass(frozen=True)
class StageRun:
    index: int
    name: str
    environment: str
    step: Step
    started_at: str
    spec: Mapping[str, Any]  # the Pipeline stage as it was when the stage began
    lock: bool = False
    changes: tuple[ImageChange, ...] | None = None
    lock_acquired_at: str | None = None
    deployed_at: str | None = None
    rolled_out_at: str | None = None
    test_job: str | None = None
    test_started_at: str | None = None
    test_result: str | None = None
    rolled_back_at: str | None = None
    finished_at: str | None = None
    reason: str | None = None
    message: str | None = None

    def stage(self, pipeline_name: str) -> Stage:
        parsed = parse_pipeline(pipeline_name, {"stages": [dict(self.spec, name=self.name)]})
        assert not isinstance(parsed, Problem), parsed  # validated when the run started
        return replace(parsed.stages[0], index=self.index)

    def to_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": self.index,
            "name": self.name,
            "environment": self.environment,
            "step": str(self.step),
            "startedAt": self.started_at,
            "lock": self.lock,
            "spec": dict(self.spec),
        }
        if self.changes is not None:
            out["images"] = [
                {"workload": c.workload.key(), "container": c.container, "before": c.before, "after": c.after}
                for c in self.changes
            ]
        optional = {
            "lockAcquiredAt": self.lock_acquired_at,
            "deployedAt": self.deployed_at,
            "rolledOutAt": self.rolled_out_at,
            "testJob": self.test_job,
            "testStartedAt": self.test_started_at,
            "testResult": self.test_result,
            "rolledBackAt": self.rolled_back_at,
            "finishedAt": self.finished_at,
            "reason": self.reason,
            "message": self.message,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        return out

    @classmethod
    def from_status(cls, raw: Mapping[str, Any]) -> StageRun:
        images = raw.get("images")
        changes = None
        if images is not None:
            changes = tuple(
                ImageChange(WorkloadRef.from_key(i["workload"]), i["container"], i["before"], i["after"])
                for i in images
            )
        return cls(
            index=int(raw["index"]),
            name=raw["name"],
            environment=raw["environment"],
            step=Step(raw["step"]),
            started_at=raw["startedAt"],
            spec=raw.get("spec") or {},
            lock=bool(raw.get("lock")),
            changes=changes,
            lock_acquired_at=raw.get("lockAcquiredAt"),
            deployed_at=raw.get("deployedAt"),
            rolled_out_at=raw.get("rolledOutAt"),
            test_job=raw.get("testJob"),
            test_started_at=raw.get("testStartedAt"),
            test_result=raw.get("testResult"),
            rolled_back_at=raw.get("rolledBackAt"),
            finished_at=raw.get("finishedAt"),
            reason=raw.get("reason"),
            message=raw.get("message"),
        )


def current_run(status: Mapping[str, Any]) -> StageRun | None:
    runs = status.get("stages") or []
    if not runs:
        return None
    run = StageRun.from_status(runs[-1])
    return run if run.index == int(status.get("stageIndex", 0)) else None


# --- the decision --------------------------------------------------------------------------------


@dataclass
class _Draft:
    """The plan being built for one tick (mutable on purpose, local to `decide`)."""

    release: ReleaseView
    obs: Observation
    phase: Phase
    stage_index: int
    run: StageRun | None
    reason: str
    message: str
    effects: list[Effect] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    error_handled: bool = False

    @property
    def now(self) -> str:
        return to_rfc3339(self.obs.now)

    def event(self, type_: str, reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def move(self, step: Step, reason: str, message: str, **fields: Any) -> None:
        assert self.run is not None
        self.run = replace(self.run, step=step, reason=reason, message=message, **fields)
        self.reason, self.message = reason, message
        if step in PHASE_OF_STEP:
            self.phase = PHASE_OF_STEP[step]


def decide(release: ReleaseView, obs: Observation) -> Plan:
    status = release.status
    phase = Phase(status.get("phase", Phase.PENDING))
    if phase in TERMINAL:
        return Plan(status=dict(status))
    draft = _Draft(
        release=release,
        obs=obs,
        phase=phase,
        stage_index=int(status.get("stageIndex", 0)),
        run=current_run(status),
        reason=status.get("reason", ""),
        message=status.get("message", ""),
    )
    _advance(draft)
    return _finish(release, draft)


def _advance(d: _Draft) -> None:
    if d.run is None or d.run.step == Step.PENDING:
        _start_stage(d)
        return
    step = d.run.step
    # A stage's outcome is recorded before the lock is let go (on the next tick): were the lock
    # released first and that write lost in a crash, the restarted operator would see a stage
    # in progress without its lock and take it for a lost lock.
    if step == Step.PASSED:
        _pass_stage(d)
    elif step == Step.FAILED:
        _fail_release(d)
    elif step == Step.WAITING_FOR_LOCK:
        _wait_for_lock(d)
    elif step == Step.DEPLOYING:
        _deploy(d)
    elif step == Step.ROLLING_OUT:
        _roll_out(d)
    elif step == Step.TESTING:
        _test(d)
    elif step == Step.ROLLING_BACK:
        _roll_back(d)


def _pipeline_stage(d: _Draft) -> Stage | Problem:
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
    stages = pipeline.pre_production()
    if d.stage_index >= len(stages):
        return Problem(
            "PipelineChanged",
            "spec.pipeline",
            f"Pipeline {pipeline.name} has no stage #{d.stage_index} any more",
            "restore the stage, or create a new Release",
        )
    return stages[d.stage_index]


def _validate(d: _Draft, stage: Stage) -> tuple[ImageChange, ...] | Problem:
    pipeline = d.obs.pipeline
    assert not isinstance(pipeline, Problem)
    if stage.test is not None:
        problem = testjob.check_template(
            stage.test.job_template, f"Pipeline {pipeline.name} {stage.field}.test.jobTemplate"
        )
        if problem is not None:
            return problem
    return plan_changes(pipeline.name, stage, d.release.artifacts, d.obs.targets)


def _raw_stage(pipeline: Pipeline, stage: Stage) -> Mapping[str, Any]:
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
    return out


def _block(d: _Draft, problem: Problem) -> None:
    if d.phase != Phase.BLOCKED or d.reason != problem.reason or d.message != problem.describe():
        d.event("Warning", problem.reason, problem.describe())
    d.phase, d.reason, d.message = Phase.BLOCKED, problem.reason, problem.describe()


def _start_stage(d: _Draft) -> None:
    stage = _pipeline_stage(d)
    if isinstance(stage, Problem):
        _block(d, stage)
        return
    changes = _validate(d, stage)
    if isinstance(changes, Problem):
        _block(d, changes)
        return
    pipeline = d.obs.pipeline
    assert not isinstance(pipeline, Problem)
    d.run = StageRun(
        index=d.stage_index,
        name=stage.name,
        environment=stage.environment,
        step=Step.PENDING,
        started_at=d.now,
        spec=_raw_stage(pipeline, stage),
        lock=stage.lock,
    )
    if stage.lock:
        d.effects.append(AcquireLock(stage.environment))
        message = f"waiting for EnvironmentLock {stage.environment}"
        d.move(Step.WAITING_FOR_LOCK, "WaitingForLock", message)
        d.event("Normal", "LockRequested", f"stage {stage.name}: {message}")
    else:
        d.move(Step.DEPLOYING, "Deploying", f"deploying to stage {stage.name}")


def _wait_for_lock(d: _Draft) -> None:
    assert d.run is not None
    lock = d.obs.lock
    stage = _pipeline_stage(d)
    problem = stage if isinstance(stage, Problem) else _validate(d, stage)
    if isinstance(problem, Problem):
        # Nothing is deployed yet: leave the queue so others are not held up, and wait for a fix.
        d.effects.append(ReleaseLock(d.run.environment, "Blocked"))
        d.run = replace(d.run, step=Step.PENDING)
        _block(d, problem)
        return
    if lock is not None and lock.held:
        pipeline = d.obs.pipeline
        assert not isinstance(pipeline, Problem) and not isinstance(stage, Problem)
        message = f"holding EnvironmentLock {d.run.environment}; deploying to stage {d.run.name}"
        spec = _raw_stage(pipeline, stage)  # the Pipeline may have changed while we queued
        d.move(Step.DEPLOYING, "LockAcquired", message, lock_acquired_at=d.now, spec=spec)
        d.event("Normal", "LockAcquired", message)
        return
    d.effects.append(AcquireLock(d.run.environment))  # joins the queue, or keeps our place alive
    where = f"position {lock.position}" if lock and lock.position else "in queue"
    behind = f" behind {lock.holder}" if lock and lock.holder else ""
    d.phase, d.reason = Phase.QUEUED, "WaitingForLock"
    d.message = f"waiting for EnvironmentLock {d.run.environment}: {where}{behind}"


def _holds_lock(d: _Draft) -> bool:
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


def _lock_lost(d: _Draft) -> None:
    assert d.run is not None
    message = (
        f"lost EnvironmentLock {d.run.environment} (lease expired while Gantry was not renewing it); "
        f"stage {d.run.name} was left as it is because another Release now owns it"
    )
    d.move(Step.FAILED, "LockLost", message, finished_at=d.now)


def _deploy(d: _Draft) -> None:
    assert d.run is not None
    if not _holds_lock(d):
        if d.run.changes is None:  # nothing touched yet: queue again
            d.move(
                Step.WAITING_FOR_LOCK, "WaitingForLock", f"waiting for EnvironmentLock {d.run.environment}"
            )
            d.effects.append(AcquireLock(d.run.environment))
        else:
            _lock_lost(d)
        return
    if d.run.changes is None:
        # First record what runs now (the rollback target); only the next tick patches.
        stage = d.run.stage(d.release.pipeline)
        pipeline = d.obs.pipeline
        name = pipeline.name if not isinstance(pipeline, Problem) else d.release.pipeline
        changes = plan_changes(name, stage, d.release.artifacts, d.obs.targets)
        if isinstance(changes, Problem):
            if d.run.lock:
                d.effects.append(ReleaseLock(d.run.environment, "Blocked"))
            d.run = replace(d.run, step=Step.PENDING)
            _block(d, changes)
            return
        d.run = replace(d.run, changes=changes)
        d.message = f"recorded the images stage {d.run.name} runs now; deploying"
        return
    refusal = _rejected(d, "SetImages")
    if refusal is not None:
        _start_rollback(d, "DeployRejected", f"the API server refused the new images: {refusal}")
        return
    images = tuple((c.workload, c.container, c.after) for c in d.run.changes)
    d.effects.append(SetImages(images))
    workloads = sorted({str(c.workload) for c in d.run.changes})
    message = f"stage {d.run.name}: set {len(images)} container image(s) on {', '.join(workloads)}"
    d.move(Step.ROLLING_OUT, "RollingOut", message, deployed_at=d.now)
    d.event("Normal", "Deployed", message)


def _replaced(d: _Draft, want: str) -> list[str]:
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


def _rollout_pending(d: _Draft, want: str) -> list[str]:
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


def _superseded(d: _Draft) -> bool:
    """Another Release or a person re-pinned our containers mid-stage: stop, and do not fight them."""
    assert d.run is not None
    foreign = _replaced(d, "after")
    if not foreign:
        return False
    message = (
        f"stage {d.run.name}: images were replaced before the stage finished ({'; '.join(foreign)}); "
        "not rolling back over someone else's change"
    )
    d.event("Warning", "Superseded", message)
    d.move(Step.FAILED, "Superseded", message, finished_at=d.now)
    return True


def _rejected(d: _Draft, effect: str) -> str | None:
    """The API server's refusal of an effect this tick tried, if any; each refusal is acted on once."""
    error = d.obs.error
    if error is None or error.effect != effect or d.error_handled:
        return None
    d.error_handled = True
    return error.message


def _elapsed(d: _Draft, since: str | None) -> timedelta:
    return d.obs.now - from_rfc3339(since) if since else timedelta(0)


def _roll_out(d: _Draft) -> None:
    assert d.run is not None
    if not _holds_lock(d):
        _lock_lost(d)
        return
    if _superseded(d):
        return
    pending = _rollout_pending(d, "after")
    stage = d.run.stage(d.release.pipeline)
    if not pending:
        if stage.test is None:
            d.move(Step.PASSED, "RolledOut", f"stage {d.run.name}: rollout complete", rolled_out_at=d.now)
        else:
            message = f"stage {d.run.name}: rollout complete; running integration tests"
            d.move(Step.TESTING, "RolledOut", message, rolled_out_at=d.now)
            d.event("Normal", "RolledOut", message)
            _test(d)
        return
    timeout = stage.rollout_timeout_seconds
    if _elapsed(d, d.run.deployed_at) > timedelta(seconds=timeout):
        _start_rollback(d, "RolloutTimeout", f"rollout not complete after {timeout}s: {'; '.join(pending)}")
        return
    d.message = f"stage {d.run.name}: waiting for rollout: {'; '.join(pending)}"


def _test(d: _Draft) -> None:
    assert d.run is not None
    if not _holds_lock(d):
        _lock_lost(d)
        return
    stage = d.run.stage(d.release.pipeline)
    assert stage.test is not None
    refusal = _rejected(d, "CreateJob")
    if refusal is not None:
        _start_rollback(d, "TestJobRejected", f"the API server refused the test Job: {refusal}")
        return
    if _superseded(d):  # a test result would not be about this Release's images any more
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
            version=d.release.version,
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
        _start_rollback(d, "TestFailed", f"test Job {d.run.test_job} failed{detail}")
        return
    timeout = stage.test.timeout_seconds
    if _elapsed(d, d.run.test_started_at) > timedelta(seconds=timeout):
        d.run = replace(d.run, test_result="TimedOut")
        _start_rollback(d, "TestTimeout", f"test Job {d.run.test_job} did not finish within {timeout}s")
        return
    d.message = f"stage {d.run.name}: test Job {d.run.test_job} running"


def _start_rollback(d: _Draft, reason: str, detail: str) -> None:
    assert d.run is not None
    stage = d.run.stage(d.release.pipeline)
    message = f"stage {d.run.name}: {detail}"
    d.event("Warning", reason, message)
    if not stage.rollback_on_failure or not d.run.changes:
        d.move(Step.FAILED, reason, message + " (rollback disabled for this stage)", finished_at=d.now)
        return
    d.move(Step.ROLLING_BACK, reason, message + "; rolling back")
    _roll_back(d)


def _roll_back(d: _Draft) -> None:
    assert d.run is not None and d.run.changes is not None
    reason, detail = d.run.reason or "RolledBack", d.run.message or ""
    refusal = _rejected(d, "SetImages")
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
    pending = _rollout_pending(d, "before")
    foreign = _replaced(d, "before")
    if foreign:
        detail += f"; left alone because someone changed them since: {'; '.join(foreign)}"
    stage = d.run.stage(d.release.pipeline)
    timed_out = _elapsed(d, d.run.rolled_back_at) > timedelta(seconds=stage.rollout_timeout_seconds)
    if pending and not timed_out:
        d.message = f"{detail}; waiting for rollback rollout: {'; '.join(pending)}"
        return
    outcome = "rolled back" if not pending else f"rollback not complete: {'; '.join(pending)}"
    d.move(
        Step.FAILED, reason, f"{detail.removesuffix('; rolling back')}; stage {outcome}", finished_at=d.now
    )


def _pass_stage(d: _Draft) -> None:
    assert d.run is not None
    run = d.run
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


def _fail_release(d: _Draft) -> None:
    assert d.run is not None
    run = d.run
    if run.lock and run.reason != "LockLost":
        d.effects.append(ReleaseLock(run.environment, "Failed"))
    d.phase, d.reason = Phase.FAILED, run.reason or "Failed"
    d.message = run.message or f"stage {run.name} failed"
    d.effects.append(Alert("warning", d.reason, f"Release {d.release.key}: {d.message}"))
    d.event("Warning", "Failed", d.message)


def _finish(release: ReleaseView, d: _Draft) -> Plan:
    old = release.status
    runs = [dict(r) for r in old.get("stages") or []]
    if d.run is not None:
        record = d.run.to_status()
        if runs and int(runs[-1]["index"]) == d.run.index:
            runs[-1] = record
        else:
            runs.append(record)
    status: dict[str, Any] = {
        "phase": str(d.phase),
        "stageIndex": d.stage_index,
        "reason": d.reason,
        "message": d.message,
        "observedGeneration": release.generation,
        "stages": runs,
        "history": list(old.get("history") or []),
        "conditions": list(old.get("conditions") or []),
    }
    current = d.run if d.run is not None and d.run.index == d.stage_index else None
    stage_name = current.name if current else (runs[-1]["name"] if runs and d.phase in TERMINAL else "")
    if stage_name:
        status["stage"] = stage_name
    if current is not None:
        status["step"] = str(current.step)
    working = (Step.DEPLOYING, Step.ROLLING_OUT, Step.TESTING, Step.ROLLING_BACK, Step.PASSED, Step.FAILED)
    held = (
        current is not None
        and current.lock
        and current.step in working
        and d.phase not in TERMINAL
        and current.reason != "LockLost"
    )
    if held and current is not None:
        status["lock"] = {"name": current.environment, "acquiredAt": current.lock_acquired_at or d.now}
    transition = any(old.get(k) != status.get(k) for k in ("phase", "step", "reason"))
    if transition:
        entry = {"time": d.now, "phase": status["phase"], "reason": d.reason, "message": d.message}
        if stage_name:
            entry["stage"] = stage_name
        status["history"] = [*status["history"], entry][-HISTORY_LIMIT:]
    status["conditions"] = _conditions(status["conditions"], d, release.generation)
    changed = any(old.get(k) != status.get(k) for k in MANAGED_STATUS_KEYS)
    return Plan(status=status, effects=tuple(d.effects), events=tuple(d.events), changed=changed)


def _conditions(conditions: list[dict[str, Any]], d: _Draft, generation: int) -> list[dict[str, Any]]:
    now = d.now
    ready = d.phase == Phase.VERIFIED
    stalled = d.phase in (Phase.BLOCKED, Phase.FAILED)
    reconciling = d.phase not in TERMINAL and d.phase != Phase.BLOCKED
    out = set_condition(conditions, "Ready", ready, d.reason or str(d.phase), d.message, now, generation)
    out = set_condition(
        out, "Stalled", stalled, d.reason or str(d.phase), d.message if stalled else "", now, generation
    )
    return set_condition(
        out, "Reconciling", reconciling, str(d.phase), d.message if reconciling else "", now, generation
    )
