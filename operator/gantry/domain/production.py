"""The production stage: promotion, the error-rate bake, the three buttons, and rollback by
re-applying the previous Release's digests ("the previous tag").

Like stages.py, every function takes the tick's Draft and does no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

from gantry.domain import ledger, stages
from gantry.domain.analysis import Action, AnalysisSpec, OnBreach, OnInconclusive, Verdict, judge, streak
from gantry.domain.decisions import refusal
from gantry.domain.images import digest_of, parse_pinned
from gantry.domain.model import (
    Alert,
    Draft,
    Phase,
    PreemptLock,
    Quarantine,
    RecordProduction,
    ReleaseLock,
    Retrospective,
    SetImages,
    Step,
    UnfreezeLock,
)
from gantry.domain.problems import Problem
from gantry.domain.timefmt import from_rfc3339, to_rfc3339
from gantry.domain.versions import parse_tag
from gantry.domain.workloads import ImageChange, WorkloadRef

EVALUATIONS_KEPT = 20
# Results of history entries that ran in production and were not rolled back: rollback targets.
STOOD = ("Released", "FailedForward", "Emergency", "Restored")
SYSTEM = "gantry"


# --- promotion -----------------------------------------------------------------------------------


def await_promotion(d: Draft) -> None:
    """Verified: promote now (promotion: Auto) or wait for an Approve decision."""
    pipeline = d.obs.pipeline
    if isinstance(pipeline, Problem) or pipeline.production is None:
        return  # no production stage: Verified is where this Release ends
    d.stage_index = pipeline.production.index
    if pipeline.production.promotion == "Auto":
        stages.start_stage(d)
        return
    d.message = AWAITING_APPROVAL


AWAITING_APPROVAL = (
    "passed every stage before production; "
    "waiting for approval to promote (a ReleaseDecision with action: Approve)"
)


def check_provenance(d: Draft, changes: tuple[ImageChange, ...]) -> Mapping[str, Any] | Problem:
    """Production gets only digests that were deployed and tested in an earlier stage of this Release."""
    verified: dict[str, str] = {}
    last: Mapping[str, Any] | None = None
    for run in d.release.status.get("stages") or ():
        if run.get("step") == "Passed" and not (run.get("spec") or {}).get("production"):
            # By digest: a registry promotion may have copied it to another repository since.
            verified.update({i["container"]: digest_of(i["after"]) for i in run.get("images") or ()})
            last = run
    for change in changes:
        if verified.get(change.container) != digest_of(change.after):
            return Problem(
                "NotVerified",
                f"spec.artifacts[name={change.container}].image",
                f"{change.after} was never deployed and tested in a stage before production",
                "add the container to a tested stage before production, or create a new Release",
            )
    assert last is not None or not changes
    return {
        "stage": (last or {}).get("name"),
        "testJob": (last or {}).get("testJob"),
        "testResult": (last or {}).get("testResult"),
        "verifiedAt": (last or {}).get("finishedAt"),
        "images": sorted({c.after for c in changes}),
    }


def not_newer(d: Draft) -> Problem | None:
    """Production moves forward only; going back is a Rollback decision, which re-applies the previous tag."""
    current = ledger.current([dict(e) for e in d.obs.production.history])
    version = d.version or d.release.version
    if current is None or current.get("uid") == d.release.uid or not version:
        return None
    ours, theirs = parse_tag(version), parse_tag(str(current.get("version", "")))
    if ours is None or theirs is None or ours > theirs:
        return None
    return Problem(
        "VersionNotNewer",
        "spec.version",
        f"{version} is not newer than {current.get('version')}, "
        f"which production runs ({current.get('release')})",
        "release a higher version; to go back to an earlier one, decide Rollback on the current Release",
    )


# --- the bake ------------------------------------------------------------------------------------


def analysis_of(d: Draft) -> AnalysisSpec | None:
    assert d.run is not None
    return d.run.stage(d.release.pipeline).analysis


def start_bake(d: Draft) -> None:
    assert d.run is not None
    spec = analysis_of(d)
    assert spec is not None
    message = f"production rollout complete; watching the error rate for {spec.bake_seconds}s"
    d.move(
        Step.BAKING, "Baking", message, rolled_out_at=d.now, analysis={"startedAt": d.now, "evaluations": []}
    )
    d.effects.append(RecordProduction(entry(d, "Baking")))
    d.event("Normal", "Baking", message)


def bake(d: Draft) -> None:
    assert d.run is not None and d.run.analysis is not None
    if not stages.holds_lock(d):
        stages.lock_lost(d)
        return
    if stages.superseded(d):
        return
    spec = analysis_of(d)
    assert spec is not None
    evaluations = list(d.run.analysis.get("evaluations") or [])
    sample = d.obs.metrics
    if sample is None:
        return
    verdict, detail = judge(sample, spec)
    evaluations.append(
        {
            "time": d.now,
            "verdict": str(verdict),
            "errorRate": sample.error_rate,
            "requestRate": sample.request_rate,
            "detail": detail,
        }
    )
    evaluations = evaluations[-EVALUATIONS_KEPT:]
    started = d.run.analysis.get("startedAt")
    d.run = replace(d.run, analysis={**d.run.analysis, "evaluations": evaluations})
    baked = stages.elapsed(d, started)
    if streak(evaluations, Verdict.BREACH) >= spec.consecutive_breaches:
        breach(d, spec, detail)
    elif streak(evaluations, Verdict.INCONCLUSIVE) >= spec.inconclusive_limit:
        inconclusive(d, spec, detail)
    elif verdict == Verdict.HEALTHY and baked >= timedelta(seconds=spec.bake_seconds):
        d.move(Step.PASSED, "BakePassed", f"healthy for the whole bake ({spec.bake_seconds}s): {detail}")
    else:
        d.message = f"baking {int(baked.total_seconds())}/{spec.bake_seconds}s: {verdict}: {detail}"


def breach(d: Draft, spec: AnalysisSpec, detail: str) -> None:
    assert d.run is not None
    message = f"{detail} for {spec.consecutive_breaches} evaluation(s) in a row"
    d.effects.append(
        Alert("critical", "ErrorRateBreach", f"Release {d.release.key} in production: {message}")
    )
    d.event("Warning", "ErrorRateBreach", message)
    if spec.on_breach == OnBreach.ROLLBACK:
        start_rollback(d, "ErrorRateBreach", message, SYSTEM)
        return
    deadline = to_rfc3339(d.obs.now + timedelta(seconds=spec.decision_deadline_seconds))
    d.move(
        Step.AWAITING_DECISION,
        "ErrorRateBreach",
        f"{message}; decide Rollback, Emergency or FailForward before {deadline} "
        f"(then: {spec.default_decision})",
        decision_deadline=deadline,
    )


def inconclusive(d: Draft, spec: AnalysisSpec, detail: str) -> None:
    message = f"metrics inconclusive for {spec.inconclusive_limit} evaluation(s) in a row: {detail}"
    if spec.on_inconclusive == OnInconclusive.ROLLBACK:
        d.effects.append(Alert("warning", "MetricsInconclusive", f"Release {d.release.key}: {message}"))
        start_rollback(d, "MetricsInconclusive", message, SYSTEM)
        return
    hold(d, "MetricsInconclusive", f"{message}; holding: approve, roll back, or fail forward")


def hold(d: Draft, reason: str, message: str) -> None:
    d.effects.append(Alert("warning", reason, f"Release {d.release.key}: {message}"))
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
        d.event("Warning", "DecisionIgnored", f"{said}; {refused}")
        return
    in_production = d.run is not None and bool(d.run.spec.get("production")) and current_in_production(d)
    if action == Action.APPROVE and phase == Phase.VERIFIED:
        d.event("Normal", "Approved", said)
        pipeline = d.obs.pipeline
        if not isinstance(pipeline, Problem) and pipeline.production is not None:
            d.stage_index = pipeline.production.index
            stages.start_stage(d)
            return
    elif action == Action.APPROVE and phase == Phase.HELD:
        d.event("Normal", "Approved", said)
        d.move(Step.PASSED, "Approved", said, decided_by=by)
        return
    elif action == Action.ROLLBACK and in_production:
        d.event("Warning", "RollbackDecided", said)
        start_rollback(d, "RollbackDecided", said, by)
        return
    elif action == Action.EMERGENCY and in_production:
        emergency(d, said, by)
        return
    elif action == Action.FAIL_FORWARD:
        d.event("Warning", "FailForward", said)
        d.move(Step.PASSED, "FailForward", said, decided_by=by)
        return
    d.event("Warning", "DecisionIgnored", f"{said}; this Release is not what production runs now")


def current_in_production(d: Draft) -> bool:
    """Is this Release what production runs now (its history entry is the newest that stood)?"""
    for item in reversed(d.obs.production.history):
        if item.get("uid") == d.release.uid:
            return item.get("result") not in ("RolledBack",)
        if item.get("result") in (*STOOD, "Baking"):
            return False
    return d.phase in (Phase.BAKING, Phase.AWAITING_DECISION, Phase.HELD)


def emergency(d: Draft, said: str, by: str) -> None:
    """Escalate, take staging over (its in-progress work rolls back) and freeze it for hotfixes only."""
    assert d.run is not None
    pipeline = d.obs.pipeline
    environments = pipeline.locked_environments() if not isinstance(pipeline, Problem) else ()
    reason = f"emergency for {d.release.key}"
    for environment in environments:
        d.effects.append(PreemptLock(environment, reason, hold=False, freeze=True))
    if d.run.lock:
        d.effects.append(ReleaseLock(d.run.environment, "Emergency"))
    frozen = ", ".join(environments) or "no locked environment"
    message = f"{said}; frozen for hotfixes only: {frozen}; production keeps this version until a hotfix"
    d.effects.append(Alert("critical", "Emergency", f"Release {d.release.key}: {message}"))
    d.effects.append(RecordProduction(entry(d, "Emergency", by)))
    d.effects.append(Retrospective("Emergency", said, by))
    d.event("Warning", "Emergency", message)
    d.run = replace(d.run, reason="Emergency", message=message, finished_at=d.now)
    d.phase, d.reason, d.message = Phase.EMERGENCY, "Emergency", message


# --- rollback to the previous Release ------------------------------------------------------------


def previous_release(d: Draft) -> Mapping[str, Any] | None:
    """The newest history entry before ours that stood in production: "the previous tag"."""
    before: list[Mapping[str, Any]] = []
    for item in d.obs.production.history:
        if item.get("uid") == d.release.uid:
            break
        before.append(item)
    else:
        before = list(d.obs.production.history)
    return next((i for i in reversed(before) if i.get("result") in STOOD), None)


def start_rollback(d: Draft, reason: str, detail: str, by: str) -> None:
    assert d.run is not None
    target = previous_release(d)
    if target is None:
        message = (
            f"{detail}; cannot roll back: no earlier Release stood in production (see the Pipeline's "
            "status.production.history); fix: decide FailForward, or Emergency and ship a hotfix"
        )
        hold(d, "NoPreviousRelease", message)
        return
    if not d.run.changes:
        d.move(Step.FAILED, reason, f"{detail}; nothing was deployed to production", finished_at=d.now)
        return
    wanted = target_images(d, target)
    pipeline = d.obs.pipeline
    environments = pipeline.locked_environments() if not isinstance(pipeline, Problem) else ()
    for environment in environments:
        d.effects.append(
            PreemptLock(environment, f"production rollback of {d.release.key}", hold=True, freeze=False)
        )
    d.effects.append(
        SetImages(tuple((c.workload, c.container, wanted[i]) for i, c in enumerate(d.run.changes)))
    )
    staging = staging_reverts(d)
    if staging:
        d.effects.append(SetImages(staging))
    message = f"{detail}; re-applying {target.get('release')} ({target.get('version')}), the previous Release"
    d.event("Warning", "RollingBack", message)
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
            "environments": list(environments),
        },
    )


def target_images(d: Draft, target: Mapping[str, Any]) -> list[str]:
    """For each of our changes, the image the previous Release ran in that container."""
    assert d.run is not None and d.run.changes is not None
    recorded = {(i["workload"], i["container"]): i["image"] for i in target.get("images") or ()}
    return [recorded.get((c.workload.key(), c.container), c.before) for c in d.run.changes]


def staging_reverts(d: Draft) -> tuple[Any, ...]:
    """Earlier stages that still run this Release's images go back to what they ran before it."""
    reverts = []
    for raw in d.release.status.get("stages") or ():
        if (raw.get("spec") or {}).get("production"):
            continue
        for image in raw.get("images") or ():
            ref = WorkloadRef.from_key(image["workload"])
            seen = d.obs.workloads.get(ref)
            if seen is not None and seen.containers.get(image["container"]) == image["after"]:
                reverts.append((ref, image["container"], image["before"]))
    return tuple(reverts)


