"""The production stage: promotion, the error-rate bake, the three buttons, and rollback by
re-applying the previous Release's digests ("the previous tag").

Like domain.flow.stages, every function takes the tick's Draft and does no I/O; the steps production
shares with the other stages (deploy, roll out, test) are domain.flow.steps, bound here by the router.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

from gantry.domain.flow import gates, gitops, steps
from gantry.domain.flow.draft import Draft
from gantry.domain.flow.model import (
    Alert,
    PreemptLock,
    Quarantine,
    RecordProduction,
    ReleaseLock,
    Retrospective,
    SetImages,
    StageRun,
    UnfreezeLock,
)
from gantry.domain.inputs.analysis import AnalysisSpec, OnBreach, OnInconclusive, Verdict, evaluate, streak
from gantry.domain.inputs.workloads import WorkloadRef
from gantry.domain.records import ledger
from gantry.domain.records.decisions import Action, refusal
from gantry.domain.records.ledger import Result
from gantry.domain.vocabulary import commands
from gantry.domain.vocabulary.images import digest_of, parse_pinned
from gantry.domain.vocabulary.phases import Phase, Step
from gantry.domain.vocabulary.problems import Problem
from gantry.domain.vocabulary.reasons import Reason
from gantry.domain.vocabulary.timefmt import from_rfc3339, to_rfc3339

SYSTEM = "gantry"  # who decided, when no person did


# --- promotion -----------------------------------------------------------------------------------


def await_promotion(d: Draft) -> None:
    """Verified: promote now (promotion: Auto) or wait for an Approve decision."""
    pipeline = d.pipeline
    if isinstance(pipeline, Problem) or pipeline.production is None:
        return  # no production stage: Verified is where this Release ends
    d.stage_index = pipeline.production.index
    if pipeline.production.promotion == "Auto":
        steps.start_stage(d)
        return
    d.message = steps.waiting_message(d, pipeline.production)


# --- the bake ------------------------------------------------------------------------------------


def analysis_of(d: Draft) -> AnalysisSpec | None:
    assert d.run is not None
    return d.run.stage.analysis


def rolled_out(d: Draft) -> None:
    """Production's rollout is complete: bake under the error-rate analysis, or test like any stage."""
    if analysis_of(d) is not None:
        start_bake(d)
    else:
        steps.test_or_pass(d, system_rollback)


def start_bake(d: Draft) -> None:
    assert d.run is not None
    spec = analysis_of(d)
    assert spec is not None
    message = f"production rollout complete; watching the error rate for {spec.bake_seconds}s"
    steps.begin_bake(d, message)
    d.effects.append(RecordProduction(entry(d, Result.BAKING)))


def bake(d: Draft) -> None:
    assert d.run is not None and d.run.analysis is not None
    if not steps.holds_lock(d):
        steps.lock_lost(d, system_rollback)
        return
    if steps.superseded(d, system_rollback):
        return
    spec = analysis_of(d)
    assert spec is not None
    sample = d.obs.metrics
    if sample is None:
        return
    evaluations, verdict, detail = evaluate(d.run.analysis, sample, spec, d.now)
    started = d.run.analysis.get("startedAt")
    d.run = replace(d.run, analysis={**d.run.analysis, "evaluations": evaluations})
    baked = d.elapsed(started)
    if streak(evaluations, Verdict.BREACH) >= spec.consecutive_breaches:
        breach(d, spec, detail)
    elif streak(evaluations, Verdict.INCONCLUSIVE) >= spec.inconclusive_limit:
        inconclusive(d, spec, detail)
    elif verdict == Verdict.HEALTHY and baked >= timedelta(seconds=spec.bake_seconds):
        d.move(
            Step.PASSED, Reason.BAKE_PASSED, f"healthy for the whole bake ({spec.bake_seconds}s): {detail}"
        )
    else:
        d.message = f"baking {int(baked.total_seconds())}/{spec.bake_seconds}s: {verdict}: {detail}"


