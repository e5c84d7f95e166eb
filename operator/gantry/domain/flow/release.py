"""The stage machine: given a Release and what the cluster looks like now, what happens next.

`decide` is pure. The operator observes (workloads, lock, Job, metrics), calls `decide`, carries
out the returned effects, then writes the returned status with optimistic concurrency. Effects
are idempotent (setting an image to the value it already has changes nothing; a Job has a
deterministic name), so a tick that runs twice or dies half-way is harmless, and the order
"record previous images, then patch" makes every rollback exact.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from gantry.domain.flow import guard, production, registry, stages, steps
from gantry.domain.flow.draft import Draft
from gantry.domain.flow.model import (
    MANAGED_STATUS_KEYS,
    AcquireLock,
    DeleteJob,
    Observation,
    Plan,
    ReleaseLock,
    ReleaseView,
    StageRun,
    current_run,
)
from gantry.domain.inputs.pipeline import differs, pinned
from gantry.domain.records.decisions import Action
from gantry.domain.vocabulary.conditions import set_condition
from gantry.domain.vocabulary.phases import FINAL, WAITING, WORKING, Phase, Step
from gantry.domain.vocabulary.reasons import Reason

STATUS_HISTORY_LIMIT = 50  # transitions kept in a Release's status.history

Handler = Callable[[Draft], None]

# What each step of a stage run leads to: one table for the stages before production, one for
# production. A stage's outcome is recorded before its lock is let go (Passed/Failed act on the
# next tick): were the lock released first and that write lost in a crash, the restarted
# operator would see a stage in progress without its lock and take it for a lost lock.
BEFORE_PRODUCTION: Mapping[Step, Handler] = {
    Step.PENDING: steps.start_stage,
    Step.AWAITING_APPROVAL: steps.approved_entry,  # promotion: Manual on a stage before production
    Step.PROMOTING: registry.promote,
    Step.WAITING_FOR_LOCK: steps.wait_for_lock,
    Step.DEPLOYING: partial(steps.deploy, rollback=stages.start_rollback),
    Step.ROLLING_OUT: partial(steps.roll_out, rollback=stages.start_rollback, then=stages.rolled_out),
    Step.TESTING: partial(steps.run_test, rollback=stages.start_rollback),
    Step.BAKING: stages.bake,  # a canary stage (analysis before production)
    Step.SOAKING: stages.soak,  # soakSeconds: healthy for a while before the next stage takes it
    Step.ROLLING_BACK: stages.roll_back,
    Step.PASSED: stages.pass_stage,
    Step.FAILED: stages.fail_release,
}
PRODUCTION: Mapping[Step, Handler] = {
    Step.PENDING: steps.start_stage,
    Step.PROMOTING: registry.promote,
    Step.WAITING_FOR_LOCK: steps.wait_for_lock,
    Step.DEPLOYING: partial(steps.deploy, rollback=production.system_rollback),
    Step.ROLLING_OUT: partial(
        steps.roll_out, rollback=production.system_rollback, then=production.rolled_out
    ),
    Step.TESTING: partial(steps.run_test, rollback=production.system_rollback),
    Step.BAKING: production.bake,
    Step.AWAITING_DECISION: production.await_decision,
    Step.ROLLING_BACK: production.roll_back,
    Step.PASSED: production.finish_passed,
    Step.FAILED: production.finish_failed,
}


def decide(release: ReleaseView, obs: Observation) -> Plan:
    status = release.status
    phase = Phase(status.get("phase", Phase.PENDING))
    decisions = list(status.get("decisions") or [])
    applied = int(status.get("decisionsApplied", 0))
    if phase in FINAL and applied >= len(decisions) and not guard.active(status):
        return Plan(status=dict(status))
    approval = next((x for x in reversed(decisions[: applied + 1]) if x.get("action") == "Approve"), None)
    draft = Draft(
        release=release,
        obs=obs,
        phase=phase,
        stage_index=int(status.get("stageIndex", 0)),
        run=current_run(status),
        reason=status.get("reason", ""),
        message=status.get("message", ""),
        version=str(status.get("version") or ""),
        tag=status.get("tag"),
        changelog=tuple(status.get("changelog") or ()),
        pinned=status.get("pipeline"),
        results=list(status.get("decisionResults") or []),
        approved_by=str(approval.get("decidedBy")) if approval else None,
        approved_reason=(str(approval.get("reason") or "") or None) if approval else None,
        guard=dict(status["guard"]) if status.get("guard") else None,
        approvals=[dict(a) for a in status.get("approvals") or ()],
    )
    draft.pipeline = pinned(draft.pinned, obs.pipeline, release.pipeline, release.application)
    if applied < len(decisions):
        # People's decisions (ReleaseDecision objects, copied here by the operator) come first,
        # one per tick, in the order they were made.
        guard.decide(draft, decisions[applied])
        guard.settle(draft)
        outcome = {
            "name": decisions[applied].get("name"),
            "result": "Ignored" if draft.ignored else "Applied",
        }
        if draft.ignored:
            outcome["message"] = draft.ignored
        draft.results = [*draft.results, outcome]
        return _finish(release, draft, decisions_applied=applied + 1)
    route(draft)(draft)
    guard.settle(draft)
    return _finish(release, draft, decisions_applied=applied)


def _approver(decisions: list[Any]) -> str | None:
    """Who approved promotion to production: the latest Approve decision's author."""
    approvals = [x for x in decisions if x.get("action") == Action.APPROVE]
    return str(approvals[-1].get("decidedBy")) if approvals else None


