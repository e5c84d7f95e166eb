"""The imperative shell around `domain.flow.release.decide`: observe, decide, execute, record.

One `reconcile` call walks a Release forward as far as it can go without waiting for the
world (a rollout, a Job, a lock, the next bake evaluation), then returns. State lives only in
the custom resources, so any call may be the first after a crash.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

from gantry.adapters.alerts import Alerter
from gantry.adapters.clusters import Clusters
from gantry.adapters.effects import Adapters, Context, EventSink
from gantry.adapters.git import Mirrors
from gantry.adapters.git_targets import GitTargets
from gantry.adapters.kube import ApiError
from gantry.adapters.metrics import Metrics
from gantry.adapters.objects.pipelines import PipelineReads
from gantry.adapters.prometheus import PrometheusSource
from gantry.adapters.registry_effects import registry_client
from gantry.adapters.resources import Resources
from gantry.domain.flow.leaving import leave
from gantry.domain.flow.model import (
    MANAGED_STATUS_KEYS,
    CreateJob,
    Effect,
    EffectFailure,
    Event,
    ReleaseView,
    SetImages,
    current_run,
)
from gantry.domain.flow.release import decide
from gantry.domain.vocabulary.phases import FINAL, FINISHED_LABEL, Phase
from gantry.executors import execute, follow_up, split
from gantry.observer import Observer

# Effects that change what runs: carried out only while the Release is as it was read.
WORKLOAD_EFFECTS = (SetImages, CreateJob)


@dataclass(frozen=True)
class Look:
    """A Release as one reconcile left it: enough for its driver to know what it waits on."""

    phase: Phase
    status: Mapping[str, Any]
    resource_version: str
    # False: the reconcile stopped at `max_steps` with more to do at once (a flow whose rollouts
    # and Job finish as fast as it writes), so the Release waits on nothing and its driver must
    # look again now rather than sleep until the safety-net timer.
    settled: bool = True


@dataclass(frozen=True)
class Passing:
    """Way-stations (Plan.passing) a reconcile decided on and has not written yet: the status the
    next decision starts from, and the Events to announce once it is written."""

    status: Mapping[str, Any] | None = None
    events: tuple[Event, ...] = ()


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class ReleaseReconciler:
    resources: Resources
    alerter: Alerter
    emit: EventSink
    clock: Callable[[], datetime] = field(default=utcnow)
    metrics: Metrics | None = None
    prometheus: PrometheusSource = field(default_factory=PrometheusSource)
    prometheus_url: str | None = None  # the operator-wide default; a Pipeline may name its own
    mirrors: Mirrors | None = None  # git sources; None: Releases' versions are taken as given
    max_steps: int = 8
    min_lease_seconds: float = 0.0  # three reconcile intervals: a shorter lease is refused

    def __post_init__(self) -> None:
        targets = GitTargets(self.mirrors.root, self.mirrors.timeout) if self.mirrors is not None else None
        self.adapters = Adapters(
            self.resources,
            self.alerter,
            self.emit,
            self.mirrors,
            partial(registry_client, self.resources),
            targets,
            Clusters(self.resources),
        )
        self.observer = Observer(
            self.adapters, self.clock, self.prometheus, self.prometheus_url, self.min_lease_seconds
        )

    def reconcile(self, namespace: str, name: str) -> Phase | None:
        """Advance the Release; return its phase (None if it no longer exists)."""
        look = self.advance(namespace, name)
        return look.phase if look is not None else None

    def advance(self, namespace: str, name: str) -> Look | None:
        """Advance the Release as far as it goes without waiting; what it looks like then."""
        failure: EffectFailure | None = None
        look: Look | None = None
        body: Mapping[str, Any] | None = None  # after our own write, the server's answer is the fresh object
        read: PipelineReads = {}  # the Pipeline, read once for this reconcile's looks
        passed = Passing()  # way-stations decided on and not written yet
        for step in range(self.max_steps):
            body = body or self.resources.get_release(namespace, name)
            if body is None:
                return None
            if body["metadata"].get("deletionTimestamp"):
                # Being deleted (Kopf's finalizer keeps it a moment): it never takes a lock again.
                # The deletion's watch event puts back what its stage changed (`leave`).
                self.resources.leave_locks(body, self.clock())
                return None
            stored = ReleaseView.from_body(body)
            release = replace(stored, status=passed.status) if passed.status is not None else stored
            pipeline, observation = self.observer.observe(release, failure, read)
            plan = decide(release, observation)
            look = Look(Phase(plan.status["phase"]), stored.status, body["metadata"]["resourceVersion"])
            context = Context(release, pipeline, self.clock(), self.adapters)
            now, after_record = split(plan.effects)
            if touches_workloads(now) and not self.still_current(body):
                body, passed = None, Passing()  # another writer (a second operator) moved it: decide again
                continue
            failure = execute(context, now)
            if failure is not None:
                body, passed = None, Passing()  # the way-stations' effects are idempotent: decided again
                continue  # decide again, now knowing how that effect failed
            if plan.passing and step + 1 < self.max_steps:
                passed = Passing(plan.status, (*passed.events, *plan.events))  # written with the next
                continue
            if plan.changed or passed.status is not None:  # unchanged: plan.status is the way-station's
                status = plan.status
                written = self.record(body, stored, status, (*passed.events, *plan.events))
                body, passed = written, Passing()
                if written is None:
                    continue  # someone wrote in between: our effects were idempotent, decide again
                look = Look(look.phase, status, str(written["metadata"]["resourceVersion"]))
                follow_up(context, after_record)
            else:
                body = None
            if plan.idle:
                break
        else:
            return replace(look, settled=False) if look is not None else None
        return look

    def still_current(self, body: Mapping[str, Any]) -> bool:
        """The Release is as we decided from: read once more right before a workload changes.

        Two operators running without peering both decide from the same status; one acts and
        writes, and the other, stalled between deciding and acting, would otherwise re-apply an
        image the first has since rolled back or replaced. The status write's resourceVersion
        catches it only after the workload changed; this catches it before.
        """
        fresh = self.resources.get_release(str(body["metadata"]["namespace"]), str(body["metadata"]["name"]))
        return (
            fresh is not None and fresh["metadata"]["resourceVersion"] == body["metadata"]["resourceVersion"]
        )

    def leave(self, body: Mapping[str, Any]) -> None:
        """The Release was deleted (its last state, from the watch event): put back what its
        unfinished stage changed and stop its test Job (domain.flow.leaving), then give its locks back."""
        release = ReleaseView.from_body(body)
        leaving = leave(
            release, self.observer.workloads(release.namespace, release.status, current_run(release.status))
        )
        if leaving.effects or leaving.events:
            pipeline, _ = self.resources.get_pipeline_state(
                release.namespace, release.pipeline, with_ledger=False
            )
            follow_up(Context(release, pipeline, self.clock(), self.adapters), leaving.effects)
            for event in leaving.events:
                self.emit(body, event)
        self.resources.leave_locks(body, self.clock())

    def record(
        self,
        body: Mapping[str, Any],
        release: ReleaseView,
        status: Mapping[str, Any],
        events: tuple[Event, ...],
    ) -> dict[str, Any] | None:
        """Write the new status with optimistic concurrency, then announce; the Release as
        written, or None on a conflict."""
        try:
            written = self.resources.patch_release_status(
                release.namespace,
                release.name,
                body["metadata"]["resourceVersion"],
                status_patch(release.status, status),
            )
        except ApiError as conflict:
            if not conflict.conflict:
                raise
            return None
        if status.get("phase") not in FINAL and FINISHED_LABEL in (body["metadata"].get("labels") or {}):
            # A decision moved a finished Release on: back into the operator's watch, for its driver.
            self.resources.mark_finished(release.namespace, release.name, False)
        self.announce(body, status, events)
        return written

    def announce(self, body: Mapping[str, Any], status: Mapping[str, Any], events: tuple[Event, ...]) -> None:
        runs = status.get("stages") or [{}]
        for event in events:
            self.emit(body, event)
            if self.metrics is not None:
                meta, spec = body["metadata"], body.get("spec") or {}
                self.metrics.observe_event(
                    meta["namespace"],
                    spec.get("application", ""),
                    str(status.get("stage", "")),
                    event,
                    runs[-1],
                )


def touches_workloads(effects: tuple[Effect, ...]) -> bool:
    return any(isinstance(e, WORKLOAD_EFFECTS) for e in effects)


def status_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch that makes the managed keys equal `new` (null removes a key we dropped)."""
    return {k: new.get(k) for k in MANAGED_STATUS_KEYS if old.get(k) != new.get(k)}
