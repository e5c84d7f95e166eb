"""EnvironmentLock arbitration: one holder, a queue, and leases so nothing is stuck.

The queue goes by class, then first come, first served: a production rollback and an emergency
take the lock by force (preempt), a hotfix waits ahead of every normal Release, and normal
Releases wait in the order they asked.

Every function takes the lock's current state and returns the next one; the caller writes it
back with optimistic concurrency (resourceVersion), so two operators or two Releases racing
can never both win: the loser gets 409 Conflict, re-reads, and decides again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from gantry.domain.records import windows
from gantry.domain.vocabulary import commands
from gantry.domain.vocabulary.reasons import Reason
from gantry.domain.vocabulary.timefmt import from_rfc3339, to_rfc3339

HISTORY_LIMIT = 20


@dataclass(frozen=True)
class Claimant:
    release: str  # namespace/name, for people
    uid: str  # identity: a Release re-created under the same name is a new claimant


@dataclass(frozen=True)
class Holder:
    claimant: Claimant
    since: datetime
    renew_time: datetime


@dataclass(frozen=True)
class Waiter:
    claimant: Claimant
    enqueued_at: datetime
    renew_time: datetime
    hotfix: bool = False  # waits ahead of every normal Release (behind earlier hotfixes)


@dataclass(frozen=True)
class Tenure:
    """A past holder, kept so an SRE can see who had the environment and why they let go."""

    claimant: Claimant
    acquired_at: datetime
    released_at: datetime
    reason: str


class FreezeKind(StrEnum):
    EMERGENCY = "Emergency"  # status.frozen: lifts when a hotfix reaches production
    INCIDENT = "Incident"  # status.incident: an Alertmanager alert fires; lifts when it resolves
    BY_HAND = "ByHand"  # spec.freeze: a person's, lifted by a person
    WINDOW = "Window"  # status.window: a recurring window of spec.freezeWindows is open


@dataclass(frozen=True)
class Freeze:
    """Only hotfix Releases (and a Release with a break-glass override) may take the lock while it
    is frozen."""

    by: str  # the emergency's Release, the alert, the person, or the window
    reason: str
    since: datetime
    kind: FreezeKind = FreezeKind.EMERGENCY
    until: datetime | None = None  # a window's end
    alerts: tuple[str, ...] = ()  # an incident: the fingerprints of the alerts firing
    lifted_by: str = ""  # an incident a person lifted while its alerts still fire

    @property
    def by_hand(self) -> bool:
        return self.kind == FreezeKind.BY_HAND

    def describe(self) -> str:
        """Frozen how, in words for a status message (after "is")."""
        why = self.reason or "no reason given"
        if self.kind == FreezeKind.BY_HAND:
            return f"frozen by hand by {self.by} ({why}, since {to_rfc3339(self.since)})"
        if self.kind == FreezeKind.INCIDENT:
            return f"frozen by the incident alert {self.by} ({why}, firing since {to_rfc3339(self.since)})"
        if self.kind == FreezeKind.WINDOW:
            until = f" until {to_rfc3339(self.until)}" if self.until else ""
            return f"in the freeze {self.by} ({why}){until}"
        return f"frozen by the emergency of {self.by} ({why}, since {to_rfc3339(self.since)})"

    def lifted_when(self, environment: str) -> str:
        """What ends it, for the same message."""
        lift = commands.unfreeze(environment)
        if self.kind == FreezeKind.BY_HAND:
            return f"a person lifts it ({lift})"
        if self.kind == FreezeKind.INCIDENT:
            return f"the alert resolves, or a person lifts it on the record ({lift})"
        if self.kind == FreezeKind.WINDOW:
            return "the window closes"
        return f"a hotfix reaches production, or a person lifts it on the record ({lift})"


@dataclass(frozen=True)
class LockState:
    holder: Holder | None = None
    queue: tuple[Waiter, ...] = ()
    history: tuple[Tenure, ...] = ()
    # After an emergency (status.frozen): set by Gantry, lifted when a hotfix reaches production.
    frozen: Freeze | None = None
    # By hand (spec.freeze, e.g. a change freeze): set and lifted only by a person; never in status.
    manual: Freeze | None = None
    # While an Alertmanager alert naming the environment fires (status.incident).
    incident: Freeze | None = None
    # While one of spec.freezeWindows is open (status.window, settled at every read-decide-write).
    window: Freeze | None = None

    @property
    def freeze(self) -> Freeze | None:
        """The freeze in force, if any; the one that says most about what to do first."""
        return self.frozen or self.active_incident or self.manual or self.window

    @property
    def active_incident(self) -> Freeze | None:
        """The incident's freeze, unless a person lifted it while its alerts still fire."""
        return self.incident if self.incident is not None and not self.incident.lifted_by else None


