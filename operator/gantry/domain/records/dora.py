"""The four DORA measures of an application's delivery, read from its production ledger.

Derived from the record (not counted as things happen), so they are the same after a restart and
on every replica. The ledger keeps the newest entries only (ledger.HISTORY_LIMIT), so each measure
covers the window below or those entries, whichever is shorter: `Dora.since` says from when.

- deployment frequency: Releases deployed to production per day;
- lead time for changes: from the first commit of a Release's changelog (else the Release's
  creation: the merge that made it) to its deploy in production, the median;
- change failure rate: Releases rolled back, and emergency Releases (each one answers a failed
  change), over Releases deployed;
- time to restore: from a guard's breach to the next deploy that stood (the rollback's
  re-application, or the emergency or later Release), the median.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gantry.domain.records.ledger import STOOD, Result
from gantry.domain.vocabulary.timefmt import read_rfc3339

WINDOW = timedelta(days=30)
FAILED_CHANGES = frozenset({Result.ROLLED_BACK, Result.EMERGENCY})
RESTORING = STOOD - {Result.BREACHED}


@dataclass(frozen=True)
class Dora:
    since: datetime | None  # the oldest deploy counted (None: none)
    deployments: int
    per_day: float
    lead_time_seconds: float | None  # None: nothing to measure
    change_failure_ratio: float | None
    restore_seconds: float | None


def measure(history: Sequence[Mapping[str, Any]], now: datetime, window: timedelta = WINDOW) -> Dora:
    """The measures over the ledger's entries (oldest first) deployed within `window` of `now`."""
    start = now - window
    deployed = [
        (entry, at)
        for entry in _latest_per_release(history)
        if entry.get("result") != Result.RESTORED
        and (at := read_rfc3339(entry.get("deployedAt")))
        and at >= start
    ]
    if not deployed:
        return Dora(None, 0, 0.0, None, None, None)
    since = min(at for _, at in deployed)
    days = max((now - since).total_seconds() / 86400, 1.0)  # a first day counts as one
    leads = [
        (at - began).total_seconds()
        for entry, at in deployed
        if (began := read_rfc3339(entry.get("committedAt")) or read_rfc3339(entry.get("createdAt")))
    ]
    failed = sum(1 for entry, _ in deployed if entry.get("result") in FAILED_CHANGES)
    restores = _restores(history, start)
    return Dora(
        since=since,
        deployments=len(deployed),
        per_day=len(deployed) / days,
        lead_time_seconds=statistics.median(leads) if leads else None,
        change_failure_ratio=failed / len(deployed),
        restore_seconds=statistics.median(restores) if restores else None,
    )


def _latest_per_release(history: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Each Release's newest entry (a rollback records RolledBack after its Released)."""
    latest: dict[str, Mapping[str, Any]] = {}
    for entry in history:
        if entry.get("result") == Result.RESTORED:
            latest[f"restored/{len(latest)}"] = entry
        else:
            latest[str(entry.get("uid") or entry.get("release"))] = entry
    return list(latest.values())


def _restores(history: Sequence[Mapping[str, Any]], start: datetime) -> list[float]:
    out = []
    for index, entry in enumerate(history):
        breached = read_rfc3339(entry.get("breachedAt"))
        if breached is None or breached < start:
            continue
        later = (
            read_rfc3339(e.get("deployedAt")) for e in history[index + 1 :] if e.get("result") in RESTORING
        )
        restored = next((at for at in later if at is not None and at >= breached), None)
        if restored is not None:
            out.append((restored - breached).total_seconds())
    return out
