"""EnvironmentLocks: observed for a Release, updated by read-decide-write, swept, frozen by hand."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from gantry.adapters.kube import ApiError, Kube, custom_path
from gantry.adapters.objects.releases import Releases
from gantry.adapters.objects.store import managed, retry_on_conflict
from gantry.domain.flow.model import ObservedLock
from gantry.domain.records import locks, windows

DEFAULT_LEASE_SECONDS = 300
# (the lock as read, its lease, this operator's sightings of its renewals) -> (next state, result)
LockUpdate = Callable[[locks.LockState, timedelta, locks.Sightings], tuple[locks.LockState, Any]]


class Locks(Releases):  # a lock's claimant whose Release is gone is dropped
    def __init__(self, kube: Kube) -> None:
        super().__init__(kube)
        # Per EnvironmentLock: when this operator first saw each claimant's current renewTime
        # (domain.records.locks.sight). Memory only on purpose: losing it makes a lease last
        # longer, never shorter.
        self._sightings: dict[str, locks.Sightings] = {}

    def freeze_of(self, namespace: str, environment: str, now: datetime) -> locks.Freeze | None:
        body = self.kube.get(custom_path("environmentlocks", namespace, environment))
        return settled(body, now).freeze if body is not None else None

    def observe_lock(
        self,
        namespace: str,
        environment: str,
        claimant: locks.Claimant,
        now: datetime,
        passes_freeze: bool = False,
        heir: str | None = None,
    ) -> ObservedLock:
        path = custom_path("environmentlocks", namespace, environment)
        body = self.kube.get(path)
        if body is None:
            return ObservedLock(held=False, lost="the EnvironmentLock object was deleted")
        lease = lease_of(body)
        state = settled(body, now)
        state = locks.expire(state, now, lease, self._sight(path, state, now))
        if state.holder is not None and state.holder.claimant.uid == claimant.uid:
            due = locks.renewal_due(state.holder, now, lease)
            return ObservedLock(held=True, renewal_due=due, lease_seconds=int(lease.total_seconds()))
        position = next((i for i, w in enumerate(state.queue, 1) if w.claimant.uid == claimant.uid), None)
        holder = state.holder.claimant.release if state.holder else None
        freeze = state.freeze if not passes_freeze else None
        return ObservedLock(
            held=False,
            position=position,
            hotfixes_ahead=locks.hotfixes_ahead(state, claimant),
            holder=holder,
            preempted=locks.was_preempted(state, claimant),
            frozen=freeze,
            heir_waiting=heir is not None and any(w.claimant.release == heir for w in state.queue),
            lost=locks.why_lost(state, claimant, lease),
            lease_seconds=int(lease.total_seconds()),
        )

    def update_lock(self, namespace: str, environment: str, change: LockUpdate, now: datetime) -> Any:
        """Read-decide-write the lock's status until no one else wrote in between (409 = try again)."""
        path = custom_path("environmentlocks", namespace, environment)

        def attempt() -> Any:
            body = self.kube.get(path) or self._create_lock(namespace, environment)
            state = settled(body, now)
            state, result = change(state, lease_of(body), self._sight(path, state, now))
            new_status = locks.to_status(state)
            if new_status != _comparable(body.get("status")):
                self.kube.replace(f"{path}/status", {**body, "status": new_status})
            return result

        return retry_on_conflict(f"EnvironmentLock {namespace}/{environment}", attempt)

    def sweep_lock(self, namespace: str, environment: str, now: datetime) -> None:
        """Drop expired leases, and a holder or head of the queue whose Release was deleted (in case
        the deletion's watch event was missed)."""

        def change(
            state: locks.LockState, lease: timedelta, seen: locks.Sightings
        ) -> tuple[locks.LockState, None]:
            state = locks.expire(state, now, lease, seen)
            gone = {
                c.uid for c in locks.blocking(state) if not self.alive({"release": c.release, "uid": c.uid})
            }
            return locks.drop(state, gone, now), None

        self.update_lock(namespace, environment, change, now)

    def leave_locks(self, body: Mapping[str, Any], now: datetime) -> None:
        """A Release was deleted: give back every lock it held or queued for, at once. The locks
        are found by what they say, not by the Release's last status: a reconcile that asked for
        the next stage's lock may have been stopped before it wrote that down."""
        meta = body["metadata"]
        claimed = {
            lock["metadata"]["name"]
            for lock in self.kube.list_items(custom_path("environmentlocks", meta["namespace"]))
            if locks.claims(locks.from_status(lock.get("status")), meta["uid"])
        }
        for environment in sorted(claimed):
            self.update_lock(
                meta["namespace"],
                environment,
                lambda state, lease, seen: (locks.drop(state, {meta["uid"]}, now), None),
                now,
            )

    def freeze_by_hand(self, namespace: str, environment: str, freeze: Mapping[str, Any] | None) -> None:
        """Set (or, with None, lift) the lock's spec.freeze, against the version read: a person's
        freeze is the lock's desired state, so it lives in spec (and in git, under GitOps)."""
        path = custom_path("environmentlocks", namespace, environment)

        def attempt() -> None:
            body = self.kube.get(path)
            if body is None:
                raise ApiError(404, "NotFound", f"EnvironmentLock {namespace}/{environment} does not exist")
            patch = {
                "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
                "spec": {"freeze": dict(freeze) if freeze else None},
            }
            self.kube.merge_patch(path, patch)

        retry_on_conflict(f"EnvironmentLock {namespace}/{environment}", attempt)

    def _sight(self, path: str, state: locks.LockState, now: datetime) -> locks.Sightings:
        seen = locks.sight(self._sightings.get(path, {}), state, now)
        self._sightings[path] = seen
        return seen

    def ensure_locks(self, namespace: str, environments: Iterable[str]) -> None:
        """Create the locks a Pipeline's stages take (free; an existing one is left as it is), so
        the first Release finds them made, and a freeze can be set before anything is deployed."""
        path = custom_path("environmentlocks", namespace)
        for environment in environments:
            self.kube.create_unless_exists(path, managed("EnvironmentLock", namespace, environment))

    def _create_lock(self, namespace: str, environment: str) -> dict[str, Any]:
        return self.create_managed("EnvironmentLock", "environmentlocks", namespace, environment)


def _comparable(status: Mapping[str, Any] | None) -> dict[str, Any]:
    """A stored status in the shape to_status writes, so an unchanged lock is not rewritten."""
    return locks.to_status(locks.from_status(status)) if status else {}


def settled(body: Mapping[str, Any], now: datetime) -> locks.LockState:
    """The lock as read, with its freeze windows (spec.freezeWindows) opened or closed for now."""
    state = locks.from_object(body)
    raw = (body.get("spec") or {}).get("freezeWindows") or ()
    return locks.settle_window(state, windows.look(raw, "spec.freezeWindows", now), now)


def lease_of(body: Mapping[str, Any]) -> timedelta:
    return timedelta(seconds=int((body.get("spec") or {}).get("leaseSeconds") or DEFAULT_LEASE_SECONDS))
