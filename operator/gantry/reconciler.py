"""The imperative shell around `domain.release.decide`: observe, decide, act, record.

One `reconcile` call walks a Release forward as far as it can go without waiting for the
world (a rollout, a Job, a lock), then returns. State lives only in the Release's status, so
any call may be the first after a crash.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gantry.adapters.alerts import Alerter
from gantry.adapters.kube import ApiError
from gantry.adapters.resources import Resources
from gantry.domain import locks
from gantry.domain.pipeline import Stage
from gantry.domain.problems import Problem
from gantry.domain.release import (
    MANAGED_STATUS_KEYS,
    AcquireLock,
    Alert,
    CreateJob,
    Effect,
    EffectError,
    Event,
    Observation,
    Phase,
    ReleaseLock,
    ReleaseView,
    SetImages,
    Step,
    current_run,
    decide,
)
from gantry.domain.workloads import ObservedWorkload, WorkloadRef

log = logging.getLogger(__name__)

EventSink = Callable[[Mapping[str, Any], Event], None]
PERMANENT_STATUSES = frozenset({400, 403, 404, 422})


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class ReleaseReconciler:
    resources: Resources
    alerter: Alerter
    emit: EventSink
    clock: Callable[[], datetime] = field(default=utcnow)
    max_steps: int = 8

    def reconcile(self, namespace: str, name: str) -> Phase | None:
        """Advance the Release; return its phase (None if it no longer exists)."""
        error: EffectError | None = None
        phase: Phase | None = None
        for _ in range(self.max_steps):
            body = self.resources.get_release(namespace, name)
            if body is None:
                return None
            release = ReleaseView.from_body(body)
            plan = decide(release, self.observe(release, error))
            phase = Phase(plan.status["phase"])
            error = self.carry_out(release, plan.effects)
            if error is not None:
                continue  # decide again, now knowing the API server refused that effect
            if plan.changed:
                try:
                    self.resources.patch_release_status(
                        namespace,
                        name,
                        body["metadata"]["resourceVersion"],
                        status_patch(release.status, plan.status),
                    )
                except ApiError as conflict:
                    if not conflict.conflict:
                        raise
                    continue  # someone wrote in between: our effects were idempotent, decide again
                for event in plan.events:
                    self.emit(body, event)
            if plan.idle:
                break
        return phase

    def observe(self, release: ReleaseView, error: EffectError | None) -> Observation:
        now = self.clock()
        pipeline = self.resources.get_pipeline(release.namespace, release.pipeline)
        run = current_run(release.status)
        stage: Stage | None = None
        if run is not None and run.step not in (Step.PENDING, Step.WAITING_FOR_LOCK):
            stage = run.stage(release.pipeline)
        elif not isinstance(pipeline, Problem):
            stages = pipeline.pre_production()
            index = int(release.status.get("stageIndex", 0))
            stage = stages[index] if index < len(stages) else None
        targets: dict[int, tuple[ObservedWorkload, ...]] = {}
        if stage is not None and (run is None or run.changes is None):
            targets = {t.index: self.resources.find_workloads(t) for t in stage.targets}
        workloads: dict[WorkloadRef, ObservedWorkload] = {}
        for ref in sorted({c.workload for c in (run.changes or ())} if run else set()):
            seen = self.resources.get_workload(ref)
            if seen is not None:
                workloads[ref] = seen
        lock = None
        if stage is not None and stage.lock:
            lock = self.resources.observe_lock(release.namespace, stage.environment, claimant(release), now)
        job = None
        if run is not None and run.test_job:
            job_namespace, job_name = run.test_job.split("/", 1)
            job = self.resources.get_job(job_namespace, job_name)
        return Observation(now, pipeline, targets, workloads, lock, job, error)

    def carry_out(self, release: ReleaseView, effects: tuple[Effect, ...]) -> EffectError | None:
        for effect in effects:
            try:
                self._carry_out(release, effect)
            except ApiError as error:
                if error.status in PERMANENT_STATUSES and isinstance(effect, SetImages | CreateJob):
                    log.warning("Release %s: %s refused: %s", release.key, type(effect).__name__, error)
                    return EffectError(type(effect).__name__, error.message or str(error))
                raise
        return None

    def _carry_out(self, release: ReleaseView, effect: Effect) -> None:
        who = claimant(release)
        if isinstance(effect, AcquireLock):
            now = self.clock()
            self.resources.update_lock(
                release.namespace,
                effect.environment,
                lambda state, lease: locks.acquire(state, who, now, lease),
            )
        elif isinstance(effect, ReleaseLock):
            now = self.clock()
            reason = effect.reason
            self.resources.update_lock(
                release.namespace,
                effect.environment,
                lambda state, lease: (locks.release(state, who, now, reason), None),
            )
        elif isinstance(effect, SetImages):
            by_workload: dict[WorkloadRef, dict[str, str]] = {}
            for ref, container, image in effect.images:
                by_workload.setdefault(ref, {})[container] = image
            for ref, images in sorted(by_workload.items()):
                self.resources.set_images(ref, images)
        elif isinstance(effect, CreateJob):
            self.resources.create_job(effect.manifest)
        elif isinstance(effect, Alert):
            labels = {"release": release.key, "application": release.application, "version": release.version}
            self.alerter.send(effect, labels)


def claimant(release: ReleaseView) -> locks.Claimant:
    return locks.Claimant(release.key, release.uid)


def status_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch that makes the managed keys equal `new` (null removes a key we dropped)."""
    patch = {k: new.get(k) for k in MANAGED_STATUS_KEYS if old.get(k) != new.get(k)}
    return patch
