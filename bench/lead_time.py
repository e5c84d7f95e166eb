"""Benchmark: what Gantry adds to a stage, at default settings, for 1, 3 and 5 stages.

A Release goes through a Pipeline of N locked, tested stages (each its own Deployment and
EnvironmentLock). The harness imposes the physical floor: the stand-in controller finishes a
rollout `delay` seconds after the spec changes and ends a test Job `delay` seconds after it is
created, so each stage costs at least 2 x delay. Overhead per stage is
(create -> Verified - N x floor) / N: Gantry's own time (reconciles, lock, patches, waiting).
The operator runs as its own process as the chart deploys it (default settings: INFO logs, the
5 s reconcile interval); a Gantry that waits for ticks pays up to that per wait, one that reacts
to watch events pays milliseconds. Each run is the first Release of a Pipeline applied 0.5 s
before it (its EnvironmentLocks made by then, as in real use).

    .venv/bin/python -m bench.lead_time [--stages 1,3,5] [--runs 3] [--delay 0.05]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.harness.cluster import DEPLOYMENTS, Controllers
from tests.harness.operator import OperatorProcess

from bench.scale import NAMESPACE, OLD, PIPELINES, RELEASES, Bench, deployment, digest
from gantry.settings import Config

TEST_IMAGE = "docker.io/library/busybox@sha256:" + "b" * 64


def pipeline(app: str, stages: int) -> dict[str, Any]:
    job = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "t", "image": TEST_IMAGE, "command": ["sh", "-c", "exit 0"]}]
                }
            }
        }
    }
    return {
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": app, "namespace": NAMESPACE},
        "spec": {
            "application": app,
            "stages": [
                {
                    "name": f"s{i}",
                    "environment": f"{app}-s{i}",
                    "lock": True,
                    "targets": [{"namespace": NAMESPACE, "name": f"{app}-s{i}"}],
                    "test": {"timeoutSeconds": 60, "jobTemplate": job},
                }
                for i in range(stages)
            ],
        },
    }


def one_run(bench: Bench, app: str, stages: int, version: str) -> float:
    def prepare() -> None:
        bench.server.create(PIPELINES, NAMESPACE, pipeline(app, stages))
        for i in range(stages):
            bench.server.create(DEPLOYMENTS, NAMESPACE, deployment(f"{app}-s{i}"))

    bench.call(prepare)
    time.sleep(0.5)  # the Pipeline is validated (Ready) before the Release arrives, as in real use
    body = {
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": app, "namespace": NAMESPACE},
        "spec": {
            "application": app,
            "version": version,
            "artifacts": [{"name": "web", "image": f"registry.example.com/bench/web@{digest(0, app)}"}],
        },
    }
    started = time.monotonic()
    bench.create(RELEASES, body)
    bench.wait(f"{app} verified", lambda: app in bench.verified, 120)
    return bench.verified[app] - started


def measure(stage_counts: list[int], runs: int, delay: float, config: Config) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp), controllers=False)
        Controllers(bench.server, bench.thread.loop, delay=delay)
        operator = OperatorProcess(
            bench.kubeconfig, config, Path(tmp) / "operator.log", verbose=False
        ).start()
        try:
            one_run(bench, "warm-up", 1, "v0.0.1")  # the operator's first watch streams are open
            for stages in stage_counts:
                times = [
                    one_run(bench, f"lead-{stages}-{r}", stages, f"v1.{stages}.{r}") for r in range(runs)
                ]
                floor = 2 * delay * stages
                lead = statistics.median(times)
                overhead = (lead - floor) / stages
                rows.append(
                    {"stages": stages, "lead": lead, "floor": floor, "overhead": overhead, "max": max(times)}
                )
        finally:
            operator.stop()
            bench.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stages", default="1,3,5")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--delay", type=float, default=0.05, help="imposed rollout and test duration, s")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    config = Config(metrics_port=0)  # the defaults: 5 s reconcile interval
    assert OLD  # the stages' Deployments start on the same old image as the scale benchmark's
    rows = measure([int(s) for s in args.stages.split(",")], args.runs, args.delay, config)
    print(
        f"lead time at default settings (reconcile interval {config.reconcile_interval:g} s), "
        f"median of {args.runs}"
    )
    print(
        f"{'stages':>6} {'create->Verified s':>18} {'floor s':>8} {'overhead/stage ms':>17} "
        f"{'ratio':>6} {'max s':>6}"
    )
    for r in rows:
        ratio = r["lead"] / r["floor"]
        print(
            f"{r['stages']:>6} {r['lead']:>18.2f} {r['floor']:>8.2f} {r['overhead'] * 1000:>17.0f} "
            f"{ratio:>6.1f} {r['max']:>6.2f}"
        )
    worst = max(r["overhead"] for r in rows)
    print(
        f"\nsummary: overhead per stage at most {worst * 1000:.0f} ms (target <= 100 ms), "
        f"flat from {rows[0]['stages']} to {rows[-1]['stages']} stages: "
        f"{rows[0]['overhead'] * 1000:.0f} -> {rows[-1]['overhead'] * 1000:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
