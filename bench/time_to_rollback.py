"""Benchmark: time from an application starting to fail to production being re-pinned.

Real operator (default reconcile interval: the bake wakes on its own evaluation schedule),
emulated API server, real Prometheus scraping a metrics app. Each run releases a healthy
version, then a newer one; while the newer one bakes, its 5xx ratio jumps to 50 %. The clock
starts at that jump and stops when production's Deployment runs the first version's digests
again. Each run is split into its lags (from the Release's own evaluation record): until the
first breaching evaluation (scrape + rate window + waiting for the next evaluation), the rest
of the breach streak, and from the last evaluation to the re-pin. Prints each run, the median
and the max, beside the budget.

    .venv/bin/python -m bench.time_to_rollback [--runs 5]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.e2e import manifests as m
from tests.harness.cluster import Cluster, cluster_for_tests
from tests.harness.observability import binaries_missing, observability
from tests.harness.operator import OperatorThread, RecordingAlerter

from gantry.settings import Config

SCRAPE = 1  # seconds, Prometheus scrape interval
INTERVAL = 1  # seconds between bake evaluations
BREACHES = 2  # consecutive breaches before acting
WINDOW = "5s"  # the rate() window in the queries


def baked_once(cluster: Cluster, namespace: str, name: str) -> bool:
    runs = (cluster.release(namespace, name).get("status") or {}).get("stages") or [{}]
    return any(e["verdict"] == "Healthy" for e in (runs[-1].get("analysis") or {}).get("evaluations", []))


def breaches(cluster: Cluster, namespace: str, name: str, since: float) -> list[float]:
    """Wall-clock times of the breaching evaluations after `since` (seconds since the epoch)."""
    runs = (cluster.release(namespace, name).get("status") or {}).get("stages") or []
    evaluations = [e for run in runs for e in (run.get("analysis") or {}).get("evaluations") or []]
    times = [datetime.fromisoformat(str(e["time"]).replace("Z", "+00:00")).timestamp() for e in evaluations]
    return [t for t, e in zip(times, evaluations, strict=True) if e["verdict"] == "Breach" and t >= since]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    if binaries_missing():
        print(f"needs {binaries_missing()}: apt-get install -y prometheus prometheus-alertmanager")
        return 2
    logging.basicConfig(level=logging.ERROR)
    namespace, prod = "team", "prod-bench"
    timings: list[float] = []
    lags: list[tuple[float, float, float]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        cluster_for_tests(Path(tmp)) as cluster,
        observability(Path(tmp) / "obs") as (app, prometheus, _),
    ):
        os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
        config = Config(metrics_port=0)  # the defaults: nothing here waits for a 5 s tick
        operator = OperatorThread(config, RecordingAlerter()).start()
        try:
            for workload in m.workloads(namespace) + m.workloads(prod):
                cluster.apply(workload)
            cluster.apply(
                m.production_pipeline(
                    namespace,
                    prod,
                    prometheus.url,
                    window=WINDOW,
                    intervalSeconds=INTERVAL,
                    consecutiveBreaches=BREACHES,
                    bakeSeconds=600,
                )
            )
            for run in range(args.runs):
                app.set(prod, 20, 0.0)
                time.sleep(6)  # let the rate window forget earlier errors
                good, bad = f"good-{run}", f"bad-{run}"
                # Production only moves forward: every Release is newer than the one before it.
                good_version, bad_version = f"v1.{2 * run}.0", f"v1.{2 * run + 1}.0"
                pipeline = cluster.must_get("Pipeline", namespace, "shop")
                pipeline["spec"]["stages"][1]["analysis"]["bakeSeconds"] = 3
                cluster.apply(pipeline)
                cluster.apply(m.release(namespace, good, good, version=good_version))
                cluster.wait_for_phase(namespace, good, "Released", timeout=120)
                pipeline = cluster.must_get("Pipeline", namespace, "shop")
                pipeline["spec"]["stages"][1]["analysis"]["bakeSeconds"] = 600
                cluster.apply(pipeline)
                cluster.apply(m.release(namespace, bad, bad, version=bad_version))
                cluster.wait_for(
                    "the bad version to bake",
                    lambda name=bad: baked_once(cluster, namespace, name),
                    timeout=120,
                )
                started, wall = time.monotonic(), datetime.now(UTC).timestamp()
                app.set(prod, 20, 0.5)
                target = m.image("web", good)
                cluster.wait_for(
                    "production re-pinned",
                    lambda want=target: cluster.images("Deployment", prod, "web")["web"] == want,
                    timeout=120,
                    interval=0.02,
                )
                elapsed = time.monotonic() - started
                timings.append(elapsed)
                cluster.wait_for_phase(namespace, bad, "RolledBack", timeout=60)
                # The status records the streak's last evaluation after the re-pin (effects first).
                seen = breaches(cluster, namespace, bad, wall)[:BREACHES]
                first, last = (seen[0] - wall, seen[-1] - wall) if seen else (float("nan"),) * 2
                lags.append((first, last - first, elapsed - last))
                print(
                    f"run {run + 1}: {elapsed:.2f}s from errors starting to production re-pinned "
                    f"(first breach {first:.2f}s, rest of the streak {last - first:.2f}s, "
                    f"re-pin {elapsed - last:.2f}s after the last evaluation)",
                    flush=True,
                )
        finally:
            operator.stop()
    streak = (BREACHES - 1) * INTERVAL
    budget = streak + INTERVAL + SCRAPE
    print(
        f"\nscrape {SCRAPE}s, evaluation interval {INTERVAL}s, {BREACHES} consecutive breaches, "
        f"rate window {WINDOW}, reconcile interval {config.reconcile_interval:g}s"
    )
    median = statistics.median
    print(
        "lag budget, median: first breaching evaluation "
        f"{median(x[0] for x in lags):.2f}s "
        f"(scrape <= {SCRAPE}s + rate window + next evaluation <= {INTERVAL}s), "
        f"rest of the streak {median(x[1] for x in lags):.2f}s ({streak}s), "
        f"re-pin {median(x[2] for x in lags) * 1000:.0f} ms after the last evaluation"
    )
    print(
        f"{len(timings)} runs: median {median(timings):.2f}s, max {max(timings):.2f}s "
        f"(target: the streak {streak}s + 1 evaluation interval + 1 scrape = {budget}s, plus the rate "
        f"window's own lag: a {WINDOW} rate reaches the 5% threshold after a fraction of it)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
