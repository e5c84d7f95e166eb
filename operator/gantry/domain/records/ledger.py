"""An application's production ledger (kept in its Pipeline's status): what ran when, who
decided, and which digests are quarantined after a rollback. Pure list and map edits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

HISTORY_LIMIT = 30
LOG_LIMIT = 50


class Result(StrEnum):
    """How a Release's time in production went (a history entry's `result`)."""

    DEPLOYING = "Deploying"  # production claimed: deploying, or rolling out
    BAKING = "Baking"
    RELEASED = "Released"
    FAILED_FORWARD = "FailedForward"
    EMERGENCY = "Emergency"
    BREACHED = "Breached"  # released, then its guard saw the error rate breach; still runs there
    ROLLED_BACK = "RolledBack"
    RESTORED = "Restored"  # the previous Release, re-applied by a rollback
    FAILED = "Failed"  # left production before anything of it stood there
    ABANDONED = "Abandoned"  # its Release was deleted while it held production


# Ran in production and was not rolled back: a rollback target ("the previous tag").
STOOD = frozenset(
    {Result.RELEASED, Result.FAILED_FORWARD, Result.EMERGENCY, Result.BREACHED, Result.RESTORED}
)
# What production runs now, or ran until replaced: what stood, or what is baking there.
CURRENT = STOOD | {Result.BAKING}
# In production's flight: one Release at a time, from its claim until it is released or rolled back.
IN_FLIGHT = frozenset({Result.DEPLOYING, Result.BAKING})


def entries(pipeline_status: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ledger as a Pipeline's status holds it (status.production.history), oldest first."""
    return list((pipeline_status.get("production") or {}).get("history") or [])


# Results that end a rollback: recorded once each, however often the effect is retried.
ONCE = frozenset({Result.ROLLED_BACK, Result.RESTORED})


def record(history: list[dict[str, Any]], entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Update this Release's latest entry in place while it is the newest one, else append anew.

    Idempotent: a rollback's entries (RolledBack, Restored) carry the same uid, result and reason
    when the effect runs again after a lost status write, and then update their first record.
    """
    out = [dict(e) for e in history]
    again = next(
        (
            i
            for i in range(len(out) - 1, -1, -1)
            if entry.get("result") in ONCE
            and all(out[i].get(k) == entry.get(k) for k in ("uid", "result", "reason"))
        ),
        None,
    )
    if (
        again is None
        and out
        and out[-1].get("uid") == entry.get("uid")
        and out[-1].get("result") != Result.RESTORED
    ):
        again = len(out) - 1
    if again is None:
        out.append(dict(entry))
    else:
        kept = out[again].get("deployedAt") or entry.get("deployedAt")  # the first deploy time, once known
        out[again] = {**out[again], **entry, "deployedAt": kept}
    return out[-HISTORY_LIMIT:]


def in_flight(history: Sequence[Mapping[str, Any]], uid: str) -> Mapping[str, Any] | None:
    """Another Release's entry that holds production now (deploying, baking, held, awaiting a decision)."""
    latest: dict[str, Mapping[str, Any]] = {}
    for entry in history:
        latest[str(entry.get("uid"))] = entry
    return next((e for u, e in reversed(latest.items()) if u != uid and e.get("result") in IN_FLIGHT), None)


def stood_before(history: Sequence[Mapping[str, Any]], uid: str) -> Mapping[str, Any] | None:
    """The newest entry before the Release `uid` first appears that stood in production: what a
    rollback of it re-applies ("the previous tag"); None when nothing earlier stood there."""
    before: list[Mapping[str, Any]] = []
    for item in history:
        if item.get("uid") == uid:
            break
        before.append(item)
    return next((i for i in reversed(before) if i.get("result") in STOOD), None)


def current(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((e for e in reversed(history) if e.get("result") in CURRENT), None)


def quarantine(
    entries: list[dict[str, Any]], digests: tuple[str, ...], release: str, version: str, reason: str, at: str
) -> list[dict[str, Any]]:
    known = {e["digest"] for e in entries}
    added = [
        {"digest": d, "release": release, "version": version, "reason": reason, "since": at}
        for d in digests
        if d not in known
    ]
    return [*entries, *added]


def lift(entries: list[dict[str, Any]], digests: set[str]) -> list[dict[str, Any]]:
    return [e for e in entries if e["digest"] not in digests]


def log(entries: list[dict[str, Any]], item: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [*entries, dict(item)][-LOG_LIMIT:]


def git_line(application: str, entry: Mapping[str, Any], now: str) -> tuple[str, str]:
    """A production record as one JSON line for the ledger in git, and the marker that finds it
    there again (one line per Release and result: Deploying, Baking, Released, RolledBack...)."""
    ident = f"{entry.get('uid')}/{entry.get('result')}"
    record = {
        "id": ident,
        "time": entry.get("updatedAt") or now,
        "application": application,
        **{k: entry[k] for k in ("release", "version", "result", "decidedBy", "reason") if entry.get(k)},
        "images": [i.get("image") for i in entry.get("images") or ()],
    }
    return json.dumps(record), f'"id": {json.dumps(ident)}'


def retired_line(namespace: str, line: Mapping[str, Any]) -> tuple[str, str]:
    """A finished Release deleted by retention, as one JSON line for the ledger in git."""
    ident = f"retired/{namespace}/{line.get('release')}@{line.get('uid')}"
    return json.dumps({"id": ident, "time": line.get("deletedAt"), **line}), f'"id": {json.dumps(ident)}'


def decision_line(application: str, release: str, decision: Mapping[str, Any]) -> tuple[str, str]:
    """A ReleaseDecision on `release` (namespace/name) as one JSON line for the ledger in git, and
    its marker."""
    namespace = release.split("/", 1)[0]
    ident = f"decision/{namespace}/{decision.get('name')}@{decision.get('time')}"
    keys = ("action", "decidedBy", "reason", "via", "commit")
    record = {
        "id": ident,
        "time": decision.get("time"),
        "application": application,
        "release": release,
        **{k: decision[k] for k in keys if decision.get(k)},
    }
    return json.dumps(record), f'"id": {json.dumps(ident)}'
