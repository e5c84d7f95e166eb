"""The operator's own Prometheus metrics (prometheus_client).

`gantry_release_deployed_timestamp_seconds` is derived from the Pipelines' production ledgers as
the operator last saw them, not from memory of what it did, so it survives restarts and gives
dashboards one annotation per version that became active.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gantry.domain.flow.model import Event


class DeployedCollector(Collector):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pipelines: dict[tuple[str, str], tuple[str, list[Mapping[str, Any]]]] = {}

    def update(
        self, namespace: str, name: str, application: str, history: Sequence[Mapping[str, Any]]
    ) -> None:
        with self._lock:
            self._pipelines[(namespace, name)] = (application, list(history))

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._pipelines.pop((namespace, name), None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "gantry_release_deployed_timestamp_seconds",
            "When a version became active in an environment (Unix time), for dashboard annotations.",
            labels=["namespace", "application", "environment", "version", "release", "result"],
        )
        with self._lock:
            pipelines = list(self._pipelines.items())
        for (namespace, _), (application, history) in pipelines:
            for item in history:
                deployed = item.get("deployedAt")
                if not deployed:
                    continue
                moment = datetime.fromisoformat(str(deployed).replace("Z", "+00:00")).timestamp()
                labels = [
                    namespace,
                    application,
                    "production",
                    str(item.get("version", "")),
                    str(item.get("release", "")),
                    str(item.get("result", "")),
                ]
                family.add_metric(labels, moment)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.deployed = DeployedCollector()
        self.registry.register(self.deployed)
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
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