@dataclass(frozen=True)
class Granted:
    since: datetime


@dataclass(frozen=True)
class Waiting:
    position: int  # 1 = next in line
    holder: Claimant | None
    frozen: Freeze | None = None


Outcome = Granted | Waiting


# Claimant uid -> (its renewTime as the lock records it, when this operator first saw that value).
Sightings = Mapping[str, tuple[datetime, datetime]]


def sight(previous: Sightings, state: LockState, now: datetime) -> dict[str, tuple[datetime, datetime]]:
    """Note, as Kubernetes leader election does, when each claimant's renewTime last changed by
    our clock: a lease is judged by that, never by the remote timestamp itself, so a claimant
    whose clock runs behind or ahead of ours neither loses the lock early nor holds it for ever.
    Losing the sightings (a restart) only makes one lease last longer, never shorter."""
    renewals = [(w.claimant.uid, w.renew_time) for w in state.queue]
    if state.holder is not None:
        renewals.append((state.holder.claimant.uid, state.holder.renew_time))
    out = {}
    for uid, renewed in renewals:
        recorded, first_seen = previous.get(uid, (None, now))
        out[uid] = (renewed, first_seen if recorded == renewed else now)
    return out


def expire(state: LockState, now: datetime, lease: timedelta, seen: Sightings | None = None) -> LockState:
    """Drop a holder and waiters whose lease ran out: they crashed or were deleted. With `seen`
    (this operator's sightings) a lease runs from when its renewal was first seen here; without,
    from its renewTime, but never from one in the future."""

    def age(uid: str, renewed: datetime) -> timedelta:
        recorded, first_seen = (seen or {}).get(uid, (None, now))
        return now - (first_seen if recorded == renewed else min(renewed, now))

    holder, history = state.holder, state.history
    if holder is not None and seen is None and holder.renew_time > now:
        holder = replace(holder, renew_time=now)  # a clock ahead of ours: age it from now, never never
    if holder is not None and age(holder.claimant.uid, holder.renew_time) > lease:
        history = _remember(history, Tenure(holder.claimant, holder.since, now, Reason.LEASE_EXPIRED))
        holder = None
    queue = tuple(
        w if seen is not None else replace(w, renew_time=min(w.renew_time, now))
        for w in state.queue
        if age(w.claimant.uid, w.renew_time) <= lease
    )
    return replace(state, holder=holder, queue=queue, history=history)


def acquire(
    state: LockState,
    claimant: Claimant,
    now: datetime,
    lease: timedelta,
    hotfix: bool = False,
    seen: Sightings | None = None,
    overridden: bool = False,
    heir_of: frozenset[str] = frozenset(),
) -> tuple[LockState, Outcome]:
    """Take the lock, renew it, or join (and stay alive in) the queue.

    While the lock is frozen only hotfix claimants (and one let through by a person's override)
    may take it, and they go before the waiters the freeze holds back. A Release that supersedes
    older ones (`heir_of`: their namespace/name) joins at the place of the first of them still
    waiting, so newest-wins never sends an application to the back of the line.
    """
    state = expire(state, now, lease, seen)
    if state.holder is not None and state.holder.claimant.uid == claimant.uid:
        holder = replace(state.holder, renew_time=now)
        return replace(state, holder=holder), Granted(holder.since)
    passes = hotfix or overridden
    allowed = state.freeze is None or passes
    head = state.queue[0] if state.queue else None
    first = head is None or head.claimant.uid == claimant.uid or (state.freeze is not None and passes)
    if state.holder is None and allowed and first:
        queue = tuple(w for w in state.queue if w.claimant.uid != claimant.uid)
        return replace(state, holder=Holder(claimant, now, now), queue=queue), Granted(now)
    queue = _join(state.queue, claimant, now, hotfix, heir_of)
    position = next(i for i, w in enumerate(queue, start=1) if w.claimant.uid == claimant.uid)
    current = state.holder.claimant if state.holder else None
    return replace(state, queue=queue), Waiting(position, current, None if allowed else state.freeze)


