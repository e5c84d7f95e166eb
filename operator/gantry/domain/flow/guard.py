"""Production watched after the bake: the production stage's `guard` keeps evaluating the error
rate of the Release production runs, from its release until the next Release replaces it (the
seed's "monitor APMs; on error rate exceeds threshold: alert the development team and give it
three buttons"). The bake decides whether a version may stay; the guard notices when it stops
being good later (a traffic peak, a slow leak, a dependency's change).

The Release stays Released while it is guarded; `status.guard` says what the guard sees
(Watching, Breached with a decision deadline, Ended and why). A breach alerts and, by default,
waits for Rollback, Emergency or FailForward (the bake's decision policies: onBreach Rollback
rolls back at once; at the deadline the default decision applies); it is recorded in the ledger.
Metrics that cannot tell never count as a breach: the guard says it is blind, once per spell.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from gantry.domain.flow import production
from gantry.domain.flow.draft import Draft
from gantry.domain.flow.model import Alert, RecordProduction, current_run
from gantry.domain.inputs.analysis import AnalysisSpec, OnBreach, Verdict, evaluate, streak
from gantry.domain.records import ledger
from gantry.domain.records.decisions import Action
from gantry.domain.records.ledger import Result
from gantry.domain.vocabulary import commands
from gantry.domain.vocabulary.phases import Phase
from gantry.domain.vocabulary.reasons import Reason
from gantry.domain.vocabulary.timefmt import from_rfc3339, to_rfc3339

BY = f"{production.SYSTEM} (guard)"


class GuardState(StrEnum):
    WATCHING = "Watching"
    BREACHED = "Breached"  # alerted; waiting for a person's decision until its deadline
    ENDED = "Ended"  # replaced in production, rolled back, or an emergency took over


ACTIVE = frozenset({GuardState.WATCHING, GuardState.BREACHED})


def spec_of(status: Mapping[str, Any]) -> AnalysisSpec | None:
    run = current_run(status)
    return run.stage.guard if run is not None and run.production else None


def active(status: Mapping[str, Any]) -> bool:
    """Is this Release guarded now (Released, its production stage has a guard that has not ended)?
    Such a Release keeps its driver and stays in the operator's watch, though Released is final."""
    if status.get("phase") != Phase.RELEASED:
        return False
    if (status.get("guard") or {}).get("state") == GuardState.ENDED:
        return False
    # Read from the run's recorded stage as it is, not parsed: Kopf asks this on every watch event.
    runs = status.get("stages") or [{}]
    stage = runs[-1].get("spec") or {}
    return bool(stage.get("production") and stage.get("guard"))


def next_due(status: Mapping[str, Any]) -> datetime | None:
    """The next evaluation, or a breach's decision deadline."""
    spec, guard = spec_of(status), status.get("guard") or {}
    if not active(status) or spec is None:
        return None
    if guard.get("state") == GuardState.BREACHED:
        deadline = guard.get("decisionDeadline")
        return from_rfc3339(str(deadline)) if deadline else None
    evaluations = guard.get("evaluations") or []
    if not evaluations:
        return None  # due now
    return from_rfc3339(str(evaluations[-1]["time"])) + timedelta(seconds=spec.interval_seconds)


def watch(d: Draft) -> None:
    """One look at a guarded Release (routed here only while `active`)."""
    assert d.run is not None
    spec = d.run.stage.guard
    assert spec is not None
    state = dict(d.guard or {}) or {"state": GuardState.WATCHING, "since": d.now, "evaluations": []}
    d.guard = state
    if not production.current_in_production(d):
        standing = ledger.current([dict(e) for e in d.obs.production.history])
        by = f"{standing.get('release')} ({standing.get('version')})" if standing else "another Release"
        end(d, f"production runs {by} now")
        return
    if state.get("state") == GuardState.BREACHED:
        deadline = state.get("decisionDeadline")
        if deadline and d.obs.now >= from_rfc3339(str(deadline)):
            decide(d, {"action": str(spec.default_decision), "decidedBy": f"{BY}, deadline {deadline}"})
        return
    sample = d.obs.metrics
    if sample is None:
        return  # not due yet
    evaluations, _, detail = evaluate(state, sample, spec, d.now)
    d.guard = {**state, "evaluations": evaluations, "detail": detail}
    if streak(evaluations, Verdict.BREACH) >= spec.consecutive_breaches:
        breach(d, spec, detail)
    elif streak(evaluations, Verdict.INCONCLUSIVE) == spec.inconclusive_limit:
        blind(d, detail)