def roll_back_production(d: Draft) -> None:
    assert d.run is not None and d.run.changes is not None and d.run.rollback is not None
    refusal = stages.rejected(d, "SetImages")
    reason, detail = d.run.reason or "RolledBack", d.run.message or ""
    if refusal is not None:
        d.move(
            Step.FAILED, reason, f"{detail}; the rollback itself was refused: {refusal}", finished_at=d.now
        )
        return
    wanted = list(d.run.rollback.get("images") or [])
    pending = []
    for change, image in zip(d.run.changes, wanted, strict=True):
        seen = d.obs.workloads.get(change.workload)
        if seen is None or seen.containers.get(change.container) != image or not seen.rollout.done:
            detail_of = seen.rollout.detail if seen is not None else "not found"
            pending.append(f"{change.workload}: {detail_of}")
    timeout = timedelta(seconds=d.run.stage(d.release.pipeline).rollout_timeout_seconds)
    if pending and stages.elapsed(d, d.run.rolled_back_at) <= timeout:
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
        d.effects.append(ReleaseLock(environment, "ProductionRolledBack"))
    if run.lock and run.reason != "LockLost":
        d.effects.append(ReleaseLock(run.environment, "Failed"))
    message = run.message or "production stage failed"
    if rollback:
        by = str(rollback.get("decidedBy") or SYSTEM)
        digests = tuple(
            sorted({ref.digest for ref in map(parse_pinned, d.release.artifacts.values()) if ref})
        )
        d.effects.append(Quarantine(digests, d.release.key, d.release.version, run.reason or "RolledBack"))
        d.effects.append(RecordProduction(entry(d, "RolledBack", by)))
        restored = {
            "release": rollback.get("release"),
            "uid": rollback.get("uid"),
            "version": rollback.get("version"),
            "images": [
                {"workload": c.workload.key(), "container": c.container, "image": image}
                for c, image in zip(run.changes or (), rollback.get("images") or (), strict=False)
            ],
            "deployedAt": d.now,
            "result": "Restored",
            "decidedBy": by,
            "reason": f"rollback of {d.release.key}",
        }
        d.effects.append(RecordProduction(restored))
        d.effects.append(Retrospective("Rollback", message, by))
        d.phase = Phase.ROLLED_BACK
    else:
        d.phase = Phase.FAILED
    d.reason, d.message = run.reason or "Failed", message
    d.effects.append(
        Alert("critical" if rollback else "warning", d.reason, f"Release {d.release.key}: {message}")
    )
    d.event("Warning", str(d.phase), message)


