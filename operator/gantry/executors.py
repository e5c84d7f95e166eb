"""Every kind of Effect, and the executor that carries it out beside its adapter."""

from __future__ import annotations

import logging
from typing import Any

from gantry.adapters import alert_effects, git_effects, kube_effects, registry_effects
from gantry.adapters.effects import Context, EffectFailed, Executor
from gantry.domain.model import Effect, EffectFailure

log = logging.getLogger(__name__)

EXECUTORS: dict[type[Any], Executor] = {
    **kube_effects.EXECUTORS,
    **git_effects.EXECUTORS,
    **registry_effects.EXECUTORS,
    **alert_effects.EXECUTORS,
}


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
