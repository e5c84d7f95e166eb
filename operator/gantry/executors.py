"""Every kind of Effect, and the executor that carries it out beside its adapter."""

from __future__ import annotations

import logging
from typing import Any

from gantry.adapters import alert_effects, git_effects, kube_effects, registry_effects
from gantry.adapters.effects import Context, EffectFailed, Executor
from gantry.domain.flow.model import (
    Alert,
    ClaimProduction,
    DeleteJob,
    Effect,
    EffectFailure,
    RecordProduction,
    SetImages,
)
from gantry.domain.records import ledger
from gantry.domain.vocabulary.reasons import Reason
from gantry.domain.vocabulary.timefmt import to_rfc3339

log = logging.getLogger(__name__)


def place_images(ctx: Context, effect: SetImages) -> None:
    """Where the stage deploys: its live workloads, or its place in git. A rollback with
    `rollback: LiveFirst` re-pins the workloads at once and commits after, so it waits neither
    for the GitOps tool's sync nor for git: a commit that fails then is a Warning, not a stop."""
    target = effect.git
    if target is None:
        kube_effects.set_images(ctx, effect)
        return
    if not (effect.restore and target.rollback == "LiveFirst"):
        git_effects.commit_images(ctx, effect)
        return
    kube_effects.set_images(ctx, effect)
    try:
        git_effects.commit_images(ctx, effect)
    except EffectFailed as failed:
        ctx.announce(
            "Warning",
            Reason.GIT_COMMIT_FAILED,
            f"the rollback is live, but {target.describe()} still names the rolled-back images: "
            f"{failed.message}; the GitOps tool may re-apply them at its next sync: commit the previous "
            "images there (or pause its auto-sync) until git is back",
        )


def record_production(ctx: Context, effect: RecordProduction | ClaimProduction) -> None:
    """The production ledger in the Pipeline's status, then its line in git (spec.git.ledger)."""
    kube_effects.EXECUTORS[type(effect)](ctx, effect)
    line = ledger.git_line(ctx.release.application, effect.entry, to_rfc3339(ctx.now))
    git_effects.ledger_to_git(ctx, line)


EXECUTORS: dict[type[Any], Executor] = {
    **kube_effects.EXECUTORS,
    **git_effects.EXECUTORS,
    **registry_effects.EXECUTORS,
    **alert_effects.EXECUTORS,
    SetImages: place_images,
    RecordProduction: record_production,
    ClaimProduction: record_production,
}


# Carried out only once the tick's status is recorded: only the writer that won the status write
# (optimistic concurrency) sends the alert, so two operators never alert twice, and a Job is
# deleted only after the stage's record says it stopped waiting for it.
AFTER_RECORD = (Alert, DeleteJob)


def split(effects: tuple[Effect, ...]) -> tuple[tuple[Effect, ...], tuple[Effect, ...]]:
    """(before the status write, after it)."""
    after = tuple(e for e in effects if isinstance(e, AFTER_RECORD))
    return tuple(e for e in effects if not isinstance(e, AFTER_RECORD)), after


def execute(ctx: Context, effects: tuple[Effect, ...]) -> EffectFailure | None:
    """Carry out the effects in order; stop at the first that failed and say how, for the next decision."""
    for effect in effects:
        try:
            EXECUTORS[type(effect)](ctx, effect)
        except EffectFailed as failed:
            log.warning(
                "Release %s: %s failed (%s): %s",
                ctx.release.key,
                type(effect).__name__,
                failed.failure,
                failed,
            )
            return EffectFailure(type(effect), failed.failure, failed.message)
    return None


def follow_up(ctx: Context, effects: tuple[Effect, ...]) -> None:
    """After the record, each on its own: a failure here changes no decision, so it is logged and
    left to the safety nets (a Job stops itself at activeDeadlineSeconds; Events say what alerts say)."""
    for effect in effects:
        try:
            failure = execute(ctx, (effect,))
        except Exception:  # the status is recorded; the next tick must not redo the transition
            log.exception("Release %s: follow-up %s failed", ctx.release.key, type(effect).__name__)
            continue
        if failure is not None:
            log.warning(
                "Release %s: follow-up %s failed: %s", ctx.release.key, type(effect).__name__, failure
            )