def finish_passed(d: Draft) -> None:
    assert d.run is not None
    run = d.run
    if run.lock:
        d.effects.append(ReleaseLock(run.environment, "Released"))
    result = "FailedForward" if run.reason == "FailForward" else "Released"
    d.effects.append(RecordProduction(entry(d, result, run.decided_by or SYSTEM)))
    if d.release.hotfix:
        pipeline = d.obs.pipeline
        for environment in pipeline.locked_environments() if not isinstance(pipeline, Problem) else ():
            d.effects.append(UnfreezeLock(environment))
    d.run = replace(run, finished_at=d.now)
    d.phase, d.reason = Phase.RELEASED, run.reason or "Released"
    d.message = f"released to production ({run.message})" if run.message else "released to production"
    d.event("Normal", "Released", d.message)


def entry(d: Draft, result: str, by: str = SYSTEM) -> dict[str, Any]:
    """This Release's line in the production history."""
    assert d.run is not None
    return {
        "release": d.release.key,
        "uid": d.release.uid,
        "version": d.release.version,
        "images": [
            {"workload": c.workload.key(), "container": c.container, "image": c.after}
            for c in d.run.changes or ()
        ],
        "deployedAt": d.run.deployed_at or d.now,
        "result": result,
        "decidedBy": by,
        "updatedAt": d.now,
    }
