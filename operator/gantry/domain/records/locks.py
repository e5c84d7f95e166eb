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
from typing import Any

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


@dataclass(frozen=True)
class Freeze:
    """Only hotfix Releases may take the lock while it is frozen."""

    by: str  # the Release whose emergency froze it, or the person who froze it by hand
    reason: str
    since: datetime
    by_hand: bool = False


@dataclass(frozen=True)
class LockState:
    holder: Holder | None = None
    queue: tuple[Waiter, ...] = ()
    history: tuple[Tenure, ...] = ()
    # After an emergency (status.frozen): set by Gantry, lifted when a hotfix reaches production.
    frozen: Freeze | None = None
    # By hand (spec.freeze, e.g. a change freeze): set and lifted only by a person; never in status.
    manual: Freeze | None = None

    @property
    def freeze(self) -> Freeze | None:
        """The freeze in force, if any; an emergency's first, as it says more about what to do."""
        return self.frozen or self.manual


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
) -> tuple[LockState, Outcome]:
    """Take the lock, renew it, or join (and stay alive in) the queue.

    While the lock is frozen only hotfix claimants may take it, and they go before other waiters.
    """
    state = expire(state, now, lease, seen)
    if state.holder is not None and state.holder.claimant.uid == claimant.uid:
        holder = replace(state.holder, renew_time=now)
        return replace(state, holder=holder), Granted(holder.since)
    allowed = state.freeze is None or hotfix
    head = state.queue[0] if state.queue else None
    first = head is None or head.claimant.uid == claimant.uid or (state.freeze is not None and hotfix)
    if state.holder is None and allowed and first:
        queue = tuple(w for w in state.queue if w.claimant.uid != claimant.uid)
        return replace(state, holder=Holder(claimant, now, now), queue=queue), Granted(now)
    queue = _join(state.queue, claimant, now, hotfix)
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


def freeze_by_hand(by: str, reason: str, now: datetime) -> dict[str, Any]:
    """The lock's spec.freeze for a freeze a person sets (kubectl gantry lock freeze, or GitOps)."""
    return {"by": by, "reason": reason, "since": to_rfc3339(now)}


def manual_freeze(spec: Mapping[str, Any] | None) -> Freeze | None:
    raw = (spec or {}).get("freeze")
    if not raw:
        return None
    since = from_rfc3339(raw["since"]) if raw.get("since") else datetime.fromtimestamp(0, UTC)
    return Freeze(str(raw.get("by") or "unknown"), str(raw.get("reason") or ""), since, by_hand=True)


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


def _join(queue: tuple[Waiter, ...], claimant: Claimant, now: datetime, hotfix: bool) -> tuple[Waiter, ...]:
    """Renew a waiter's place, or give a new one its place by class: a hotfix behind the hotfixes
    already waiting and ahead of every normal Release; a normal Release at the end."""
    for i, waiter in enumerate(queue):
        if waiter.claimant.uid == claimant.uid:
            return (*queue[:i], replace(waiter, renew_time=now), *queue[i + 1 :])
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
    return LockState(holder, queue, history, frozen)


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
    if state.holder is not None:
        status["holder"] = {
            "release": state.holder.claimant.release,
            "uid": state.holder.claimant.uid,
            "since": to_rfc3339(state.holder.since),
            "renewTime": to_rfc3339(state.holder.renew_time),
        }
    return status