def preempt(
    state: LockState, claimant: Claimant, now: datetime, reason: str, hold: bool, freeze: bool
) -> LockState:
    """Take the lock by force (production rollback, emergency); the holder is told it was preempted.

    The preempted Release sees this in the lock's history and rolls back its own in-progress work.
    """
    history = state.history
    holder = state.holder
    if holder is not None and holder.claimant.uid != claimant.uid:
        history = _remember(history, Tenure(holder.claimant, holder.since, now, f"Preempted: {reason}"))
        holder = None
    if hold:
        holder = Holder(claimant, now, now) if holder is None else replace(holder, renew_time=now)
    elif holder is not None:
        history = _remember(history, Tenure(holder.claimant, holder.since, now, reason))
        holder = None
    queue = tuple(w for w in state.queue if w.claimant.uid != claimant.uid)
    frozen = Freeze(claimant.release, reason, now) if freeze and state.frozen is None else state.frozen
    return replace(state, holder=holder, queue=queue, history=history, frozen=frozen)


def unfreeze(state: LockState, why: str, now: datetime) -> LockState:
    """Lift the emergency's freeze (a freeze by hand stays until a person lifts it), on the record:
    the freeze becomes an entry of the lock's history, from when it began to now, saying why it
    ended (a hotfix released, or who lifted it and their reason)."""
    if state.frozen is None:
        return state
    frozen = state.frozen
    ended = Tenure(Claimant(f"freeze by {frozen.by}", ""), frozen.since, now, why)
    return replace(state, frozen=None, history=_remember(state.history, ended))


def settle_window(state: LockState, found: windows.Found, now: datetime) -> LockState:
    """Open or close status.window to match the lock's windows now; a window that closes becomes
    an entry of the lock's history (from its opening to now). Windows that cannot be read
    freeze the lock, saying which field to fix: a broken change freeze must not open the gate."""
    if isinstance(found, windows.BadWindow):
        new: Freeze | None = Freeze(
            "spec.freezeWindows", str(found), state.window.since if state.window else now, FreezeKind.WINDOW
        )
    elif found is not None:
        window, start, end = found
        new = Freeze(
            f"window {window.name}",
            window.reason or "a recurring freeze window",
            start,
            FreezeKind.WINDOW,
            until=end,
        )
    else:
        new = None
    old = state.window
    if old == new:
        return state
    history = state.history
    if old is not None and (new is None or (old.by, old.since) != (new.by, new.since)):
        history = _remember(
            history, Tenure(Claimant(f"freeze {old.by}", ""), old.since, now, Reason.WINDOW_CLOSED)
        )
    return replace(state, window=new, history=history)


def incident_fires(state: LockState, alert: str, fingerprint: str, reason: str, since: datetime) -> LockState:
    """An alert naming this environment fires: freeze (or stay frozen) for incidents. A person's
    lift holds for the alerts firing when they lifted it; a new alert freezes again."""
    old = state.incident
    if old is not None and fingerprint in old.alerts:
        return state
    if old is None:
        return replace(
            state, incident=Freeze(alert, reason, since, FreezeKind.INCIDENT, alerts=(fingerprint,))
        )
    alerts = (*old.alerts, fingerprint)
    return replace(state, incident=replace(old, alerts=alerts, lifted_by=""))


def incident_resolves(state: LockState, fingerprint: str, now: datetime) -> LockState:
    """An alert resolved: once none fires, the incident's freeze ends, on the lock's history."""
    old = state.incident
    if old is None or fingerprint not in old.alerts:
        return state
    alerts = tuple(a for a in old.alerts if a != fingerprint)
    if alerts:
        return replace(state, incident=replace(old, alerts=alerts))
    ended = Tenure(Claimant(f"freeze by incident {old.by}", ""), old.since, now, Reason.INCIDENT_RESOLVED)
    return replace(state, incident=None, history=_remember(state.history, ended))


def lift_incident(state: LockState, who: str, why: str, now: datetime) -> LockState:
    """A person lifts the incident's freeze while its alerts fire: recorded on the history; the
    incident stays (marked lifted) so a re-sent notification of the same alerts does not freeze again."""
    old = state.incident
    if old is None or old.lifted_by:
        return state
    ended = Tenure(Claimant(f"freeze by incident {old.by}", ""), old.since, now, why)
    return replace(state, incident=replace(old, lifted_by=who), history=_remember(state.history, ended))


def freeze_by_hand(by: str, reason: str, now: datetime) -> dict[str, Any]:
    """The lock's spec.freeze for a freeze a person sets (kubectl gantry lock freeze, or GitOps)."""
    return {"by": by, "reason": reason, "since": to_rfc3339(now)}