def breach(d: Draft, spec: AnalysisSpec, detail: str) -> None:
    assert d.run is not None
    message = f"{detail} for {spec.consecutive_breaches} evaluation(s) in a row"
    d.event("Warning", Reason.ERROR_RATE_BREACH, message)
    ns, app, name = d.release.namespace, d.release.application, d.release.name
    said = f"Release {d.release.key} ({d.version or d.release.version}) in production: {message}"
    if spec.on_breach == OnBreach.ROLLBACK:
        act = f"Gantry rolls back to the previous Release now; follow it: {commands.status(ns, app)}"
        d.effects.append(Alert("critical", Reason.ERROR_RATE_BREACH, f"{said}; {act}"))
        start_rollback(d, Reason.ERROR_RATE_BREACH, message, SYSTEM)
        return
    deadline = to_rfc3339(d.obs.now + timedelta(seconds=spec.decision_deadline_seconds))
    act = f"{commands.on_breach(ns, app, name)} (before {deadline}; then {spec.default_decision} applies)"
    d.effects.append(Alert("critical", Reason.ERROR_RATE_BREACH, f"{said}; {act}"))
    d.move(
        Step.AWAITING_DECISION,
        Reason.ERROR_RATE_BREACH,
        f"{message}; decide Rollback, Emergency or FailForward before {deadline} "
        f"(then: {spec.default_decision})",
        decision_deadline=deadline,
    )


def inconclusive(d: Draft, spec: AnalysisSpec, detail: str) -> None:
    message = f"metrics inconclusive for {spec.inconclusive_limit} evaluation(s) in a row: {detail}"
    if spec.on_inconclusive == OnInconclusive.ROLLBACK:
        act = "Gantry rolls back to the previous Release now; check the analysis queries and Prometheus"
        d.effects.append(
            Alert("warning", Reason.METRICS_INCONCLUSIVE, f"Release {d.release.key}: {message}; {act}")
        )
        start_rollback(d, Reason.METRICS_INCONCLUSIVE, message, SYSTEM)
        return
    hold(d, Reason.METRICS_INCONCLUSIVE, f"{message}; holding: approve, roll back, or fail forward")


def hold(d: Draft, reason: str, message: str) -> None:
    act = commands.on_hold(d.release.namespace, d.release.application, d.release.name)
    d.effects.append(Alert("warning", reason, f"Release {d.release.key}: {message}; {act}"))
    d.event("Warning", reason, message)
    d.move(Step.HELD, reason, message)


def await_decision(d: Draft) -> None:
    assert d.run is not None
    deadline = d.run.decision_deadline
    if deadline is None or d.obs.now < from_rfc3339(deadline):
        return
    spec = analysis_of(d)
    action = spec.default_decision if spec is not None else Action.ROLLBACK
    apply_decision(
        d, {"action": str(action), "decidedBy": f"{SYSTEM} (deadline {deadline})", "reason": "no decision"}
    )


# --- decisions -----------------------------------------------------------------------------------


