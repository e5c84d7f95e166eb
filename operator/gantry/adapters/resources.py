"""Gantry's objects and the workloads it touches, read and written through `Kube`.

Translates between API objects and the domain's plain data; decides nothing itself.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from gantry.adapters.kube import (
    GROUP,
    VERSION,
    ApiError,
    Kube,
    core_path,
    custom_path,
    job_path,
    label_selector,
    workload_path,
)
from gantry.domain import gates, ledger, locks
from gantry.domain.model import ObservedJob, ObservedLock, Production
from gantry.domain.phases import FINISHED_LABEL, GAVE_UP
from gantry.domain.pipeline import Pipeline, Target, parse_pipeline
from gantry.domain.problems import Problem
from gantry.domain.reasons import Reason
from gantry.domain.timefmt import to_rfc3339
from gantry.domain.versions import Reservation
from gantry.domain.workloads import LABEL_PIPELINE, ObservedWorkload, Rollout, WorkloadRef

log = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 300
# What the production ledger holds (a ProductionLedger's status, mirrored in its Pipeline's).
LEDGER_KEYS = ("production", "quarantine", "quarantineLog", "tickets")
CONFLICT_RETRIES = 12
DRIVER_WANTED = "gantry.dev/driver-wanted"  # touched to make Kopf start a Release's driver again

T = TypeVar("T")
# (the lock as read, its lease, this operator's sightings of its renewals) -> (next state, result)
LockUpdate = Callable[[locks.LockState, timedelta, locks.Sightings], tuple[locks.LockState, Any]]


class Resources:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        # Per EnvironmentLock: when this operator first saw each claimant's current renewTime
        # (domain.locks.sight). Memory only on purpose: losing it makes a lease last longer, never shorter.
        self._sightings: dict[str, locks.Sightings] = {}

    # --- Releases and Pipelines ------------------------------------------------------------------

    def get_release(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.kube.get(custom_path("releases", namespace, name))

    def mark_finished(self, namespace: str, name: str, finished: bool) -> None:
        """Label a final Release (None removes the label: it is in flight again)."""
        labels = {FINISHED_LABEL: "true" if finished else None}
        try:
            self.kube.merge_patch(custom_path("releases", namespace, name), {"metadata": {"labels": labels}})
        except ApiError as error:
            if not error.not_found:  # deleted meanwhile: nothing left to label
                raise

    def touch_release(self, namespace: str, name: str) -> None:
        """An annotation with the time: a watch event on the Release, and nothing else."""
        now = to_rfc3339(datetime.now(UTC))
        patch = {"metadata": {"annotations": {DRIVER_WANTED: now}}}
        try:
            self.kube.merge_patch(custom_path("releases", namespace, name), patch)
        except ApiError as error:
            if not error.not_found:
                raise

    def patch_release_status(
        self, namespace: str, name: str, resource_version: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch status; the resourceVersion makes a stale writer fail with 409 instead of winning."""
        patch = {"metadata": {"resourceVersion": resource_version}, "status": dict(status)}
        return self.kube.merge_patch(custom_path("releases", namespace, name, "status"), patch)

    def reserved_versions(self, namespace: str, application: str) -> list[Reservation]:
        """The versions the application's Releases carry in flight, before their tag exists: each
        is taken (a Release that failed or gave way before its tag gives its version up)."""
        out = []
        for body in self.kube.list_items(custom_path("releases", namespace)):
            spec, status = body.get("spec") or {}, body.get("status") or {}
            tag = status.get("tag") or {}
            if spec.get("application") != application or tag.get("pushed") or status.get("phase") in GAVE_UP:
                continue
            revision = tag.get("revision") or (spec.get("source") or {}).get("revision")
            if revision and (
                status.get("version") or not status.get("phase") or status["phase"] == "Pending"
            ):
                name = body["metadata"]["name"]
                out.append(Reservation(name, str(status.get("version") or ""), str(revision)))
        return out

    def get_pipeline(self, namespace: str, name: str) -> Pipeline | Problem:
        return self.get_pipeline_state(namespace, name)[0]

    def get_pipeline_state(
        self, namespace: str, name: str, with_ledger: bool = True
    ) -> tuple[Pipeline | Problem, Production]:
        """The Pipeline and its application's production ledger (which outlives the Pipeline);
        `with_ledger=False` reads the Pipeline's mirror of it instead, one request fewer."""
        body = self.kube.get(custom_path("pipelines", namespace, name))
        pipeline_status = (body or {}).get("status") or {}
        status = self.ledger_status(namespace, name, pipeline_status) if with_ledger else pipeline_status
        production = Production(
            history=tuple(ledger.entries(status)),
            quarantine={q["digest"]: q for q in status.get("quarantine") or ()},
        )
        if body is None:
            return self._missing_pipeline(namespace, name), production
        return parse_pipeline(name, body.get("spec") or {}), production

    def ledger_status(
        self, namespace: str, name: str, pipeline_status: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The ProductionLedger's status; before one exists, what an older Gantry kept in the
        Pipeline's status (read once more, then moved over by the first write)."""
        body = self.kube.get(custom_path("productionledgers", namespace, name))
        if body is not None:
            return dict(body.get("status") or {})
        return {k: v for k, v in (pipeline_status or {}).items() if k in LEDGER_KEYS}

    def update_ledger(
        self, namespace: str, name: str, change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> None:
        """Read-modify-write the production ledger (its own object, named after the Pipeline, so a
        Pipeline deleted and applied again keeps its history and quarantine), then mirror it into
        the Pipeline's status for `kubectl get pipelines` and the plugin."""
        path = custom_path("productionledgers", namespace, name)
        written: list[dict[str, Any]] = []

        def attempt() -> None:
            body = self.kube.get(path) or self._create_ledger(namespace, name)
            status = dict(body.get("status") or {}) or self._ledger_in_pipeline(namespace, name)
            patch = change(status)
            if all(status.get(k) == v for k, v in patch.items()) and body.get("status"):
                written[:] = [status]
                return
            new = {**status, **patch, "revision": int(status.get("revision") or 0) + 1}
            self.kube.merge_patch(
                f"{path}/status",
                {"metadata": {"resourceVersion": body["metadata"]["resourceVersion"]}, "status": new},
            )
            written[:] = [new]

        retry_on_conflict(f"ProductionLedger {namespace}/{name}", attempt)
        if written:
            self.mirror_ledger(namespace, name, written[0])

    def mirror_ledger(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Copy the ledger into the Pipeline's status unless the Pipeline already shows a newer
        revision (two writers mirroring out of order never leave it stale)."""
        path = custom_path("pipelines", namespace, name)
        revision = int(status.get("revision") or 0)

        def attempt() -> None:
            body = self.kube.get(path)
            if body is None or int((body.get("status") or {}).get("ledgerRevision") or 0) >= revision:
                return
            mirrored = {k: status.get(k) for k in LEDGER_KEYS} | {"ledgerRevision": revision}
            patch = {"metadata": {"resourceVersion": body["metadata"]["resourceVersion"]}, "status": mirrored}
            self.kube.merge_patch(f"{path}/status", patch)

        retry_on_conflict(f"Pipeline {namespace}/{name}", attempt)

    def _ledger_in_pipeline(self, namespace: str, name: str) -> dict[str, Any]:
        """The Pipeline's mirror, for a ProductionLedger that is new: an older Gantry kept the
        ledger there, or someone deleted the ledger object. Its revision goes on from the mirror's,
        so the mirror (which only takes a newer revision) keeps following the ledger."""
        status = (self.kube.get(custom_path("pipelines", namespace, name)) or {}).get("status") or {}
        kept = {k: v for k, v in status.items() if k in LEDGER_KEYS}
        return kept | {"revision": int(status.get("ledgerRevision") or 0)} if kept else {}

    def _create_ledger(self, namespace: str, name: str) -> dict[str, Any]:
        return self._create_managed("ProductionLedger", "productionledgers", namespace, name)

    def record_production(self, namespace: str, name: str, entry: Mapping[str, Any]) -> None:
        def change(status: dict[str, Any]) -> dict[str, Any]:
            return ledger_patch(ledger.record(ledger.entries(status), entry))

        self.update_ledger(namespace, name, change)

    def claim_production(
        self, namespace: str, name: str, entry: Mapping[str, Any], alive: Callable[[Mapping[str, Any]], bool]
    ) -> tuple[str, str] | None:
        """Record `entry` as production's one Release in flight, in the same optimistic-concurrency
        write that checks no other is (two racing claims: one wins, the other re-reads and is told).
        None when claimed; else (conflict | refused, why). An in-flight entry whose Release is gone
        is marked Abandoned: a deleted Release must not hold production for ever."""
        refused: list[tuple[str, str]] = []

        def change(status: dict[str, Any]) -> dict[str, Any]:
            refused.clear()
            history = ledger.entries(status)
            other = ledger.in_flight(history, str(entry["uid"]))
            if other is not None and alive(other):
                refused.append(("conflict", gates.busy_message(other)))
                return {}
            if other is not None:
                history = ledger.record(history, {**other, "result": ledger.Result.ABANDONED})
            why = gates.version_refusal(str(entry.get("version") or ""), str(entry["uid"]), history)
            if why is not None:
                refused.append(("refused", why))
                return {}
            return ledger_patch(ledger.record(history, entry))

        self.update_ledger(namespace, name, change)
        return refused[0] if refused else None

    def quarantine(
        self,
        namespace: str,
        name: str,
        digests: tuple[str, ...],
        release: str,
        version: str,
        reason: str,
        at: str,
    ) -> None:
        def change(status: dict[str, Any]) -> dict[str, Any]:
            entries = ledger.quarantine(
                list(status.get("quarantine") or []), digests, release, version, reason, at
            )
            if entries == list(status.get("quarantine") or []):
                return {}
            logged = list(status.get("quarantineLog") or [])
            for digest in digests:
                logged = ledger.log(
                    logged,
                    {
                        "digest": digest,
                        "action": "Quarantined",
                        "release": release,
                        "by": "gantry",
                        "at": at,
                        "reason": reason,
                    },
                )
            return {"quarantine": entries, "quarantineLog": logged}

        self.update_ledger(namespace, name, change)

    def lift_quarantine(
        self, namespace: str, name: str, digests: set[str], by: str, reason: str, at: str
    ) -> int:
        lifted: list[str] = []

        def change(status: dict[str, Any]) -> dict[str, Any]:
            entries = list(status.get("quarantine") or [])
            lifted[:] = [e["digest"] for e in entries if e["digest"] in digests]
            if not lifted:
                return {}
            logged = list(status.get("quarantineLog") or [])
            for digest in lifted:
                logged = ledger.log(
                    logged, {"digest": digest, "action": "Lifted", "by": by, "at": at, "reason": reason}
                )
            return {"quarantine": ledger.lift(entries, digests), "quarantineLog": logged}

        self.update_ledger(namespace, name, change)
        return len(lifted)

    def append_decision(
        self, namespace: str, name: str, decision: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Copy a ReleaseDecision into the Release's status (once, by decision name)."""
        path = custom_path("releases", namespace, name)

        def attempt() -> dict[str, Any] | None:
            body = self.kube.get(path)
            if body is None:
                return None
            decisions = list((body.get("status") or {}).get("decisions") or [])
            if any(d.get("name") == decision.get("name") for d in decisions):
                return body
            patch = {
                "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
                "status": {"decisions": [*decisions, dict(decision)]},
            }
            return self.kube.merge_patch(f"{path}/status", patch)

        return retry_on_conflict(f"Release {namespace}/{name}", attempt)

    def alive(self, entry: Mapping[str, Any]) -> bool:
        """Does the Release of this entry still exist (the same object, by uid) and is it not being
        deleted? (Kopf's own finalizer keeps a deleted Release around while its timer stops.)"""
        namespace, _, name = str(entry.get("release")).partition("/")
        body = self.get_release(namespace, name)
        meta = (body or {}).get("metadata") or {}
        return body is not None and meta.get("uid") == entry.get("uid") and not meta.get("deletionTimestamp")

    def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        body = self.kube.get(core_path("secrets", namespace, name))
        return dict(body.get("data") or {}) if body else None

    def _missing_pipeline(self, namespace: str, name: str) -> Problem:
        return Problem(
            Reason.PIPELINE_NOT_FOUND,
            "spec.pipeline",
            f"Pipeline {name!r} does not exist in namespace {namespace!r}",
            f"create it (kubectl apply -f pipeline.yaml -n {namespace}) or set spec.pipeline "
            "to an existing Pipeline",
        )

    # --- workloads -------------------------------------------------------------------------------

    def find_workloads(self, target: Target) -> tuple[ObservedWorkload, ...]:
        if target.name:
            body = self.kube.get(workload_path(target.kind, target.namespace, target.name))
            bodies = [body] if body is not None else []
        else:
            bodies = self.kube.list_items(
                workload_path(target.kind, target.namespace),
                label_selector=label_selector(target.match_labels),
            )
        return tuple(observe_workload(target.kind, b, target.cluster) for b in bodies)

    def get_workload(self, ref: WorkloadRef) -> ObservedWorkload | None:
        body = self.kube.get(workload_path(ref.kind, ref.namespace, ref.name))
        return observe_workload(ref.kind, body, ref.cluster) if body is not None else None

    def set_images(self, ref: WorkloadRef, images: Mapping[str, str], pipeline: str = "") -> bool:
        """Set only the named containers' images; True if anything had to change.

        A JSON patch with a `test` on each container's name: if someone reordered the containers
        since we read them, the patch fails (422) instead of re-pinning the wrong container. The
        same patch labels the workload with its Pipeline, so the operator's watch (which selects on
        that label) sees its rollout finish.
        """
        path = workload_path(ref.kind, ref.namespace, ref.name)
        body = self.kube.get(path)
        if body is None:
            raise ApiError(404, "NotFound", f"{ref} does not exist")
        containers = body["spec"]["template"]["spec"]["containers"]
        ops: list[dict[str, Any]] = []
        for index, container in enumerate(containers):
            wanted = images.get(container["name"])
            if wanted is not None and container.get("image") != wanted:
                where = f"/spec/template/spec/containers/{index}"
                ops.append({"op": "test", "path": f"{where}/name", "value": container["name"]})
                ops.append({"op": "replace", "path": f"{where}/image", "value": wanted})
        missing = set(images) - {c["name"] for c in containers}
        if missing:
            raise ApiError(422, "Invalid", f"{ref} has no container(s) {', '.join(sorted(missing))}")
        changed = bool(ops)
        labels = body["metadata"].get("labels")
        if pipeline and (labels or {}).get(LABEL_PIPELINE) != pipeline:
            if labels is None:
                ops.append({"op": "add", "path": "/metadata/labels", "value": {}})
            ops.append(
                {
                    "op": "add",
                    "path": "/metadata/labels/" + LABEL_PIPELINE.replace("/", "~1"),
                    "value": pipeline,
                }
            )
        if not ops:
            return False
        self.kube.json_patch(path, ops)
        return changed

    # --- Jobs ------------------------------------------------------------------------------------

    def get_job(self, namespace: str, name: str) -> ObservedJob | None:
        body = self.kube.get(job_path(namespace, name))
        if body is None:
            return None
        job = observe_job(body)
        if body["metadata"].get("deletionTimestamp") and not job.finished:
            # Being deleted: a Job deleted through the API without a propagation policy keeps an
            # `orphan` finalizer until the garbage collector has let go of its Pods (on a busy
            # cluster a while; without one, for ever). Its test will never report: it is gone.
            return None
        if job.finished and not job.succeeded:
            why = self.exit_codes(namespace, name)  # the Job says only "backoff limit reached"
            if why:
                job = replace(job, message=f"{why} ({job.message})" if job.message else why)
        return job

    def exit_codes(self, namespace: str, job: str) -> str:
        """How the Job's containers ended, from its Pods (where Kubernetes keeps the exit code)."""
        try:
            path = core_path("pods", namespace)
            pods = self.kube.list_items(path, label_selector=f"job-name={job}")
        except ApiError as error:
            if error.transient:
                raise
            return ""  # no right to list Pods: the Job's own message has to do
        ended = [
            (c["name"], c["state"]["terminated"])
            for pod in pods
            for c in (pod.get("status") or {}).get("containerStatuses") or ()
            if (c.get("state") or {}).get("terminated", {}).get("exitCode")
        ]
        return "; ".join(
            f"container {name} exited with code {t['exitCode']}"
            + (f" ({t['reason']})" if t.get("reason") else "")
            for name, t in ended
        )

    def create_job(self, manifest: Mapping[str, Any]) -> None:
        namespace = manifest["metadata"]["namespace"]
        try:
            self.kube.create(job_path(namespace), manifest)
        except ApiError as error:
            # AlreadyExists: created by an earlier attempt of this very tick. Any other 409 is no
            # proof the Job exists: raise, and the tick is retried.
            if not (error.conflict and error.reason == "AlreadyExists"):
                raise

    def delete_job(self, namespace: str, name: str) -> None:
        """Stop a test Job and its Pods (background propagation)."""
        self.kube.delete(job_path(namespace, name))

    # --- EnvironmentLocks ------------------------------------------------------------------------

    def freeze_of(self, namespace: str, environment: str) -> locks.Freeze | None:
        body = self.kube.get(custom_path("environmentlocks", namespace, environment))
        return locks.from_object(body).freeze if body is not None else None

    def observe_lock(
        self, namespace: str, environment: str, claimant: locks.Claimant, now: datetime, hotfix: bool = False
    ) -> ObservedLock:
        path = custom_path("environmentlocks", namespace, environment)
        body = self.kube.get(path)
        if body is None:
            return ObservedLock(held=False, lost="the EnvironmentLock object was deleted")
        lease = lease_of(body)
        state = locks.from_object(body)
        state = locks.expire(state, now, lease, self._sight(path, state, now))
        if state.holder is not None and state.holder.claimant.uid == claimant.uid:
            due = locks.renewal_due(state.holder, now, lease)
            return ObservedLock(held=True, renewal_due=due, lease_seconds=int(lease.total_seconds()))
        position = next((i for i, w in enumerate(state.queue, 1) if w.claimant.uid == claimant.uid), None)
        holder = state.holder.claimant.release if state.holder else None
        freeze = state.freeze if not hotfix else None
        return ObservedLock(
            held=False,
            position=position,
            holder=holder,
            preempted=locks.was_preempted(state, claimant),
            frozen_by=freeze.by if freeze else None,
            frozen_by_hand=freeze is not None and freeze.by_hand,
            frozen_reason=freeze.reason if freeze else "",
            lost=locks.why_lost(state, claimant, lease),
            lease_seconds=int(lease.total_seconds()),
        )

    def update_lock(self, namespace: str, environment: str, change: LockUpdate, now: datetime) -> Any:
        """Read-decide-write the lock's status until no one else wrote in between (409 = try again)."""
        path = custom_path("environmentlocks", namespace, environment)

        def attempt() -> Any:
            body = self.kube.get(path) or self._create_lock(namespace, environment)
            state = locks.from_object(body)
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
        """A Release was deleted: give back every lock it held or queued for, at once."""
        meta = body["metadata"]
        environments = {
            r["environment"] for r in (body.get("status") or {}).get("stages") or () if r.get("lock")
        }
        for environment in sorted(environments):
            path = custom_path("environmentlocks", meta["namespace"], environment)
            if self.kube.get(path) is None:
                continue
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

    def _create_lock(self, namespace: str, environment: str) -> dict[str, Any]:
        return self._create_managed("EnvironmentLock", "environmentlocks", namespace, environment)

    def _create_managed(self, kind: str, plural: str, namespace: str, name: str) -> dict[str, Any]:
        """Create one of Gantry's own objects, or take the one a racing writer just created."""
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind,
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": "gantry"},
            },
            "spec": {},
        }
        try:
            return self.kube.create(custom_path(plural, namespace), body)
        except ApiError as error:
            if not error.conflict:
                raise
            existing = self.kube.get(custom_path(plural, namespace, name))
            if existing is None:
                raise
            return existing


def ledger_patch(history: list[dict[str, Any]]) -> dict[str, Any]:
    """status.production: the history and, for `kubectl get pipelines`, what production runs."""
    now = ledger.current(history)
    summary = (
        {"release": now.get("release"), "version": now.get("version"), "since": now.get("deployedAt")}
        if now
        else {}
    )
    return {"production": {**summary, "history": history}}


def retry_on_conflict(what: str, attempt: Callable[[], T]) -> T:
    """Run a read-decide-write until no one else wrote in between (409 = read and decide again),
    with jitter so racing peers spread out."""
    for number in range(CONFLICT_RETRIES):
        try:
            return attempt()
        except ApiError as error:
            if not error.conflict:
                raise
            log.debug("%s changed under us (attempt %d)", what, number)
            time.sleep(random.uniform(0, 0.05 * (number + 1)))
    raise ApiError(409, "Conflict", f"{what} kept changing; will retry")


def _comparable(status: Mapping[str, Any] | None) -> dict[str, Any]:
    """A stored status in the shape to_status writes, so an unchanged lock is not rewritten."""
    return locks.to_status(locks.from_status(status)) if status else {}


def lease_of(body: Mapping[str, Any]) -> timedelta:
    return timedelta(seconds=int((body.get("spec") or {}).get("leaseSeconds") or DEFAULT_LEASE_SECONDS))


def observe_workload(kind: str, body: Mapping[str, Any], cluster: str = "") -> ObservedWorkload:
    meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
    ref = WorkloadRef(kind, meta["namespace"], meta["name"], cluster)
    containers = {c["name"]: c.get("image", "") for c in spec["template"]["spec"]["containers"]}
    managers = image_managers(meta.get("managedFields") or (), containers)
    return ObservedWorkload(ref, containers, rollout_of(kind, meta, spec, status), managers)


def image_managers(entries: Iterable[Mapping[str, Any]], containers: Iterable[str]) -> dict[str, str]:
    """Which field manager owns each container's image (server-side field ownership): the one that
    set it last. A real API server always says; without managedFields, nobody is named."""
    owners: dict[str, str] = {}
    for entry in entries:
        template = ((entry.get("fieldsV1") or {}).get("f:spec") or {}).get("f:template") or {}
        listed = ((template.get("f:spec") or {}).get("f:containers")) or {}
        for container in containers:
            if "f:image" in (listed.get(f'k:{{"name":"{container}"}}') or {}):
                owners[container] = str(entry.get("manager") or "unknown")
    return owners


def rollout_of(
    kind: str, meta: Mapping[str, Any], spec: Mapping[str, Any], status: Mapping[str, Any]
) -> Rollout:
    """Is the newest spec fully rolled out? The same checks `kubectl rollout status` makes."""
    wanted = int(spec.get("replicas", 1))
    observed = int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    if kind == "StatefulSet":
        ready = int(status.get("readyReplicas") or 0)
        same_revision = status.get("currentRevision") == status.get("updateRevision")
        done = observed and updated >= wanted and ready >= wanted and (same_revision or updated == wanted)
        return Rollout(done, f"{updated}/{wanted} updated, {ready} ready")
    available = int(status.get("availableReplicas") or 0)
    done = observed and updated >= wanted and available >= wanted and total <= wanted
    detail = f"{updated}/{wanted} updated, {available} available"
    if spec.get("paused") and not done:
        detail = f"paused ({detail}): nothing rolls out until someone runs kubectl rollout resume"
    elif not observed:
        detail = "controller has not seen the new spec yet; " + detail
    elif total > wanted:
        detail += f", {total - updated} old replica(s) terminating"
    return Rollout(done, detail, idle=wanted == 0)


def observe_job(body: Mapping[str, Any]) -> ObservedJob:
    name = body["metadata"]["name"]
    for condition in (body.get("status") or {}).get("conditions") or ():
        if condition.get("status") != "True":
            continue
        if condition.get("type") in ("Complete", "SuccessCriteriaMet"):
            return ObservedJob(name, finished=True, succeeded=True)
        if condition.get("type") == "Failed":
            message = condition.get("message") or condition.get("reason") or ""
            return ObservedJob(name, finished=True, succeeded=False, message=message)
    return ObservedJob(name, finished=False, succeeded=False)
