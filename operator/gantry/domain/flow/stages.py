"""The stages before production: what a failure, a pass and a complete rollout mean there.

A failed stage re-applies the images it recorded before deploying (an exact rollback of just
that stage); a passed stage hands the lock on and the Release to its next stage, or to Verified.
The steps all stages share are in domain.flow.steps; the router in domain.flow.release binds them here.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from gantry.domain.flow import gitops, source, steps
from gantry.domain.flow.draft import Draft
from gantry.domain.flow.model import Alert, ReleaseLock
from gantry.domain.inputs.analysis import Verdict, evaluate, streak
from gantry.domain.vocabulary import commands
from gantry.domain.vocabulary.phases import Phase, Step
from gantry.domain.vocabulary.problems import Problem
from gantry.domain.vocabulary.reasons import Reason
from gantry.domain.vocabulary.timefmt import from_rfc3339, to_rfc3339


def rolled_out(d: Draft) -> None:
    """A complete rollout: a canary stage (one with `analysis`) bakes first; then its test, if any."""
    assert d.run is not None
    spec = d.run.stage.analysis
    if spec is None:
        steps.test_or_pass(d, start_rollback)
        return
    message = (
        f"stage {d.run.name}: rollout complete; watching its error rate for {spec.bake_seconds}s (canary)"
    )
    steps.begin_bake(d, message)


def bake(d: Draft) -> None:
    """A canary bake before production: a breach (or metrics that never say) rolls back this stage
    only, and production's ledger is never written; healthy for the whole bake, the stage goes on
    to its test, or passes."""
    assert d.run is not None and d.run.analysis is not None and d.run.stage.analysis is not None
    if not steps.holds_lock(d):
        steps.lock_lost(d, start_rollback)
        return
    if steps.superseded(d, start_rollback) or d.obs.metrics is None:
        return
    spec = d.run.stage.analysis
    evaluations, verdict, detail = evaluate(d.run.analysis, d.obs.metrics, spec, d.now)
    baked = d.elapsed(d.run.analysis.get("startedAt"))
    d.run = replace(d.run, analysis={**d.run.analysis, "evaluations": evaluations})
    if streak(evaluations, Verdict.BREACH) >= spec.consecutive_breaches:
        message = f"{detail} for {spec.consecutive_breaches} evaluation(s) in a row"
        said = (
            f"Release {d.release.key}: canary stage {d.run.name} breached: {message}; rolling back that "
            f"stage only; {commands.status(d.release.namespace, d.release.application)}"
        )
        d.effects.append(Alert("critical", Reason.ERROR_RATE_BREACH, said))
        start_rollback(d, Reason.ERROR_RATE_BREACH, message)
    elif streak(evaluations, Verdict.INCONCLUSIVE) >= spec.inconclusive_limit:
        start_rollback(
            d,
            Reason.METRICS_INCONCLUSIVE,
            f"metrics inconclusive for {spec.inconclusive_limit} in a row: {detail}",
        )
    elif verdict == Verdict.HEALTHY and baked >= timedelta(seconds=spec.bake_seconds):
        d.event(
            "Normal",
            Reason.BAKE_PASSED,
            f"stage {d.run.name}: healthy for the whole bake ({spec.bake_seconds}s)",
        )
        steps.test_or_pass(d, start_rollback)
    else:
        so_far = f"{int(baked.total_seconds())}/{spec.bake_seconds}s"
        d.message = f"stage {d.run.name} (canary) baking {so_far}: {verdict}: {detail}"


def soak(d: Draft) -> None:
    """Passed, and soaking: every workload must stay available on the stage's images for
    soakSeconds in a row. A dip restarts the soak once healthy again; unhealthy for longer than
    the rollout timeout, the stage rolls back."""
    assert d.run is not None
    if not steps.holds_lock(d):
        steps.lock_lost(d, start_rollback)
        return
    if steps.superseded(d, start_rollback):
        return
    run, seconds = d.run, d.run.stage.soak_seconds
    unhealthy = steps.rollout_pending(d, "after")
    if unhealthy:
        since = run.unhealthy_since or d.now
        timeout = run.stage.rollout_timeout_seconds
        detail = "; ".join(unhealthy)
        if d.elapsed(since) > timedelta(seconds=timeout):
            start_rollback(d, Reason.SOAK_UNHEALTHY, f"not healthy for {timeout}s while soaking: {detail}")
            return
        give_up = to_rfc3339(from_rfc3339(since) + timedelta(seconds=timeout))
        message = (
            f"stage {run.name}: soak interrupted: {detail}; it starts again once healthy "
            f"(rolls back if not healthy by {give_up})"
        )
        if run.unhealthy_since is None:
            d.event("Warning", Reason.SOAK_UNHEALTHY, message)
        d.move(Step.SOAKING, Reason.SOAK_UNHEALTHY, message, unhealthy_since=since)
        return
    if run.unhealthy_since is not None:  # healthy again: the soak starts over
        until = to_rfc3339(d.obs.now + timedelta(seconds=seconds))
        message = f"stage {run.name}: healthy again; soaking until {until} ({seconds}s)"
        d.event("Normal", Reason.SOAKING, message)
        d.move(Step.SOAKING, Reason.SOAKING, message, soak_started_at=d.now, unhealthy_since=None)
        return
    if d.elapsed(run.soak_started_at) >= timedelta(seconds=seconds):
        message = f"stage {run.name}: ran healthy for {seconds}s (soak)"
        d.event("Normal", Reason.SOAKED, message)
        d.move(Step.PASSED, Reason.SOAKED, message)


def start_rollback(d: Draft, reason: str, detail: str) -> None:
    assert d.run is not None
    message = f"stage {d.run.name}: {detail}"
    d.event("Warning", reason, message)
    if not d.run.stage.rollback_on_failure or not d.run.changes:
        d.move(Step.FAILED, reason, message + " (rollback disabled for this stage)", finished_at=d.now)
        return
    d.move(Step.ROLLING_BACK, reason, message + "; rolling back")
    roll_back(d)


def roll_back(d: Draft) -> None:
    assert d.run is not None and d.run.changes is not None
    reason, detail = d.run.reason or Reason.ROLLED_BACK, d.run.message or ""
    if steps.restore_refused(d, reason, detail):
        return
    if d.run.rolled_back_at is None:
        restored = steps.restorable(d, d.run.changes)
        d.effects.append(gitops.set_images(d.run, restored, gitops.commit_of(d, detail), restore=True))
        d.run = replace(d.run, rolled_back_at=d.now)
        d.event("Warning", Reason.ROLLING_BACK, f"stage {d.run.name}: re-applying the images it ran before")
        d.message = f"{detail}; re-applied previous images"
        return
    waiting = steps.rollout_pending(d, "before")
    in_git = gitops.git_wait(d, "before")  # a rollback commit not applied yet by the GitOps tool
    pending = [p for p in waiting if not p.endswith(steps.GONE)] + ([in_git] if in_git else [])
    gone = [p for p in waiting if p.endswith(steps.GONE)]
    if gone:
        detail += f"; could not restore: {'; '.join(gone)}"
    foreign = steps.replaced(d, "before")
    if foreign:
        detail += f"; left alone because someone changed them since: {'; '.join(foreign)}"
    timeout = timedelta(seconds=d.run.stage.rollout_timeout_seconds)
    if pending and d.elapsed(d.run.rolled_back_at) <= timeout:
        d.message = f"{detail}; waiting for rollback rollout: {'; '.join(pending)}"
        return
    outcome = "rolled back" if not pending else f"rollback not complete: {'; '.join(pending)}"
    d.move(
        Step.FAILED, reason, f"{detail.removesuffix('; rolling back')}; stage {outcome}", finished_at=d.now
    )


def pass_stage(d: Draft) -> None:
    assert d.run is not None
    run = d.run
    if run.lock:
        d.effects.append(ReleaseLock(run.environment, Reason.PASSED))
    if source.tag_due(d, run.index) and not source.push_tag(d):
        return  # Blocked until origin takes the tag; the lock is given back meanwhile
    d.run = replace(run, finished_at=d.now)
    d.event("Normal", Reason.STAGE_PASSED, f"stage {run.name} passed")
    pipeline = d.pipeline
    remaining = 0 if isinstance(pipeline, Problem) else len(pipeline.pre_production()) - (run.index + 1)
    if remaining > 0:
        # The next stage starts from a look of its own (its lock, its workloads).
        d.stage_index = run.index + 1
        d.phase, d.reason = Phase.PENDING, Reason.STAGE_PASSED
        d.message = f"stage {run.name} passed; next stage"
        d.passing = True  # its outcome is on record already (Passed); the door of the next is not
        return
    d.phase, d.reason = Phase.VERIFIED, Reason.VERIFIED
    d.message = f"passed every stage up to production (last: {run.name}); ready for production"
    d.event("Normal", Reason.VERIFIED, d.message)
    if not isinstance(pipeline, Problem) and pipeline.production is not None:
        d.stage_index = pipeline.production.index
        if pipeline.production.promotion != "Auto":
            d.message = steps.waiting_message(d, pipeline.production)


def fail_release(d: Draft) -> None:
    assert d.run is not None
    run = d.run
    if run.lock and run.reason != Reason.LOCK_LOST:
        d.effects.append(ReleaseLock(run.environment, Reason.FAILED))
    d.phase, d.reason = Phase.FAILED, run.reason or Reason.FAILED
    d.message = run.message or f"stage {run.name} failed"
    act = f"fix it and release a new version; {commands.status(d.release.namespace, d.release.application)}"
    d.effects.append(Alert("warning", d.reason, f"Release {d.release.key}: {d.message}; {act}"))
    d.event("Warning", Reason.FAILED, d.message)
