"""Releases: one driver per Release that needs one moves it through its stages.

The driver (a Kopf daemon) reconciles, then sleeps until the watch event that ends the Release's
wait rings its bell (handlers.watches: a rollout finished, a Job ended, a lock changed hands, the
Release itself was edited or decided on) or, as a safety net for lost events and leases, until
the reconcile interval passes. Baking wakes exactly when the next evaluation is due.

A Release in flight has a driver; one waiting for a person has none (and so no Kopf finalizer and
no task) unless a clock or a lease runs for it (domain.flow.cadence.needs_driver): its decisions are
applied by the decision desk at once, and the write that moves it on spawns its next driver.
Kopf stops a driver whose Release no longer needs one; should the event that moves the Release
on again arrive while that driver is still stopping, Kopf would spawn none, so the stopping
driver makes one more event (`Runtime.handoff`).

No create/update/delete handlers on Releases: those would make Kopf annotate every Release it
sees (one PATCH each, thousands at start-up). Deletions are noticed from the raw watch events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from gantry.adapters.kube import FINALIZER, GROUP, VERSION
from gantry.domain.flow import guard
from gantry.domain.flow.cadence import Haste, LastLook, look_due, needs_driver
from gantry.domain.flow.waits import next_due, waits_on
from gantry.domain.vocabulary.phases import FINAL, FINISHED_LABEL
from gantry.reconciler import Look
from gantry.runtime import Runtime
from gantry.settings import Config

HANDOFF_DELAY = 0.2  # seconds: after the driver's task is gone from Kopf's records


def driven(status: kopf.Status, meta: kopf.Meta, **_: Any) -> bool:
    return needs_driver(status, meta)


def register(registry: kopf.OperatorRegistry, config: Config) -> None:
    last_looks: dict[str, LastLook] = {}

    def due(uid: str, status: kopf.Status, meta: kopf.Meta, rung: bool) -> bool:
        now = time.monotonic()
        version = str(meta.get("resourceVersion", ""))
        last = last_looks.get(uid)
        if rung or look_due(
            status, version, last, now, datetime.now(UTC), config.waiting_interval, config.waiting_resync
        ):
            last_looks[uid] = LastLook(now, version)
            return True
        return False

    @kopf.daemon(
        GROUP,
        VERSION,
        "releases",
        when=driven,
        backoff=config.reconcile_interval,
        cancellation_timeout=config.reconcile_interval,
        registry=registry,
    )
    async def drive_release(
        namespace: str | None,
        name: str,
        uid: str,
        status: kopf.Status,
        meta: kopf.Meta,
        spec: kopf.Spec,
        stopped: kopf.DaemonStopped,
        memo: Any,
        **_: Any,
    ) -> None:
        runtime: Runtime = memo
        ns = namespace or ""
        bell = runtime.wakeups.bell(uid)
        # A new driver looks at once: one waiting for a person gets a driver only when something
        # needs its attention (a decision, a lease, a deadline: domain.flow.cadence.needs_driver).
        rung = True
        haste = Haste()  # whether a look that stopped with more to do is followed at once
        await finalizer_on(meta)
        try:
            while not stopped:
                timeout = config.reconcile_interval
                if due(uid, status, meta, rung):
                    bell.clear()
                    since = runtime.wakeups.sequence
                    look = await runtime.blocking(advance, runtime, ns, name)
                    if look is None or (look.phase in FINAL and not guard.active(look.status)):
                        last_looks.pop(uid, None)  # Kopf stops this driver at the next event
                    else:
                        pipeline = str(spec.get("pipeline") or spec.get("application") or "")
                        waits = waits_on(ns, pipeline, look.status)
                        runtime.wakeups.expect(uid, waits, look.resource_version, since)
                        timeout = until(next_due(look.status), timeout)
                        if haste.again(look.settled, look.resource_version):
                            await asyncio.sleep(0)  # let the watch handlers run in between
                            rung = True  # nothing will ring for it: go on now, not at the next tick
                            continue
                rung = await ring_or_timeout(bell, timeout)
        finally:  # also when Kopf cancels it (it does at once when the filter stops matching)
            runtime.wakeups.forget(uid)
            if stopped.reason == kopf.DaemonStoppingReason.FILTERS_MISMATCH and needs_driver(status, meta):
                # Stopped as it began to wait, and the event that moved it on again came while it
                # was still stopping: Kopf spawns no second driver then, and none on later events
                # until one comes. Make one come, once this driver is gone.
                asyncio.get_running_loop().call_later(HANDOFF_DELAY, runtime.handoff, ns, name)

    @kopf.on.event(GROUP, VERSION, "releases", registry=registry)
    async def notice_release(
        event: kopf.RawEvent, namespace: str | None, name: str, uid: str, memo: Any, **_: Any
    ) -> None:
        runtime: Runtime = memo
        if runtime.metrics is not None:  # a Release in flight, for the gauges; gone or final: forgotten
            body = event["object"]
            in_flight = (
                event.get("type") != "DELETED" and (body.get("status") or {}).get("phase") not in FINAL
            )
            runtime.metrics.records.release(namespace or "", name, body if in_flight else None)
        if event.get("type") == "DELETED":
            last_looks.pop(uid, None)
            if FINISHED_LABEL in (event["object"]["metadata"].get("labels") or {}):
                return  # not deleted: finished, it left the watch's label selector
            await runtime.blocking(leave, runtime, event["object"])  # put back, stop, give back its lock
            return
        body = event["object"]
        if finished(body):
            spec = body.get("spec") or {}
            pipeline = str(spec.get("pipeline") or spec.get("application") or "")
            await runtime.blocking(runtime.resources.mark_finished, namespace or "", name, True, pipeline)
            return
        version = str(body["metadata"].get("resourceVersion", ""))
        runtime.wakeups.release_changed(uid, version, listed=event.get("type") is None)  # Kopf: None = listed


def finished(body: Mapping[str, Any]) -> bool:
    """Final, and Kopf has taken its finalizer off (the driver has stopped): label it, so it leaves
    the watch. Labelled while Kopf's finalizer is still on, a deletion would wait for ever."""
    meta = body["metadata"]
    return (
        (body.get("status") or {}).get("phase") in FINAL
        and not guard.active(body.get("status") or {})
        and FINISHED_LABEL not in (meta.get("labels") or {})
        and FINALIZER not in (meta.get("finalizers") or ())
        and not meta.get("deletionTimestamp")
    )


