"""What a Release waits on, read from its status, so the watch event that ends the wait (not the
next tick) moves it on. Timers stay the safety net for lost events, leases and slow deadlines.

A Release in flight waits on at most a few things at once: the workloads it is rolling out (or
back), its test Job, the EnvironmentLock it queues for, its Pipeline while production is busy
with another Release, and, while baking, the clock (the next evaluation, the end of the bake,
a decision deadline; while soaking, its end).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from gantry.domain.flow import guard
from gantry.domain.flow.model import current_run
from gantry.domain.vocabulary.phases import Phase, Step
from gantry.domain.vocabulary.reasons import Reason
from gantry.domain.vocabulary.timefmt import from_rfc3339


class Wake(StrEnum):
    WORKLOAD = "workload"  # "Kind/namespace/name": its rollout finished
    JOB = "job"  # "namespace/name": the test Job finished
    LOCK = "lock"  # "namespace/environment": the lock's holder or freeze changed
    PIPELINE = "pipeline"  # "namespace/name": the production ledger moved (its mirror on the Pipeline)


WaitKey = tuple[Wake, str]

# Steps that wait for the workloads the Release changed to finish rolling out (or back).
# Soaking too: a workload that falls over while it soaks is rolled back at once, not at the next tick.
ROLLOUT_STEPS = frozenset({Step.ROLLING_OUT, Step.ROLLING_BACK, Step.BAKING, Step.SOAKING})


def waits_on(namespace: str, pipeline: str, status: Mapping[str, Any]) -> frozenset[WaitKey]:
    run = current_run(status)
    if run is None:
        return frozenset()
    keys: set[WaitKey] = set()
    if run.step in ROLLOUT_STEPS:
        # Any stage's workloads: a rollback may re-pin what an earlier stage deployed.
        keys |= {
            (Wake.WORKLOAD, image["workload"]) for r in status["stages"] for image in r.get("images") or ()
        }
    if run.step == Step.TESTING and run.test_job:
        keys.add((Wake.JOB, run.test_job))
    if run.step == Step.WAITING_FOR_LOCK:
        keys.add((Wake.LOCK, f"{namespace}/{run.environment}"))
    if status.get("phase") == Phase.BLOCKED and status.get("reason") == Reason.PRODUCTION_BUSY:
        keys.add((Wake.PIPELINE, f"{namespace}/{pipeline}"))
    return frozenset(keys)


def next_due(status: Mapping[str, Any]) -> datetime | None:
    """The next moment the clock alone changes what the Release should do, if one is known."""
    run = current_run(status)
    if run is None:
        return None
    if guard.active(status):
        return guard.next_due(status)
    moments = []
    analysis, spec = run.analysis or {}, run.stage.analysis
    if run.step == Step.BAKING and spec is not None and analysis.get("startedAt"):
        evaluations = analysis.get("evaluations") or []
        if evaluations:
            moments.append(
                from_rfc3339(str(evaluations[-1]["time"])) + timedelta(seconds=spec.interval_seconds)
            )
        moments.append(from_rfc3339(str(analysis["startedAt"])) + timedelta(seconds=spec.bake_seconds))
    if run.step == Step.SOAKING and run.unhealthy_since:
        moments.append(
            from_rfc3339(run.unhealthy_since) + timedelta(seconds=run.stage.rollout_timeout_seconds)
        )
    elif run.step == Step.SOAKING and run.soak_started_at:
        moments.append(from_rfc3339(run.soak_started_at) + timedelta(seconds=run.stage.soak_seconds))
    if run.decision_deadline:
        moments.append(from_rfc3339(run.decision_deadline))
    return min(moments) if moments else None