def manual_freeze(spec: Mapping[str, Any] | None) -> Freeze | None:
    raw = (spec or {}).get("freeze")
    if not raw:
        return None
    since = from_rfc3339(raw["since"]) if raw.get("since") else datetime.fromtimestamp(0, UTC)
    return Freeze(str(raw.get("by") or "unknown"), str(raw.get("reason") or ""), since, FreezeKind.BY_HAND)


def was_preempted(state: LockState, claimant: Claimant) -> bool:
    mine = [t for t in state.history if t.claimant.uid == claimant.uid]
    return bool(mine) and mine[-1].reason.startswith("Preempted")


def release(state: LockState, claimant: Claimant, now: datetime, reason: str) -> LockState:
    """Let go of the lock and leave the queue; a no-op for someone who holds neither."""
    history = state.history
    holder = state.holder
    if holder is not None and holder.claimant.uid == claimant.uid:
        history = _remember(history, Tenure(holder.claimant, holder.since, now, reason))
        holder = None
    queue = tuple(w for w in state.queue if w.claimant.uid != claimant.uid)
    return replace(state, holder=holder, queue=queue, history=history)


def why_lost(state: LockState, claimant: Claimant, lease: timedelta) -> str:
    """What happened to a lock `claimant` expected to hold, in words for its stage's message."""
    mine = [t for t in state.history if t.claimant.uid == claimant.uid]
    if mine and mine[-1].reason == Reason.LEASE_EXPIRED:
        lost = f"its lease ran out ({int(lease.total_seconds())}s without a renewal)"
    else:
        lost = "someone removed this Release as its holder (no lease ran out)"
    if state.holder is not None:
        return f"{lost}; {state.holder.claimant.release} holds it now"
    return lost


def drop(state: LockState, gone: set[str], now: datetime) -> LockState:
    """Forget claimants (by uid) whose Release no longer exists: a deleted Release never holds the
    lock nor blocks the queue until its lease runs out."""
    if state.holder is not None and state.holder.claimant.uid in gone:
        state = release(state, state.holder.claimant, now, Reason.RELEASE_DELETED)
    return replace(state, queue=tuple(w for w in state.queue if w.claimant.uid not in gone))


def claims(state: LockState, uid: str) -> bool:
    """The Release (by uid) holds the lock or waits in its queue."""
    holder = state.holder is not None and state.holder.claimant.uid == uid
    return holder or any(w.claimant.uid == uid for w in state.queue)


def blocking(state: LockState) -> list[Claimant]:
    """The claimants others wait for: the holder and the head of the queue."""
    return ([state.holder.claimant] if state.holder else []) + [w.claimant for w in state.queue[:1]]


def renewal_due(holder: Holder, now: datetime, lease: timedelta) -> bool:
    """Renew at a third of the lease: often enough to survive two missed ticks, rarely enough not to storm."""
    return now - holder.renew_time >= lease / 3


def hotfixes_ahead(state: LockState, claimant: Claimant) -> int:
    """How many hotfix Releases wait ahead of this (normal) waiter: why its place is what it is."""
    ahead = 0
    for waiter in state.queue:
        if waiter.claimant.uid == claimant.uid:
            return 0 if waiter.hotfix else ahead
        ahead += int(waiter.hotfix)
    return 0


def _join(
    queue: tuple[Waiter, ...],
    claimant: Claimant,
    now: datetime,
    hotfix: bool,
    heir_of: frozenset[str] = frozenset(),
) -> tuple[Waiter, ...]:
    """Renew a waiter's place, or give a new one its place by class: a hotfix behind the hotfixes
    already waiting and ahead of every normal Release; a normal Release at the end, or at the
    place (and with the enqueue time) of the first older Release it supersedes."""
    for i, waiter in enumerate(queue):
        if waiter.claimant.uid == claimant.uid:
            return (*queue[:i], replace(waiter, renew_time=now), *queue[i + 1 :])
    inherited = next(
        (i for i, w in enumerate(queue) if w.claimant.release in heir_of and w.hotfix == hotfix), None
    )
    if inherited is not None:
        older = queue[inherited]
        return (*queue[:inherited], Waiter(claimant, older.enqueued_at, now, hotfix), *queue[inherited:])
    place = next((i for i, w in enumerate(queue) if not w.hotfix), len(queue)) if hotfix else len(queue)
    return (*queue[:place], Waiter(claimant, now, now, hotfix), *queue[place:])


