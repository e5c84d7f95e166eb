"""The production ledger: a ProductionLedger per application (named after its Pipeline, so it
outlives it), mirrored into the Pipeline's status; history, claims and quarantine."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gantry.adapters.kube import custom_path
from gantry.adapters.objects.store import Store, retry_on_conflict
from gantry.domain.flow import gates
from gantry.domain.records import ledger

# What the production ledger holds (a ProductionLedger's status, mirrored in its Pipeline's).
LEDGER_KEYS = ("production", "quarantine", "quarantineLog", "tickets")


class Ledgers(Store):
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
        return self.create_managed("ProductionLedger", "productionledgers", namespace, name)

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


def ledger_patch(history: list[dict[str, Any]]) -> dict[str, Any]:
    """status.production: the history and, for `kubectl get pipelines`, what production runs."""
    now = ledger.current(history)
    summary = (
        {"release": now.get("release"), "version": now.get("version"), "since": now.get("deployedAt")}
        if now
        else {}
    )
    return {"production": {**summary, "history": history}}