def leave(runtime: Runtime, body: Any) -> None:
    runtime.reconciler.leave(body)


def advance(runtime: Runtime, namespace: str, name: str) -> Look | None:
    try:
        return runtime.reconciler.advance(namespace, name)
    except Exception:
        if runtime.metrics is not None:
            runtime.metrics.reconcile_errors.labels("Release").inc()
        raise


def until(moment: datetime | None, longest: float) -> float:
    """Seconds to sleep: to the next due moment (a bake evaluation), at most the safety-net interval."""
    if moment is None:
        return longest
    return max(0.0, min(longest, (moment - datetime.now(UTC)).total_seconds()))


FINALIZER_WAIT = 1.0  # seconds; Kopf's own PATCH, then its watch event, usually take a few ms


async def finalizer_on(meta: kopf.Meta) -> None:
    """Kopf starts a driver while its PATCH adding the finalizer is on its way: a status written
    before that PATCH lands fails with 409 (the object changed) and costs a second look. Wait for
    the finalizer in the live body first (a bounded wait: the look is safe either way)."""
    deadline = time.monotonic() + FINALIZER_WAIT
    while FINALIZER not in (meta.get("finalizers") or ()) and time.monotonic() < deadline:
        await asyncio.sleep(0.002)


async def ring_or_timeout(bell: asyncio.Event, timeout: float) -> bool:
    """True if a watch event rang the bell, False if the timer ran out."""
    try:
        await asyncio.wait_for(bell.wait(), timeout)
    except TimeoutError:
        return False
    return True
