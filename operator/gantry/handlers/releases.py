"""Releases: one timer per Release that is not final drives it through its stages.

A single timer, not one per kind of phase: Kopf re-spawns a timer stopped by its `when` filter
only on the Release's next watch event, and a reconcile that moves a Release from waiting to
in-flight writes its last event while the old timer still runs, so a second timer could miss
its start. Waiting Releases (for an approval, a decision, a deadline) are looked at every
`waiting_interval` instead of every tick; that throttle is in memory on purpose: losing it on a
restart costs one early look, nothing more.
"""

from __future__ import annotations

import time
from typing import Any

import kopf

from gantry.adapters.kube import GROUP, VERSION
from gantry.domain.model import FINAL, WAITING
from gantry.runtime import Runtime
from gantry.settings import Config


def not_final(status: kopf.Status, **_: Any) -> bool:
    return status.get("phase") not in FINAL


def register(registry: kopf.OperatorRegistry, config: Config) -> None:
    last_look: dict[str, float] = {}

    @kopf.timer(
        GROUP,
        VERSION,
        "releases",
        interval=config.reconcile_interval,
        backoff=config.reconcile_interval,
        when=not_final,
        registry=registry,
    )
    def advance_release(
        namespace: str | None, name: str, uid: str, status: kopf.Status, memo: Any, **_: Any
    ) -> None:
        runtime: Runtime = memo
        now = time.monotonic()
        if status.get("phase") in WAITING and now - last_look.get(uid, 0.0) < config.waiting_interval:
            return
        last_look[uid] = now
        try:
            phase = runtime.reconciler.reconcile(namespace or "", name)
            if phase is None or phase in FINAL:
                last_look.pop(uid, None)  # the timer stops for it; keep the throttle map small
        except Exception:
            if runtime.metrics is not None:
                runtime.metrics.reconcile_errors.labels("Release").inc()
            raise

    @kopf.on.delete(GROUP, VERSION, "releases", optional=True, registry=registry)
    def forget_release(uid: str, **_: Any) -> None:
        last_look.pop(uid, None)
