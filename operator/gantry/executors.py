"""Every kind of Effect, and the executor that carries it out beside its adapter."""

from __future__ import annotations

import logging
from typing import Any

from gantry.adapters import alert_effects, git_effects, kube_effects, registry_effects
from gantry.adapters.effects import Context, EffectFailed, Executor
from gantry.domain.model import Alert, DeleteJob, Effect, EffectFailure

log = logging.getLogger(__name__)

EXECUTORS: dict[type[Any], Executor] = {
    **kube_effects.EXECUTORS,
    **git_effects.EXECUTORS,
    **registry_effects.EXECUTORS,
    **alert_effects.EXECUTORS,
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
