"""Gauges read from the records the operator watches, not counted as things happen: the
Pipelines' production ledgers, the Releases in flight and the EnvironmentLocks. Each is rebuilt
from the watch after a restart, so dashboards, alerts and the DORA measures survive one.

The collector keeps plain data per object and makes the families at scrape time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gantry.adapters.objects.locks import lease_of
from gantry.domain.inputs.analysis import threshold_of
from gantry.domain.records import dora, locks
from gantry.domain.vocabulary.timefmt import read_rfc3339

PRODUCTION = "production"


@dataclass(frozen=True)
class Flight:
    """A Release in flight, as its status says: its phase since when, and its stages' deploys."""

    application: str
    phase: str
    since: float | None
    deploys: tuple[tuple[str, str, float], ...]  # (environment, version, deployed at)
    bake: tuple[str, float, float] | None = None  # (stage, its last error rate, the threshold)


@dataclass(frozen=True)
class Held:
    """An EnvironmentLock: who holds it, since when, until when its lease runs, and its queue."""

    holder: str
    since: float | None
    lease_expiry: float | None
    queue: int


class RecordsCollector(Collector):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ledgers: dict[tuple[str, str], tuple[str, list[Mapping[str, Any]]]] = {}
        self._flights: dict[tuple[str, str], Flight] = {}
        self._locks: dict[tuple[str, str], Held] = {}

    # --- what the watches feed (handlers.pipelines, handlers.releases, handlers.watches) ---------

    def ledger(
        self, namespace: str, name: str, application: str, history: Sequence[Mapping[str, Any]]
    ) -> None:
        with self._lock:
            self._ledgers[(namespace, name)] = (application, list(history))

    def forget_ledger(self, namespace: str, name: str) -> None:
        with self._lock:
            self._ledgers.pop((namespace, name), None)

    def release(self, namespace: str, name: str, body: Mapping[str, Any] | None) -> None:
        """A Release's watch event; None (deleted, or finished: out of the watch) forgets it."""
        self._keep(self._flights, (namespace, name), flight_of(body) if body is not None else None)

    def environment_lock(self, namespace: str, name: str, body: Mapping[str, Any] | None) -> None:
        self._keep(self._locks, (namespace, name), held_of(body) if body is not None else None)

    def _keep(self, table: dict[tuple[str, str], Any], key: tuple[str, str], value: Any) -> None:
        """What a watch event says of one object, kept for the scrape; None forgets it."""
        with self._lock:
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value

    # --- the scrape ------------------------------------------------------------------------------

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            ledgers, flights, held = dict(self._ledgers), dict(self._flights), dict(self._locks)
        yield self._deployed(ledgers, flights)
        yield from self._dora(ledgers)
        yield from self._in_flight(flights)
        yield from self._locks_families(held)

    def _deployed(
        self,
        ledgers: dict[tuple[str, str], tuple[str, list[Mapping[str, Any]]]],
        flights: dict[tuple[str, str], Flight],
    ) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "gantry_release_deployed_timestamp_seconds",
            "When a version became active in an environment (Unix time), for dashboard annotations: "
            "production from the ledger, other environments while their Release is in flight.",
            labels=["namespace", "application", "environment", "version", "release", "result"],
        )
        samples: dict[tuple[str, ...], float] = {}  # one sample per label set: the newest
        for (namespace, _), (application, history) in ledgers.items():
            for item in history:  # a version restored twice is one series, at its latest deploy
                moment = _seconds(item.get("deployedAt"))
                if moment is not None:
                    labels = [str(item.get(k, "")) for k in ("version", "release", "result")]
                    samples[(namespace, application, PRODUCTION, *labels)] = moment
        for (namespace, name), flight in flights.items():
            for environment, version, moment in flight.deploys:
                if environment != PRODUCTION:  # production's are the ledger's
                    at = (
                        namespace,
                        flight.application,
                        environment,
                        version,
                        f"{namespace}/{name}",
                        "InFlight",
                    )
                    samples[at] = max(moment, samples.get(at, moment))
        for key, moment in samples.items():
            family.add_metric(list(key), moment)
        return family

    def _dora(
        self, ledgers: dict[tuple[str, str], tuple[str, list[Mapping[str, Any]]]]
    ) -> Iterator[GaugeMetricFamily]:
        labels = ["namespace", "application", "environment"]
        window = f"over the ledger's last {dora.WINDOW.days} days (or its entries, if fewer)"
        families = {
            "deployments": GaugeMetricFamily(
                "gantry_dora_deployments", f"Releases deployed to production {window}.", labels=labels
            ),
            "per_day": GaugeMetricFamily(
                "gantry_dora_deployment_frequency_per_day",
                f"DORA deployment frequency: Releases deployed to production per day {window}.",
                labels=labels,
            ),
            "lead": GaugeMetricFamily(
                "gantry_dora_lead_time_seconds",
                "DORA lead time for changes: first commit (else the Release's creation) to production, "
                f"median {window}.",
                labels=labels,
            ),
            "failure": GaugeMetricFamily(
                "gantry_dora_change_failure_ratio",
                f"DORA change failure rate: rolled back or emergency Releases over those deployed {window}.",
                labels=labels,
            ),
            "restore": GaugeMetricFamily(
                "gantry_dora_time_to_restore_seconds",
                f"DORA time to restore: a guard's breach to the next deploy that stood, median {window}.",
                labels=labels,
            ),
        }
        now = datetime.now(UTC)
        for (namespace, _), (application, history) in ledgers.items():
            measured = dora.measure(history, now)
            at = [namespace, application, PRODUCTION]
            families["deployments"].add_metric(at, measured.deployments)
            families["per_day"].add_metric(at, measured.per_day)
            for key, value in (
                ("lead", measured.lead_time_seconds),
                ("failure", measured.change_failure_ratio),
                ("restore", measured.restore_seconds),
            ):
                if value is not None:  # nothing to measure yet: no sample, rather than a made-up 0
                    families[key].add_metric(at, value)
        yield from families.values()

    def _in_flight(self, flights: dict[tuple[str, str], Flight]) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "gantry_release_phase_since_timestamp_seconds",
            "When a Release in flight entered its present phase (Unix time): time() minus it is how "
            "long it has been there.",
            labels=["namespace", "release", "application", "phase"],
        )
        error = GaugeMetricFamily(
            "gantry_bake_error_ratio",
            "A Release's bake (or canary analysis): the error rate of its last evaluation.",
            labels=["namespace", "release", "application", "stage"],
        )
        threshold = GaugeMetricFamily(
            "gantry_bake_threshold_ratio",
            "A Release's bake: the error rate above which an evaluation is a breach.",
            labels=["namespace", "release", "application", "stage"],
        )
        for (namespace, name), flight in flights.items():
            if flight.since is not None:
                family.add_metric([namespace, name, flight.application, flight.phase], flight.since)
            if flight.bake is not None:
                stage, rate, limit = flight.bake
                error.add_metric([namespace, name, flight.application, stage], rate)
                threshold.add_metric([namespace, name, flight.application, stage], limit)
        yield from (family, error, threshold)

    def _locks_families(self, held: dict[tuple[str, str], Held]) -> Iterator[GaugeMetricFamily]:
        labels = ["namespace", "environment"]
        since = GaugeMetricFamily(
            "gantry_lock_held_since_timestamp_seconds",
            "When the EnvironmentLock's holder took it (Unix time).",
            labels=[*labels, "holder"],
        )
        expiry = GaugeMetricFamily(
            "gantry_lock_lease_expiry_timestamp_seconds",
            "When the holder's lease runs out unless renewed (Unix time); past: it was not renewed.",
            labels=[*labels, "holder"],
        )
        queue = GaugeMetricFamily(
            "gantry_lock_queue_length", "Releases waiting for the EnvironmentLock.", labels=labels
        )
        for (namespace, name), lock in held.items():
            queue.add_metric([namespace, name], lock.queue)
            if lock.holder:
                if lock.since is not None:
                    since.add_metric([namespace, name, lock.holder], lock.since)
                if lock.lease_expiry is not None:
                    expiry.add_metric([namespace, name, lock.holder], lock.lease_expiry)
        yield from (since, expiry, queue)


