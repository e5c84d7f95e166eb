"""Benchmark: time from an application starting to fail to production being re-pinned.

Real operator, emulated API server, real Prometheus scraping a metrics app. Each run releases a
healthy version, then a second one; while the second bakes, its 5xx ratio jumps to 50 %. The
clock starts at that jump and stops when production's Deployment runs the first version's
digests again. Prints each run, the median and the max, beside the configured intervals.

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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if binaries_missing():
        print(f"needs {binaries_missing()}: apt-get install -y prometheus prometheus-alertmanager")
        return 2
    logging.basicConfig(level=logging.ERROR)
    namespace, prod = "team", "prod-bench"
    timings: list[float] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        cluster_for_tests(Path(tmp)) as cluster,
        observability(Path(tmp) / "obs") as (app, prometheus, _),
    ):
        os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
        config = Config(reconcile_interval=0.1, waiting_interval=0.2, metrics_port=0)
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
                pipeline = cluster.must_get("Pipeline", namespace, "shop")
                pipeline["spec"]["stages"][1]["analysis"]["bakeSeconds"] = 3
                cluster.apply(pipeline)
                cluster.apply(m.release(namespace, good, good))
                cluster.wait_for_phase(namespace, good, "Released", timeout=120)
                pipeline = cluster.must_get("Pipeline", namespace, "shop")
                pipeline["spec"]["stages"][1]["analysis"]["bakeSeconds"] = 600
                cluster.apply(pipeline)
                cluster.apply(m.release(namespace, bad, bad))
                cluster.wait_for(
                    "the bad version to bake",
                    lambda name=bad: baked_once(cluster, namespace, name),
                    timeout=120,
                )
                started = time.monotonic()
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
                print(
                    f"run {run + 1}: {elapsed:.2f}s from errors starting to production re-pinned", flush=True
                )
                cluster.wait_for_phase(namespace, bad, "RolledBack", timeout=60)
        finally:
            operator.stop()
    budget = 2 * INTERVAL + SCRAPE
    print(
        f"\nscrape {SCRAPE}s, evaluation interval {INTERVAL}s, {BREACHES} consecutive breaches, "
        f"rate window {WINDOW}"
    )
    print(
        f"{len(timings)} runs: median {statistics.median(timings):.2f}s, max {max(timings):.2f}s "
        f"(target: 2 evaluation intervals + 1 scrape = {budget}s; the {WINDOW} rate window adds its own lag)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
