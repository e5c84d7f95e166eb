"""How often the operator looks at a Release: in flight every tick; waiting, only when it may matter.

A Release waiting for a person (Verified under manual promotion, AwaitingDecision, Held) changes
only when its own object changes (a ReleaseDecision is copied into its status), when a deadline
passes, or, rarely, when its Pipeline is edited. Looking at thousands of them every few seconds
would cost several API reads each for nothing, so they are looked at when their resourceVersion
moved, when a deadline is due, while they hold a lock (the lease needs renewing), and otherwise
once per `resync` seconds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gantry.domain.phases import WAITING
from gantry.domain.timefmt import from_rfc3339


@dataclass(frozen=True)
class LastLook:
    at: float  # monotonic seconds
    resource_version: str


def first_look(
    status: Mapping[str, Any],
    uid: str,
    now: float,
    waiting_interval: float,
    resource_version: str = "",
    resync: float | None = None,
) -> LastLook | None:
    """After a start-up, spread the first looks at waiting Releases, so thousands of them do not
    queue in front of the Releases that are in flight. One holding a lock (its lease needs
    renewing) is looked at within one waiting interval. One holding nothing changes only by an
    event (which wakes it), a deadline (due on its own) or not at all: with `resync`, its first
    look is spread over one resync, counted as if it had been looked at in its current version."""
    if status.get("phase") not in WAITING:
        return None
    fraction = int(hashlib.sha256(uid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if resync is not None and not status.get("lock"):
        return LastLook(now - resync * fraction, resource_version)
    return LastLook(now - waiting_interval * fraction, "")  # "" differs from any resourceVersion


def look_due(
    status: Mapping[str, Any],
    resource_version: str,
    last: LastLook | None,
    now: float,
    wall_clock: datetime,
    waiting_interval: float,
    resync: float,
) -> bool:
    if status.get("phase") not in WAITING or last is None:
        return True
    since = now - last.at
    if since < waiting_interval:
        return False
    if resource_version != last.resource_version or status.get("lock"):
        return True
    deadline = ((status.get("stages") or [{}])[-1]).get("decisionDeadline")
    if deadline and from_rfc3339(str(deadline)) <= wall_clock:
        return True
    return since >= resync


# Looks in a row that may follow at once when one stopped with more to do: a few that changed
# nothing (an effect failing, a write conflicting), or many that moved the Release on (a flow whose
# rollouts and Jobs finish as fast as Gantry writes, on a loaded machine). Past either, the timer's
# pace: something keeps undoing the work, and hammering the API server would not help.
MAX_STALLED = 5
MAX_HURRIED = 50


@dataclass
class Haste:
    """After a look that ran out of steps with more to do (nothing will ring for it): look again
    at once, within the limits above."""

    stalled: int = 0
    hurried: int = 0
    written: str = ""

    def again(self, settled: bool, resource_version: str) -> bool:
        moved, self.written = resource_version != self.written, resource_version
        self.hurried = 0 if settled else self.hurried + 1
        self.stalled = 0 if settled or moved else self.stalled + 1
        return not settled and self.stalled <= MAX_STALLED and self.hurried <= MAX_HURRIED