def flight_of(body: Mapping[str, Any]) -> Flight | None:
    status, spec = body.get("status") or {}, body.get("spec") or {}
    phase = str(status.get("phase") or "Pending")
    history = status.get("history") or ()
    since = None
    for entry in reversed(history):  # the start of the present phase's run of entries
        if entry.get("phase") != phase:
            break
        since = _seconds(entry.get("time"))
    if since is None:
        since = _seconds((body.get("metadata") or {}).get("creationTimestamp"))
    deploys = tuple(
        (
            str(run.get("environment") or run.get("name") or ""),
            str(status.get("version") or spec.get("version") or ""),
            moment,
        )
        for run in status.get("stages") or ()
        if (moment := _seconds(run.get("deployedAt"))) is not None
    )
    return Flight(str(spec.get("application") or ""), phase, since, deploys, bake_of(status))


def bake_of(status: Mapping[str, Any]) -> tuple[str, float, float] | None:
    """The latest stage run with bake evaluations: its last error rate against its threshold."""
    for run in reversed(status.get("stages") or ()):
        evaluations = (run.get("analysis") or {}).get("evaluations") or ()
        rates = [e["errorRate"] for e in evaluations if isinstance(e.get("errorRate"), int | float)]
        if rates:
            return str(run.get("name") or ""), float(rates[-1]), threshold_of(run)
    return None


def held_of(body: Mapping[str, Any]) -> Held:
    state = locks.from_object(body)
    if state.holder is None:
        return Held("", None, None, len(state.queue))
    renewed = state.holder.renew_time.timestamp()
    return Held(
        state.holder.claimant.release,
        state.holder.since.timestamp(),
        renewed + lease_of(body).total_seconds(),
        len(state.queue),
    )


def _seconds(text: Any) -> float | None:
    moment = read_rfc3339(text)
    return moment.timestamp() if moment is not None else None