def breach(d: Draft, spec: AnalysisSpec, detail: str) -> None:
    assert d.run is not None and d.guard is not None
    message = f"guard: {detail} for {spec.consecutive_breaches} evaluation(s) in a row, after its release"
    said = f"Release {d.release.key} ({d.version or d.release.version}) in production: {message}"
    ns, app = d.release.namespace, d.release.application
    d.event("Warning", Reason.ERROR_RATE_BREACH, message)
    if spec.on_breach == OnBreach.ROLLBACK:
        act = f"Gantry rolls back to the previous Release now; follow it: {commands.status(ns, app)}"
        d.effects.append(Alert("critical", Reason.ERROR_RATE_BREACH, f"{said}; {act}"))
        d.guard = {**d.guard, "state": GuardState.ENDED, "ended": f"breach: rolled back ({detail})"}
        production.start_rollback(d, Reason.ERROR_RATE_BREACH, message, BY)
        return
    deadline = to_rfc3339(d.obs.now + timedelta(seconds=spec.decision_deadline_seconds))
    buttons = commands.on_breach(ns, app, d.release.name)
    act = f"{buttons} (before {deadline}; then {spec.default_decision} applies)"
    d.effects.append(Alert("critical", Reason.ERROR_RATE_BREACH, f"{said}; {act}"))
    d.effects.append(RecordProduction(production.entry(d, Result.BREACHED, BY, message)))
    d.guard = {**d.guard, "state": GuardState.BREACHED, "breachedAt": d.now, "decisionDeadline": deadline}
    d.reason = Reason.ERROR_RATE_BREACH
    d.message = (
        f"released; {message}; decide Rollback, Emergency or FailForward before {deadline} "
        f"(then: {spec.default_decision})"
    )


def blind(d: Draft, detail: str) -> None:
    """The guard cannot tell (no metrics, too little traffic): said once per spell, never a breach."""
    message = f"guard cannot judge production's error rate: {detail}; it keeps looking"
    d.event("Warning", Reason.METRICS_INCONCLUSIVE, message)
    act = "check the guard's queries and Prometheus (a breach would go unnoticed meanwhile)"
    d.effects.append(
        Alert("warning", Reason.METRICS_INCONCLUSIVE, f"Release {d.release.key}: {message}; {act}")
    )


def takes(d: Draft, decision: Mapping[str, Any]) -> bool:
    """FailForward on a breached guard is the guard's: keep this version, watch on."""
    state = (d.guard or {}).get("state")
    return (
        d.phase == Phase.RELEASED
        and state == GuardState.BREACHED
        and decision.get("action") == Action.FAIL_FORWARD
    )


def decide(d: Draft, decision: Mapping[str, Any]) -> None:
    """A decision on a breach (a person's, or the default at the deadline)."""
    if takes(d, decision):
        fail_forward(d, decision)
    else:
        production.apply_decision(d, decision)


def fail_forward(d: Draft, decision: Mapping[str, Any]) -> None:
    by = str(decision.get("decidedBy") or "unknown")
    why = str(decision.get("reason") or "")
    said = f"FailForward decided by {by}" + (f": {why}" if why else "")
    d.event("Warning", Reason.FAIL_FORWARD, f"{said}; production keeps this version; the guard watches on")
    d.effects.append(RecordProduction(production.entry(d, Result.FAILED_FORWARD, by, why or "guard breach")))
    d.guard = {"state": GuardState.WATCHING, "since": d.now, "evaluations": []}
    d.reason, d.message = Reason.FAIL_FORWARD, f"released; {said}; the guard watches on"


def end(d: Draft, why: str) -> None:
    if d.guard is None or d.guard.get("state") not in ACTIVE:
        return
    d.guard = {**d.guard, "state": GuardState.ENDED, "ended": why, "endedAt": d.now}
    d.guard.pop("decisionDeadline", None)
    d.event("Normal", Reason.GUARD_ENDED, f"guard ended: {why}")


def settle(d: Draft) -> None:
    """A guarded Release that left Released (rolled back, an emergency) is guarded no more."""
    if d.phase != Phase.RELEASED:
        end(d, f"{d.phase}: {d.message}")
