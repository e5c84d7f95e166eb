"""The stage machine: given a Release and what the cluster looks like now, what happens next.

`decide` is pure. The operator observes (workloads, lock, Job, metrics), calls `decide`, carries
out the returned effects, then writes the returned status with optimistic concurrency. Effects
are idempotent (setting an image to the value it already has changes nothing; a Job has a
deterministic name), so a tick that runs twice or dies half-way is harmless, and the order
"record previous images, then patch" makes every rollback exact.
"""

from __future__ import annotations

from typing import Any

from gantry.domain import production, registry, stages
from gantry.domain.conditions import set_condition
from gantry.domain.model import (
    FINAL,
    HISTORY_LIMIT,
    MANAGED_STATUS_KEYS,
    PHASE_OF_STEP,
    WAITING,
    AcquireLock,
    Alert,
    CreateJob,
    Draft,
    Effect,
    EffectError,
    Event,
    Observation,
    ObservedJob,
    ObservedLock,
    Phase,
    Plan,
    ReleaseLock,
    ReleaseView,
    SetImages,
    StageRun,
    Step,
    current_run,
)

__all__ = [
    "FINAL",
    "MANAGED_STATUS_KEYS",
    "PHASE_OF_STEP",
    "WAITING",
    "AcquireLock",
    "Alert",
    "CreateJob",
    "Effect",
    "EffectError",
    "Event",
    "Observation",
    "ObservedJob",
    "ObservedLock",
    "Phase",
    "Plan",
    "ReleaseLock",
    "ReleaseView",
    "SetImages",
    "StageRun",
    "Step",
    "current_run",
    "decide",
]


def decide(release: ReleaseView, obs: Observation) -> Plan:
    status = release.status
    phase = Phase(status.get("phase", Phase.PENDING))
    decisions = list(status.get("decisions") or [])
    applied = int(status.get("decisionsApplied", 0))
    if phase in FINAL and applied >= len(decisions):
        return Plan(status=dict(status))
    draft = Draft(
        release=release,
        obs=obs,
        phase=phase,
        stage_index=int(status.get("stageIndex", 0)),
        run=current_run(status),
        reason=status.get("reason", ""),
        message=status.get("message", ""),
        version=str(status.get("version") or ""),
        changelog=tuple(status.get("changelog") or ()),
    )
    if applied < len(decisions):
        # People's decisions (ReleaseDecision objects, copied here by the operator) come first,
        # one per tick, in the order they were made.
        production.apply_decision(draft, decisions[applied])
        return _finish(release, draft, decisions_applied=applied + 1)
    _advance(draft)
    return _finish(release, draft, decisions_applied=applied)


def _advance(d: Draft) -> None:
    if d.phase == Phase.VERIFIED:
        production.await_promotion(d)
        return
    if d.run is None or d.run.step == Step.PENDING:
        stages.start_stage(d)
        return
    step = d.run.step
    # A stage's outcome is recorded before the lock is let go (on the next tick): were the lock
    # released first and that write lost in a crash, the restarted operator would see a stage
    # in progress without its lock and take it for a lost lock.
    if step == Step.PASSED:
        stages.pass_stage(d)
    elif step == Step.FAILED:
        stages.fail_release(d)
    elif step == Step.WAITING_FOR_LOCK:
        stages.wait_for_lock(d)
    elif step == Step.PROMOTING:
        registry.promote(d)
    elif step == Step.DEPLOYING:
        stages.deploy(d)
    elif step == Step.ROLLING_OUT:
        stages.roll_out(d)
    elif step == Step.TESTING:
        stages.run_test(d)
    elif step == Step.ROLLING_BACK:
        stages.roll_back(d)
    elif step == Step.BAKING:
        production.bake(d)
    elif step == Step.AWAITING_DECISION:
        production.await_decision(d)


def _finish(release: ReleaseView, d: Draft, decisions_applied: int) -> Plan:
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
        "decisionsApplied": decisions_applied,
    }
    if d.version:
        status["version"] = d.version
    if d.changelog:
        status["changelog"] = [dict(c) for c in d.changelog]
    current = d.run if d.run is not None and d.run.index == d.stage_index else None
    stage_name = current.name if current else (runs[-1]["name"] if runs else "")
    if stage_name:
        status["stage"] = stage_name
    if current is not None:
        status["step"] = str(current.step)
    working = (Step.DEPLOYING, Step.ROLLING_OUT, Step.TESTING, Step.ROLLING_BACK, Step.PASSED, Step.FAILED)
    held = (
        current is not None
        and current.lock
        and current.step in working
        and d.phase not in FINAL
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


def _conditions(conditions: list[dict[str, Any]], d: Draft, generation: int) -> list[dict[str, Any]]:
    now = d.now
    ready = d.phase in (Phase.VERIFIED, Phase.RELEASED)
    stalled = d.phase in (Phase.BLOCKED, Phase.FAILED, Phase.ROLLED_BACK, Phase.HELD, Phase.EMERGENCY)
    reconciling = d.phase not in FINAL and d.phase not in WAITING and d.phase != Phase.BLOCKED
    out = set_condition(conditions, "Ready", ready, d.reason or str(d.phase), d.message, now, generation)
    out = set_condition(
        out, "Stalled", stalled, d.reason or str(d.phase), d.message if stalled else "", now, generation
    )
    return set_condition(
        out, "Reconciling", reconciling, str(d.phase), d.message if reconciling else "", now, generation
    )
