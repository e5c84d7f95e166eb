"""The operator's own Prometheus metrics (prometheus_client): counters of what it did, and the
gauges read from its records (adapters.records_metrics: deploys for dashboard annotations, the
DORA measures, Releases in flight, locks), which survive a restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, start_http_server

from gantry.adapters.records_metrics import RecordsCollector
from gantry.domain.flow.model import Event
from gantry.domain.vocabulary.timefmt import from_rfc3339


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.records = RecordsCollector()
        self.registry.register(self.records)
        # Always there while the operator is scraped: an alert on its absence sees a dead operator.
        Info("gantry_build", "The running Gantry.", registry=self.registry).info({"version": _version()})
        self.promotions = Counter(
            "gantry_promotions",
            "Images set in a stage (deploys).",
            ["namespace", "application", "stage"],
            registry=self.registry,
        )
        self.rollbacks = Counter(
            "gantry_rollbacks",
            "Rollbacks started.",
            ["namespace", "application", "stage", "reason"],
            registry=self.registry,
        )
        self.lock_waits = Counter(
            "gantry_lock_waits",
            "Releases that asked for an EnvironmentLock.",
            ["namespace", "environment"],
            registry=self.registry,
        )
        self.lock_wait_seconds = Histogram(
            "gantry_lock_wait_seconds",
            "Time from asking for a lock to holding it.",
            ["namespace", "environment"],
            registry=self.registry,
            buckets=(0.1, 1, 5, 30, 60, 300, 900, 1800, 3600),
        )
        self.retired = Counter(
            "gantry_releases_retired",
            "Finished Releases deleted by retention (dry_run: those a dry run would have deleted).",
            ["namespace", "application", "dry_run"],
            registry=self.registry,
        )
        self.reconcile_errors = Counter(
            "gantry_reconcile_errors", "Reconcile attempts that raised.", ["kind"], registry=self.registry
        )

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        start_http_server(port, addr=address, registry=self.registry)

    def observe_event(
        self, namespace: str, application: str, stage: str, event: Event, run: Mapping[str, Any]
    ) -> None:
        if event.reason == "Deployed":
            self.promotions.labels(namespace, application, stage).inc()
        elif event.reason == "RollingBack":
            self.rollbacks.labels(namespace, application, stage, str(run.get("reason", ""))).inc()
        elif event.reason == "LockRequested":
            self.lock_waits.labels(namespace, str(run.get("environment", stage))).inc()
        elif event.reason == "LockAcquired" and run.get("startedAt") and run.get("lockAcquiredAt"):
            waited = _seconds(run["lockAcquiredAt"]) - _seconds(run["startedAt"])
            self.lock_wait_seconds.labels(namespace, str(run.get("environment", stage))).observe(
                max(waited, 0)
            )


def _seconds(text: str) -> float:
    return from_rfc3339(text).timestamp()


def _version() -> str:
    try:
        return metadata.version("gantry-release-operator")
    except metadata.PackageNotFoundError:  # run from a source tree without installing
        return "unknown"