def apply_decision(d: Draft, decision: Mapping[str, Any]) -> None:
    action = Action(str(decision.get("action")))
    by = str(decision.get("decidedBy") or "unknown")
    why = str(decision.get("reason") or "")
    said = f"{action} decided by {by}" + (f": {why}" if why else "")
    phase = d.phase
    refused = refusal(action, phase)
    if refused is not None:
        ignore(d, f"{said}; {refused}")
        return
    in_production = d.run is not None and bool(d.run.spec.get("production")) and current_in_production(d)
    if phase in (Phase.HELD, Phase.AWAITING_DECISION) and not in_production:
        # Accepting it now would record production backwards: another Release stands there since.
        ignore(d, f"{said}; {not_current(d)}")
        return
    if action == Action.ROLLBACK and in_production and previous_release(d) is None:
        ignore(
            d,
            f"{said}; nothing to roll back to: no earlier Release stood in production (status.production"
            ".history of the Pipeline); instead ship a fix as a new Release (FailForward keeps this one on "
            "the record), or decide Emergency to freeze staging for a hotfix",
        )
        return
    frozen = gates.production_frozen(d) if action == Action.APPROVE and phase == Phase.VERIFIED else None
    if frozen is not None:
        ignore(d, f"{said}; {frozen.describe()}")
        return
    if action == Action.APPROVE and phase in (Phase.VERIFIED, Phase.AWAITING_APPROVAL):
        if steps.short_of_approvals(d, decision, said):
            return
        by = d.approved_by or by
    if action == Action.APPROVE and phase == Phase.VERIFIED:
        d.event("Normal", Reason.APPROVED, said)
        d.approved_by, d.approved_reason = by, why or None
        pipeline = d.pipeline
        if not isinstance(pipeline, Problem) and pipeline.production is not None:
            d.stage_index = pipeline.production.index
            steps.start_stage(d)
            return
    elif action == Action.APPROVE and phase == Phase.AWAITING_APPROVAL and d.run is not None:
        d.event("Normal", Reason.APPROVED, f"{said}; entering stage {d.run.name}")
        d.run = replace(d.run, decided_by=by, decision_reason=why or None)  # kept until the stage starts
        steps.start_stage(d)
        return
    elif action == Action.APPROVE and phase == Phase.HELD:
        d.event("Normal", Reason.APPROVED, said)
        d.move(Step.PASSED, Reason.APPROVED, said, decided_by=by, decision_reason=why or None)
        return
    elif action == Action.ROLLBACK and in_production:
        d.event("Warning", Reason.ROLLBACK_DECIDED, said)
        start_rollback(d, Reason.ROLLBACK_DECIDED, said, by, why)
        return
    elif action == Action.EMERGENCY and in_production:
        emergency(d, said, by, why)
        return
    elif action == Action.OVERRIDE_FREEZE:
        message = (
            f"{said}; Release {d.release.key} passes every freeze (window, incident, emergency, by hand)"
        )
        d.event("Warning", Reason.FREEZE_OVERRIDDEN, message)
        d.effects.append(Alert("warning", Reason.FREEZE_OVERRIDDEN, message))
        return
    elif action == Action.FAIL_FORWARD:
        d.event("Warning", Reason.FAIL_FORWARD, said)
        d.move(Step.PASSED, Reason.FAIL_FORWARD, said, decided_by=by, decision_reason=why or None)
        return
    ignore(d, f"{said}; {not_current(d)}")


def not_current(d: Draft) -> str:
    standing = ledger.current([dict(e) for e in d.obs.production.history])
    now = f" ({standing.get('release')}, {standing.get('version')}, does)" if standing else ""
    return f"this Release is not what production runs now{now}"


def ignore(d: Draft, message: str) -> None:
    """A decision that changes nothing is said to be Ignored, with why (not Accepted, not silent)."""
    d.ignored = message
    d.event("Warning", Reason.DECISION_IGNORED, message)


def current_in_production(d: Draft) -> bool:
    """Is this Release what production runs now (its history entry is the newest that stood)?"""
    for item in reversed(d.obs.production.history):
        if item.get("uid") == d.release.uid:
            return bool(item.get("result") != Result.ROLLED_BACK)
        if item.get("result") in ledger.CURRENT:
            return False
    return d.phase in (Phase.BAKING, Phase.AWAITING_DECISION, Phase.HELD)


