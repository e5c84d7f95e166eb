"""Which Release waits on which object, and the bell that wakes it when a watch event ends the wait.

Each Release in flight has one driver (handlers.releases) that reconciles, tells `expect()` what
the Release now waits on (domain.flow.waits), then sleeps until its bell rings or its safety-net
timer runs out. Watch handlers ring the bells of the Releases waiting on the object that just
changed. Everything here runs on the operator's event loop, so nothing needs a lock; it is only
a cache of what the status says, rebuilt by each driver's first reconcile after a restart.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Hashable

from gantry.domain.flow.waits import WaitKey, Wake

RANG_KEPT = 4096


class Wakeups:
    def __init__(self) -> None:
        self._bells: dict[str, asyncio.Event] = {}
        self._waits: dict[str, frozenset[WaitKey]] = {}
        self._waiting: defaultdict[WaitKey, set[str]] = defaultdict(set)
        self._written: dict[str, str] = {}  # uid -> the resourceVersion our own last write made
        self._seen: dict[str, Hashable] = {}  # lock key -> what a waiter cares about (holder, freeze)
        self.rung: Counter[str] = Counter()  # wake-ups by cause, for the metrics and benchmarks
        # When each object last rang (a sequence number): an event that arrives while a Release is
        # being reconciled, before it says what it waits on, must still wake it afterwards.
        self.sequence = 0
        self._rang: OrderedDict[WaitKey, int] = OrderedDict()

    def bell(self, uid: str) -> asyncio.Event:
        return self._bells.setdefault(uid, asyncio.Event())

    def expect(self, uid: str, waits: frozenset[WaitKey], written: str, since: int) -> None:
        """After a reconcile that began at `since` (a `sequence`): what the Release waits on now,
        and the version of it we wrote or saw last."""
        for key in self._waits.get(uid, frozenset()) - waits:
            self._unwait(key, uid)
        for key in waits:
            self._waiting[key].add(uid)
        self._waits[uid] = waits
        self._written[uid] = written
        missed = next((key for key in waits if self._rang.get(key, 0) > since), None)
        if missed is not None:
            self._ring(uid, missed[0])

    def forget(self, uid: str) -> None:
        for key in self._waits.pop(uid, frozenset()):
            self._unwait(key, uid)
        self._bells.pop(uid, None)
        self._written.pop(uid, None)

    def ring(self, key: WaitKey) -> None:
        self.sequence += 1
        self._rang[key] = self.sequence
        self._rang.move_to_end(key)
        if len(self._rang) > RANG_KEPT:
            self._rang.popitem(last=False)  # long past: any Release that waited on it has looked since
        for uid in self._waiting.get(key, ()):
            self._ring(uid, key[0])

    def release_changed(self, uid: str, resource_version: str, listed: bool = False) -> None:
        """Someone else changed the Release (its spec, a decision): look at it now. Our own status
        writes come back as events too; those are skipped, and so is the watch's initial listing
        (`listed`), which is no change at all."""
        written = self._written.get(uid)  # None: not looked at since start-up; domain.flow.cadence sees
        if listed or written is None:  # the change on the timer (at most a waiting interval later)
            return
        if uid in self._bells and written != resource_version:
            self._ring(uid, "release")

    def lock_changed(self, key: str, seen: Hashable) -> None:
        """Waiters care only when the holder or the freeze changes, not about lease renewals."""
        if self._seen.get(key) != seen:
            self._seen[key] = seen
            self.ring((Wake.LOCK, key))

    def lock_gone(self, key: str) -> None:
        self._seen.pop(key, None)
        self.ring((Wake.LOCK, key))

    def waiting(self) -> int:
        return len(self._bells)

    def _ring(self, uid: str, cause: str) -> None:
        bell = self._bells.get(uid)
        if bell is not None and not bell.is_set():
            bell.set()
            self.rung[cause] += 1

    def _unwait(self, key: WaitKey, uid: str) -> None:
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.discard(uid)
            if not waiting:
                del self._waiting[key]
