"""Releases: one timer per Release that is not final drives it through its stages.

A single timer, not one per kind of phase: Kopf re-spawns a timer stopped by its `when` filter
only on the Release's next watch event, and a reconcile that moves a Release from waiting to
in-flight writes its last event while the old timer still runs, so a second timer could miss
its start. Releases waiting for a person are looked at only when that may matter
(domain.cadence). The record of the last look is in memory on purpose: losing it on a restart
costs one early look, nothing more.

No create/update/delete handlers on Releases: those would make Kopf annotate every Release it
sees (one PATCH each, thousands at start-up). Deletions are noticed from the raw watch events.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import kopf

from gantry.adapters.kube import GROUP, VERSION
from gantry.domain.cadence import LastLook, first_look, look_due
from gantry.domain.phases import FINAL
from gantry.runtime import Runtime
from gantry.settings import Config


def not_final(status: kopf.Status, **_: Any) -> bool:
    return status.get("phase") not in FINAL


def register(registry: kopf.OperatorRegistry, config: Config) -> None:
    last_looks: dict[str, LastLook] = {}

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
        namespace: str | None,
        name: str,
        uid: str,
        status: kopf.Status,
        meta: kopf.Meta,
        memo: Any,
        **_: Any,
    ) -> None:
        runtime: Runtime = memo
        now = time.monotonic()
        version = str(meta.get("resourceVersion", ""))
        last = last_looks.get(uid)
        if last is None:
            last = first_look(status, uid, now, config.waiting_interval)
            if last is not None:
                last_looks[uid] = last
        due = look_due(
            status,
            version,
            last,
            now,
            datetime.now(UTC),
            config.waiting_interval,
            config.waiting_resync,
        )
        if not due:
            return
        last_looks[uid] = LastLook(now, version)
        try:
            phase = runtime.reconciler.reconcile(namespace or "", name)
            if phase is None or phase in FINAL:
                last_looks.pop(uid, None)  # the timer stops for it; keep the map small
        except Exception:
            if runtime.metrics is not None:
                runtime.metrics.reconcile_errors.labels("Release").inc()
            raise

    @kopf.on.event(GROUP, VERSION, "releases", registry=registry)
    def forget_release(event: kopf.RawEvent, uid: str, memo: Any, **_: Any) -> None:
        if event.get("type") == "DELETED":
            last_looks.pop(uid, None)
            runtime: Runtime = memo
            runtime.resources.leave_locks(event["object"], datetime.now(UTC))  # its lock is free now
