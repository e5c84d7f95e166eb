"""Executor for alerts: labelled with the Release, routed by the Pipeline's receivers."""

from __future__ import annotations

from typing import Any

from gantry.adapters.effects import Context, Executor
from gantry.domain.flow.model import Alert
from gantry.domain.inputs.pipeline import Pipeline


def send_alert(ctx: Context, effect: Alert) -> None:
    release = ctx.release
    labels = {
        "release": release.key,
        "application": release.application,
        "version": release.version,
        "namespace": release.namespace,
    }
    config = ctx.pipeline.alerts if isinstance(ctx.pipeline, Pipeline) else None
    ctx.adapters.alerter.send(effect, labels, config)


EXECUTORS: dict[type[Any], Executor] = {Alert: send_alert}