def emergency(d: Draft, said: str, by: str, why: str = "") -> None:
    """Escalate, take staging over (its in-progress work rolls back) and freeze it for hotfixes only."""
    assert d.run is not None
    pipeline = d.pipeline
    environments = pipeline.locked_environments() if not isinstance(pipeline, Problem) else ()
    reason = f"emergency for {d.release.key}"
    for environment in environments:
        d.effects.append(PreemptLock(environment, reason, hold=False, freeze=True))
    if d.run.lock:
        d.effects.append(ReleaseLock(d.run.environment, Reason.EMERGENCY))
    frozen = ", ".join(environments) or "no locked environment"
    message = f"{said}; frozen for hotfixes only: {frozen}; production keeps this version until a hotfix"
    act = (
        "ship the fix as a Release with spec.hotfix: true from the emergency's HOT-<n> branch "
        f"(its merge lifts the freeze); {commands.status(d.release.namespace, d.release.application)}"
    )
    d.effects.append(Alert("critical", Reason.EMERGENCY, f"Release {d.release.key}: {message}; {act}"))
    d.effects.append(RecordProduction(entry(d, Result.EMERGENCY, by, why)))
    d.effects.append(Retrospective("Emergency", said, by))
    d.event("Warning", Reason.EMERGENCY, message)
    d.run = replace(d.run, reason=Reason.EMERGENCY, message=message, finished_at=d.now)
    d.phase, d.reason, d.message = Phase.EMERGENCY, Reason.EMERGENCY, message


# --- rollback to the previous Release ------------------------------------------------------------


def previous_release(d: Draft) -> Mapping[str, Any] | None:
    """The newest history entry before ours that stood in production: "the previous tag"."""
    return ledger.stood_before(d.obs.production.history, d.release.uid)


def system_rollback(d: Draft, reason: str, detail: str) -> None:
    """A step of the production stage failed (rollout, test, lock): Gantry rolls back, no person."""
    assert d.run is not None
    start_rollback(d, reason, f"stage {d.run.name}: {detail}", SYSTEM)


def start_rollback(d: Draft, reason: str, detail: str, by: str, why: str = "") -> None:
    assert d.run is not None
    if steps.restore_refused(d, reason, detail):  # this very rollback, refused: do not ask again
        return
    target = previous_release(d)
    if target is None:
        message = (
            f"{detail}; cannot roll back: no earlier Release stood in production (see the Pipeline's "
            "status.production.history); fix: decide FailForward, or Emergency and ship a hotfix"
        )
        hold(d, Reason.NO_PREVIOUS_RELEASE, message)
        return
    if not d.run.changes:
        d.move(Step.FAILED, reason, f"{detail}; nothing was deployed to production", finished_at=d.now)
        return
    wanted = target_images(d, target)
    pipeline = d.pipeline
    environments = pipeline.locked_environments() if not isinstance(pipeline, Problem) else ()
    for environment in environments:
        d.effects.append(
            PreemptLock(environment, f"production rollback of {d.release.key}", hold=True, freeze=False)
        )
    images = tuple((c.workload, c.container, wanted[i]) for i, c in enumerate(d.run.changes))
    commit = gitops.commit_of(d, why or detail, by)
    restores = str(target.get("version") or "") or None
    d.effects.append(gitops.set_images(d.run, images, commit, restore=True, restores=restores))
    d.effects.extend(revert_staging(d, why or detail, by))
    message = f"{detail}; re-applying {target.get('release')} ({target.get('version')}), the previous Release"
    d.event("Warning", Reason.ROLLING_BACK, message)
    d.move(
        Step.ROLLING_BACK,
        reason,
        message,
        rolled_back_at=d.now,
        rollback={
            "release": target.get("release"),
            "uid": target.get("uid"),
            "version": target.get("version"),
            "images": wanted,
            "decidedBy": by,
            "reason": why or detail,
            "environments": list(environments),
        },
    )


def target_images(d: Draft, target: Mapping[str, Any]) -> list[str]:
    """For each of our changes, the image the previous Release ran in that container."""
    assert d.run is not None and d.run.changes is not None
    recorded = {(i["workload"], i["container"]): i["image"] for i in target.get("images") or ()}
    return [recorded.get((c.workload.key(), c.container), c.before) for c in d.run.changes]


def revert_staging(d: Draft, why: str, by: str) -> list[SetImages]:
    """The effects that put the locked earlier stages back, each where that stage deploys."""
    effects = []
    for raw in d.release.status.get("stages") or ():
        images = run_reverts(d, raw)
        if images:
            run = StageRun.from_status(raw)
            commit = replace(gitops.commit_of(d, why, by), stage=run.name)
            effects.append(gitops.set_images(run, images, commit, restore=True))
    return effects