def _outcome(decision: Any, d: Draft) -> dict[str, Any]:
    """What became of a decision, for its ReleaseDecision: Applied, or Ignored with why."""
    if d.ignored:
        return {"name": decision.get("name"), "result": "Ignored", "message": d.ignored}
    return {"name": decision.get("name"), "result": "Applied"}


def route(d: Draft) -> Handler:
    """The one place that chooses what happens next."""
    if d.phase in FINAL:  # routed here only while guarded (production watched after its release)
        return guard.watch if guard.active(d.release.status) else _wait
    if steps.supersedable(d):
        return steps.supersede
    if d.phase == Phase.VERIFIED:
        return production.await_promotion
    if d.run is None:
        return steps.start_stage
    table = PRODUCTION if d.run.production else BEFORE_PRODUCTION
    return table.get(d.run.step, _wait)


def _wait(d: Draft) -> None:
    """Held (or a step this track does not have): only a person's decision moves it on."""


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
        "reason": str(d.reason),
        "message": d.message,
        "observedGeneration": release.generation,
        "stages": runs,
        "history": list(old.get("history") or []),
        "conditions": list(old.get("conditions") or []),
        "decisionsApplied": decisions_applied,
    }
    status.update(_records(d))
    current = d.run if d.run is not None and d.run.index == d.stage_index else None
    stage_name = current.name if current else (runs[-1]["name"] if runs else "")
    if stage_name:
        status["stage"] = stage_name
    if current is not None:
        status["step"] = str(current.step)
        status.update(_lock_held(d, current))
    transition = any(old.get(k) != status.get(k) for k in ("phase", "step", "reason"))
    if transition:
        entry = {"time": d.now, "phase": status["phase"], "reason": str(d.reason), "message": d.message}
        if stage_name:
            entry["stage"] = stage_name
        status["history"] = [*status["history"], entry][-STATUS_HISTORY_LIMIT:]
    status["conditions"] = _conditions(status["conditions"], d, release.generation)
    effects = [*d.effects, *_abandoned_job(d, current_run(old))]
    changed = any(old.get(k) != status.get(k) for k in MANAGED_STATUS_KEYS)
    passing = d.passing and changed and all(isinstance(e, AcquireLock | ReleaseLock) for e in effects)
    return Plan(
        status=status, effects=tuple(effects), events=tuple(d.events), changed=changed, passing=passing
    )


def _records(d: Draft) -> dict[str, Any]:
    """What the Release keeps once known: its settled version, changelog, pinned stages, and
    what became of each decision."""
    out: dict[str, Any] = {}
    if d.version:
        out["version"] = d.version
    if d.tag:
        out["tag"] = dict(d.tag)
    if d.changelog:
        out["changelog"] = [dict(c) for c in d.changelog]
    if d.pinned:
        out["pipeline"] = dict(d.pinned)
    if d.guard:
        out["guard"] = dict(d.guard)
    if d.approvals:
        out["approvals"] = [dict(a) for a in d.approvals][-STATUS_HISTORY_LIMIT:]
    if d.results:
        out["decisionResults"] = [dict(r) for r in d.results][-STATUS_HISTORY_LIMIT:]
    return out


def _lock_held(d: Draft, current: StageRun) -> dict[str, Any]:
    """status.lock while the stage works under its lock (not after it ended, nor once lost)."""
    if (
        not current.lock
        or current.step not in WORKING
        or d.phase in FINAL
        or current.reason == Reason.LOCK_LOST
    ):
        return {}
    return {"lock": {"name": current.environment, "acquiredAt": current.lock_acquired_at or d.now}}


def _abandoned_job(d: Draft, before: StageRun | None) -> list[DeleteJob]:
    """A test Job still running when its stage stops waiting for it (timeout, failure, preemption,
    a decision) is stopped, so it neither holds the environment nor reports on images long gone."""
    job = d.obs.job
    if before is None or before.step != Step.TESTING or job is None or job.finished or not before.test_job:
        return []
    if d.run is not None and d.run.index == before.index and d.run.step == Step.TESTING:
        return []
    namespace, name = before.test_job.split("/", 1)
    return [DeleteJob(namespace, name, before.stage.cluster)]


def _conditions(conditions: list[dict[str, Any]], d: Draft, generation: int) -> list[dict[str, Any]]:
    now = d.now
    ready = d.phase in (Phase.VERIFIED, Phase.RELEASED)
    stalled = d.phase in (Phase.BLOCKED, Phase.FAILED, Phase.ROLLED_BACK, Phase.HELD, Phase.EMERGENCY)
    reconciling = d.phase not in FINAL and d.phase not in WAITING and d.phase != Phase.BLOCKED
    out = set_condition(conditions, "Ready", ready, d.reason or str(d.phase), d.message, now, generation)
    out = set_condition(
        out, "Stalled", stalled, d.reason or str(d.phase), d.message if stalled else "", now, generation
    )
    out = set_condition(
        out, "Reconciling", reconciling, str(d.phase), d.message if reconciling else "", now, generation
    )
    if not d.pinned or not differs(d.pinned, d.obs.pipeline) or d.phase in FINAL:
        return [c for c in out if c.get("type") != "PipelineChanged"]  # shown only while it matters
    message = (
        "the Pipeline changed after this Release started; it goes on with the stages it started "
        "with (status.pipeline); to use the new stages, create a new Release"
    )
    return set_condition(out, "PipelineChanged", True, Reason.PIPELINE_CHANGED, message, now, generation)