def _remember(history: tuple[Tenure, ...], tenure: Tenure) -> tuple[Tenure, ...]:
    """Append a tenure; one that repeats the last (the same Release letting go again for the same
    reason, nobody in between: a Release that takes a free lock and is refused it on every tick)
    extends that entry instead, so churn cannot push the real history out."""
    if history:
        last = history[-1]
        if last.claimant.uid == tenure.claimant.uid and last.reason == tenure.reason:
            return (*history[:-1], replace(last, released_at=tenure.released_at))
    return (*history, tenure)[-HISTORY_LIMIT:]


# --- the status subresource of an EnvironmentLock <-> LockState ---------------------------------


def from_object(body: Mapping[str, Any]) -> LockState:
    """The lock as an EnvironmentLock object holds it: the queue in status, a freeze by hand in spec."""
    return replace(from_status(body.get("status")), manual=manual_freeze(body.get("spec")))


def from_status(status: Mapping[str, Any] | None) -> LockState:
    status = status or {}
    raw_holder = status.get("holder")
    holder = None
    if raw_holder:
        holder = Holder(
            Claimant(raw_holder["release"], raw_holder["uid"]),
            from_rfc3339(raw_holder["since"]),
            from_rfc3339(raw_holder["renewTime"]),
        )
    queue = tuple(
        Waiter(
            Claimant(w["release"], w["uid"]),
            from_rfc3339(w["enqueuedAt"]),
            from_rfc3339(w["renewTime"]),
            bool(w.get("hotfix")),
        )
        for w in status.get("queue") or ()
    )
    history = tuple(
        Tenure(
            Claimant(h["release"], h["uid"]),
            from_rfc3339(h["acquiredAt"]),
            from_rfc3339(h["releasedAt"]),
            h.get("reason", ""),
        )
        for h in status.get("history") or ()
    )
    raw_frozen = status.get("frozen")
    frozen = None
    if raw_frozen:
        frozen = Freeze(raw_frozen["by"], raw_frozen.get("reason", ""), from_rfc3339(raw_frozen["since"]))
    return LockState(
        holder,
        queue,
        history,
        frozen,
        incident=_freeze_from(status.get("incident"), FreezeKind.INCIDENT),
        window=_freeze_from(status.get("window"), FreezeKind.WINDOW),
    )


def _freeze_from(raw: Mapping[str, Any] | None, kind: FreezeKind) -> Freeze | None:
    if not raw:
        return None
    until = from_rfc3339(raw["until"]) if raw.get("until") else None
    alerts = tuple(str(a) for a in raw.get("alerts") or ())
    return Freeze(
        str(raw["by"]),
        str(raw.get("reason", "")),
        from_rfc3339(raw["since"]),
        kind,
        until,
        alerts,
        str(raw.get("liftedBy") or ""),
    )


def _freeze_to(freeze: Freeze) -> dict[str, Any]:
    out: dict[str, Any] = {"by": freeze.by, "reason": freeze.reason, "since": to_rfc3339(freeze.since)}
    if freeze.until is not None:
        out["until"] = to_rfc3339(freeze.until)
    if freeze.alerts:
        out["alerts"] = list(freeze.alerts)
    if freeze.lifted_by:
        out["liftedBy"] = freeze.lifted_by
    return out


def to_status(state: LockState) -> dict[str, Any]:
    status: dict[str, Any] = {
        "queue": [
            {
                "release": w.claimant.release,
                "uid": w.claimant.uid,
                "enqueuedAt": to_rfc3339(w.enqueued_at),
                "renewTime": to_rfc3339(w.renew_time),
                **({"hotfix": True} if w.hotfix else {}),
            }
            for w in state.queue
        ],
        "queueLength": len(state.queue),
        "history": [
            {
                "release": t.claimant.release,
                "uid": t.claimant.uid,
                "acquiredAt": to_rfc3339(t.acquired_at),
                "releasedAt": to_rfc3339(t.released_at),
                "reason": t.reason,
            }
            for t in state.history
        ],
    }
    if state.frozen is not None:
        status["frozen"] = {
            "by": state.frozen.by,
            "reason": state.frozen.reason,
            "since": to_rfc3339(state.frozen.since),
        }
    if state.incident is not None:
        status["incident"] = _freeze_to(state.incident)
    if state.window is not None:
        status["window"] = _freeze_to(state.window)
    if state.holder is not None:
        status["holder"] = {
            "release": state.holder.claimant.release,
            "uid": state.holder.claimant.uid,
            "since": to_rfc3339(state.holder.since),
            "renewTime": to_rfc3339(state.holder.renew_time),
        }
    return status
