"""How often the operator looks at a Release, and whether it needs a driver of its own.

In flight, a Release has a driver (handlers.releases) that looks at it every tick and whenever a
watch event ends its wait. A Release waiting for a person (AwaitingApproval, Verified under
manual promotion, AwaitingDecision, Held) changes only when its own object changes (a decision
is copied into its status and applied by the decision desk at once), when a deadline passes, or
while it holds a lock whose lease needs renewing: only then does it keep a driver
(`needs_driver`), so thousands of waiting Releases cost neither a task each nor API reads. A
waiting Release that does keep one is looked at when its resourceVersion moved, when a deadline
is due, while it holds a lock, and otherwise once per `resync` seconds (`look_due`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gantry.domain.flow import guard
from gantry.domain.flow.model import SUPERSEDED_BY
from gantry.domain.vocabulary.phases import FINAL, WAITING, Phase
from gantry.domain.vocabulary.timefmt import from_rfc3339


def needs_driver(status: Mapping[str, Any], meta: Mapping[str, Any]) -> bool:
    """Does the Release need a driver of its own (a task that looks at it until it settles)?

    In flight: yes. Waiting for a person, it changes only when its own object does (a decision
    is copied in and applied at once by the decision desk, an edit, a newer Release superseding
    it), so no driver is kept for it, except while a clock or a lease is running: a lock to renew,
    a decision deadline, a Verified Release whose production stage promotes by itself, and a
    Released one whose production is guarded (domain.flow.guard)."""
    phase = status.get("phase")
    if phase in FINAL:
        return guard.active(status)
    if phase not in WAITING or status.get("lock"):
        return True
    runs = status.get("stages") or [{}]
    if runs[-1].get("decisionDeadline") and phase == Phase.AWAITING_DECISION:
        return True
    if len(status.get("decisions") or ()) > int(status.get("decisionsApplied") or 0):
        return True
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 1):
        return True
    if SUPERSEDED_BY in (meta.get("annotations") or {}):
        return True
    stages = (status.get("pipeline") or {}).get("stages") or [{}]
    return (
        phase == Phase.VERIFIED
        and bool(stages[-1].get("production"))
        and stages[-1].get("promotion") == "Auto"
    )


@dataclass(frozen=True)
class LastLook:
    at: float  # monotonic seconds
    resource_version: str


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