def staging_reverts(d: Draft) -> tuple[Any, ...]:
    """The locked earlier stages (staging) end on what they ran before this Release, what production
    returns to, whatever runs there now: this Release's images, or those of a Release the rollback
    preempted there (whose own rollback would put this Release's images back). Asked again on every
    tick of the rollback, which holds staging's lock until it is done, so no one re-applies them
    in between; a preempted Release's late rollback leaves an image it did not set alone."""
    return tuple(r for raw in d.release.status.get("stages") or () for r in run_reverts(d, raw))


def run_reverts(d: Draft, raw: Mapping[str, Any]) -> tuple[tuple[WorkloadRef, str, str], ...]:
    """One earlier stage run's share of staging_reverts."""
    if (raw.get("spec") or {}).get("production") or not raw.get("lock"):
        return ()  # unlocked stages (dev) keep what they run: their "before" may never have passed
    reverts = []
    for image in raw.get("images") or ():
        ref = WorkloadRef.from_key(image["workload"])
        seen = d.obs.workloads.get(ref)
        running = seen.containers.get(image["container"]) if seen is not None else None
        if running is not None and running != image["before"]:
            reverts.append((ref, image["container"], image["before"]))
    return tuple(reverts)


def staging_pending(d: Draft) -> list[str]:
    """The locked earlier stages not yet back on their images, or still rolling out to them."""
    pending = []
    for ref, container, _ in staging_reverts(d):
        pending.append(f"{ref}: container {container} not yet back")
    for raw in d.release.status.get("stages") or ():
        if (raw.get("spec") or {}).get("production") or not raw.get("lock"):
            continue
        for ref in {WorkloadRef.from_key(i["workload"]) for i in raw.get("images") or ()}:
            seen = d.obs.workloads.get(ref)
            if seen is not None and not seen.rollout.done:
                pending.append(f"{ref}: {seen.rollout.detail}")
    return sorted(set(pending))


def roll_back(d: Draft) -> None:
    assert d.run is not None and d.run.changes is not None and d.run.rollback is not None
    reason, detail = d.run.reason or Reason.ROLLED_BACK, d.run.message or ""
    if steps.restore_refused(d, reason, detail):
        return
    wanted = list(d.run.rollback.get("images") or [])
    pending = []
    for change, image in zip(d.run.changes, wanted, strict=True):
        seen = d.obs.workloads.get(change.workload)
        if seen is None or seen.containers.get(change.container) != image or not seen.rollout.done:
            detail_of = seen.rollout.detail if seen is not None else "not found"
            pending.append(f"{change.workload}: {detail_of}")
    # Again on every look: someone may have put the bad version back.
    by = str((d.run.rollback or {}).get("decidedBy") or SYSTEM)
    d.effects.extend(revert_staging(d, d.run.message or "", by))
    pending += staging_pending(d)
    in_git = gitops.git_wait(d, "before")  # the rollback commit, not applied yet by the GitOps tool
    pending += [in_git] if in_git else []
    timeout = timedelta(seconds=d.run.stage.rollout_timeout_seconds)
    if pending and d.elapsed(d.run.rolled_back_at) <= timeout:
        d.message = f"{detail}; waiting for the rollback rollout: {'; '.join(sorted(set(pending)))}"
        return
    outcome = (
        "production rolled back" if not pending else f"rollback rollout not complete: {'; '.join(pending)}"
    )
    d.move(Step.FAILED, reason, f"{detail}; {outcome}", finished_at=d.now)


def finish_failed(d: Draft) -> None:
    """Record the outcome of a failed production stage (the step before was written first)."""
    assert d.run is not None
    run = d.run
    rollback = run.rollback or {}
    for environment in rollback.get("environments") or ():
        d.effects.append(ReleaseLock(environment, Reason.PRODUCTION_ROLLED_BACK))
    if run.lock and run.reason != Reason.LOCK_LOST:
        d.effects.append(ReleaseLock(run.environment, Reason.FAILED))
    message = run.message or "production stage failed"
    if rollback:
        by = str(rollback.get("decidedBy") or SYSTEM)
        kept = {digest_of(str(image)) for image in rollback.get("images") or ()}  # what runs again
        ours = {ref.digest for ref in map(parse_pinned, d.release.artifacts.values()) if ref}
        digests = tuple(sorted(ours - kept))
        if digests:
            reason = run.reason or Reason.ROLLED_BACK
            d.effects.append(Quarantine(digests, d.release.key, d.release.version, reason))
        why = str(rollback.get("reason") or "")
        d.effects.append(RecordProduction(entry(d, Result.ROLLED_BACK, by, why)))
        restored = {
            "release": rollback.get("release"),
            "uid": rollback.get("uid"),
            "version": rollback.get("version"),
            "images": [
                {"workload": c.workload.key(), "container": c.container, "image": image}
                for c, image in zip(run.changes or (), rollback.get("images") or (), strict=False)
            ],
            "deployedAt": d.now,
            "result": Result.RESTORED,
            "decidedBy": by,
            "reason": f"rollback of {d.release.key}" + (f": {why}" if why else ""),
        }
        d.effects.append(RecordProduction(restored))
        d.effects.append(Retrospective("Rollback", message, by))
        d.phase = Phase.ROLLED_BACK
    else:
        d.effects.append(RecordProduction(entry(d, Result.FAILED)))  # ends its claim on production
        d.phase = Phase.FAILED
    d.reason, d.message = run.reason or Reason.FAILED, message
    if rollback:
        act = (
            f"production runs {rollback.get('release')} ({rollback.get('version')}) again and this "
            "Release's digests are quarantined; ship a fix as a new Release (if the rollback was a "
            f"mistake: {commands.lift_quarantine(d.release.namespace, d.release.name)})"
        )
    else:
        act = commands.status(d.release.namespace, d.release.application)
    d.effects.append(
        Alert("critical" if rollback else "warning", d.reason, f"Release {d.release.key}: {message}; {act}")
    )
    d.event("Warning", str(d.phase), message)


def finish_passed(d: Draft) -> None:
    assert d.run is not None
    run = d.run
    if run.lock:
        d.effects.append(ReleaseLock(run.environment, Reason.RELEASED))
    result = Result.FAILED_FORWARD if run.reason == Reason.FAIL_FORWARD else Result.RELEASED
    d.effects.append(RecordProduction(entry(d, result, run.decided_by or SYSTEM, run.decision_reason or "")))
    if d.release.hotfix:
        pipeline = d.pipeline
        for environment in pipeline.locked_environments() if not isinstance(pipeline, Problem) else ():
            d.effects.append(UnfreezeLock(environment, f"FreezeLifted: hotfix {d.release.key} released"))
    d.run = replace(run, finished_at=d.now)
    d.phase, d.reason = Phase.RELEASED, run.reason or Reason.RELEASED
    d.message = f"released to production ({run.message})" if run.message else "released to production"
    d.event("Normal", Reason.RELEASED, d.message)
    branch = (d.tag or {}).get("branch")
    if d.release.hotfix and branch:
        back = (
            f"hotfix {d.version or d.release.version} is in production from branch {branch}; bring it back "
            f"to main (Gantry never pushes there): {commands.merge_back(str(branch))}, or open a merge "
            "request from it. Until then main's next version is still above it (tags never repeat)"
        )
        d.message = f"{d.message}; {back}"
        d.event("Normal", Reason.HOTFIX_MERGE_BACK, back)
        d.effects.append(Alert("info", Reason.HOTFIX_MERGE_BACK, f"Release {d.release.key}: {back}"))


def entry(d: Draft, result: Result, by: str = SYSTEM, why: str = "") -> dict[str, Any]:
    return gates.ledger_entry(d, result, by, why)
