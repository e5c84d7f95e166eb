"""Benchmark: reconcile latency, API requests, memory and start-up at 0 to 20,000 Releases.

The operator runs as its own process (`python -m gantry run`, default settings) against the
embedded API server, so its RSS and every HTTP request it makes are its own. For each size:

1. the server is seeded with that many finished Releases across one application per 20 Releases
   (at least 200; 1,000 for 20,000), with their Pipelines and Deployments, written straight
   into the server's store;
2. the operator starts and, at once, one probe Release is created: the time until its Deployment
   is re-pinned is the start-up time ("reconciling again");
3. probe Releases are created one at a time (each in its own application, one unlocked stage); the
   time from create to the Deployment's patch is the reconcile latency (p50, p99);
4. after a quiet period, requests are counted again: a steady state makes no list or watch calls.

Then, with no other objects, 500 Releases are created at once across 100 applications (each
application's stage is locked, so 5 Releases queue per lock) and the time until all are Verified
gives the throughput.

    .venv/bin/python -m bench.scale [--sizes 0,1000,5000,20000] [--probes 40] [--burst 500]
"""

from __future__ import annotations

import argparse
import collections
import gc
import hashlib
import logging
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.harness.admission import apply_defaults
from tests.harness.apiserver import NAMESPACES, ApiStatus, Key
from tests.harness.cluster import (
    DEPLOYMENTS,
    Cluster,
    Controllers,
    ServerThread,
    install_crds,
    write_kubeconfig,
)
from tests.harness.operator import OperatorProcess

from gantry.settings import Config

RELEASES: Key = ("gantry.dev", "v1alpha1", "releases")
PIPELINES: Key = ("gantry.dev", "v1alpha1", "pipelines")
NAMESPACE = "bench"
OLD = "registry.example.com/bench/web@sha256:" + "0" * 64
SEEDED_AT = "2026-05-01T09:00:00Z"


def digest(i: int, salt: str = "") -> str:
    return "sha256:" + hashlib.sha256(f"{salt}{i}".encode()).hexdigest()


def pipeline(app: str, lock: bool = False) -> dict[str, Any]:
    stage: dict[str, Any] = {
        "name": "staging",
        "lock": lock,
        "targets": [{"namespace": NAMESPACE, "name": app}],
    }
    if lock:
        stage["environment"] = f"{app}-staging"
    return {
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": app, "namespace": NAMESPACE},
        "spec": {"application": app, "stages": [stage]},
    }


def deployment(app: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": app, "namespace": NAMESPACE},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {"containers": [{"name": "web", "image": OLD}]},
            },
        },
    }


def release(app: str, name: str, image: str, version: str = "v1.0.0") -> dict[str, Any]:
    return {
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"application": app, "version": version, "artifacts": [{"name": "web", "image": image}]},
    }


class Bench:
    """The emulated API server with request counting and a watch on Deployment images."""

    def __init__(self, tmp: Path, controllers: bool = True) -> None:
        self.thread = ServerThread().start()
        assert self.thread.server is not None
        self.server = self.thread.server
        if controllers:
            Controllers(self.server, self.thread.loop)
        namespace = {"metadata": {"name": NAMESPACE}}
        self.call(lambda: self.server.create(NAMESPACES, None, namespace))
        self.kubeconfig = write_kubeconfig(tmp / "kubeconfig", self.thread.url)
        install_crds(Cluster(self.kubeconfig, self.server, None))
        self.requests: collections.Counter[tuple[str, str, bool]] = collections.Counter()
        self.patched: dict[str, float] = {}  # Deployment name -> when its image first changed
        self.verified: dict[str, float] = {}
        self.first_write: dict[str, float] = {}  # Release name -> Gantry's first status write
        self.server.fault_hooks.append(self._count)
        self.server.change_hooks.append(self._watch)
        self.tmp = tmp

    def _count(self, method: str, key: Key, name: str | None) -> ApiStatus | None:
        self.requests[(method, key[2], name is None)] += 1
        return None

    def _watch(self, kind: str, key: Key, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if key == DEPLOYMENTS and name not in self.patched:
            if obj["spec"]["template"]["spec"]["containers"][0]["image"] != OLD:
                self.patched[name] = time.monotonic()
        elif key == RELEASES and (obj.get("status") or {}).get("phase"):
            self.first_write.setdefault(name, time.monotonic())
            if obj["status"]["phase"] == "Verified":
                self.verified.setdefault(name, time.monotonic())

    def call(self, fn: Callable[[], Any]) -> Any:
        return self.thread.call(fn)

    def create(self, key: Key, body: dict[str, Any]) -> None:
        self.call(lambda: self.server.create(key, NAMESPACE, body))

    def seed(self, count: int, apps: int = 200, waiting: int = 3) -> None:
        """Finished Releases (with their Pipelines and Deployments), straight into the store; one in
        `waiting` of them Verified, waiting for a person, instead (0: all finished)."""

        started = time.monotonic()
        for chunk in range(0, count, 1000):  # chunks: each call on the server's loop times out at 10 s
            self.thread.call(lambda c=chunk: fill_range(self.server, c, min(count, c + 1000), apps, waiting))
        for chunk in range(0, min(apps, count), 1000):  # the same for the applications
            self.thread.call(lambda c=chunk: fill_apps(self.server, c, min(apps, count, c + 1000)))
        took = time.monotonic() - started
        gc.freeze()  # the emulator's seeded store, out of this process's collector (not the operator's)
        print(f"  seeded {count} Releases over {min(apps, count)} applications in {took:.1f}s")

    def wait(self, what: str, done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not within {timeout}s")
            time.sleep(0.005)

    def settle(self, quiet: float, timeout: float = 300) -> None:
        """Wait until the operator has made no request for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        seen, since = sum(self.requests.values()), time.monotonic()
        while time.monotonic() - since < quiet and time.monotonic() < deadline:
            time.sleep(0.2)
            now = sum(self.requests.values())
            if now != seen:
                seen, since = now, time.monotonic()

    def stop(self) -> None:
        self.thread.stop()


def put(server: Any, key: Key, body: dict[str, Any], status: dict[str, Any] | None = None) -> None:
    """An object straight into the server's store, as if created long ago: no admission, no watch
    event (the operator starts after the seeding and lists what it watches)."""
    meta = body["metadata"]
    schema = server.schemas[key].openapi
    if schema is not None:  # as stored by a create: defaulted
        apply_defaults(schema, body)
    server.revision += 1
    meta.update(uid=str(uuid.uuid4()), creationTimestamp=SEEDED_AT, generation=1)
    meta["resourceVersion"] = str(server.revision)
    if status is not None:
        body["status"] = status
    server.store[(key, meta["namespace"], meta["name"])] = body


def fill_apps(server: Any, start: int, end: int) -> None:
    for a in range(start, end):
        put(server, PIPELINES, pipeline(f"old-{a}"))
        put(server, DEPLOYMENTS, deployment(f"old-{a}"))


def fill_range(server: Any, start: int, end: int, apps: int, waiting: int = 3) -> None:
    for i in range(start, end):
        app, name = f"old-{i % apps}", f"old-{i % apps}-r{i}"
        body = release(app, name, f"registry.example.com/bench/web@{digest(i)}")
        phase = "Verified" if waiting and i % waiting == waiting - 1 else ("Released", "Failed")[i % 2]
        if phase != "Verified":  # as Gantry leaves a finished Release: out of its watch
            body["metadata"]["labels"] = {"gantry.dev/finished": "true"}
            put(server, RELEASES, body, {"phase": phase, "reason": "Seeded", "message": "seeded"})
        else:  # waiting for a person, with the status Gantry leaves on a Verified Release
            put(server, RELEASES, body, verified_status(app, digest(i)))


def verified_status(app: str, image_digest: str) -> dict[str, Any]:
    """About 3 KB of JSON, shaped like a real Verified Release's status (one stage run, its
    history, conditions, the pinned stages), so the operator's copy of it costs what it would."""
    at = "2026-05-01T09:00:00.000Z"
    image = f"registry.example.com/bench/web@{image_digest}"
    target = {"namespace": NAMESPACE, "kind": "Deployment", "name": app}
    spec = {"environment": "staging", "lock": False, "rollbackOnFailure": True, "rolloutTimeoutSeconds": 600}
    run = {
        "index": 0,
        "name": "staging",
        "environment": "staging",
        "step": "Passed",
        "startedAt": at,
        "lock": False,
        "spec": {**spec, "targets": [target]},
        "images": [
            {"workload": f"Deployment/{NAMESPACE}/{app}", "container": "web", "before": OLD, "after": image}
        ],
        "deployedAt": at,
        "rolledOutAt": at,
        "finishedAt": at,
        "reason": "RolledOut",
        "message": "stage staging: rollout complete",
    }
    steps = [
        ("Pending", "StagePassed"),
        ("Deploying", "Deploying"),
        ("Deploying", "RollingOut"),
        ("Verified", "Verified"),
    ]
    history = [
        {"time": at, "phase": p, "reason": r, "message": f"stage staging: {r}", "stage": "staging"}
        for p, r in steps
    ]
    message = "passed every stage up to production (last: staging); ready for production"
    conditions = [
        {
            "type": t,
            "status": v,
            "reason": "Verified",
            "message": message if v == "True" else "",
            "lastTransitionTime": at,
            "observedGeneration": 1,
        }
        for t, v in (("Ready", "True"), ("Stalled", "False"), ("Reconciling", "False"))
    ]
    return {
        "phase": "Verified",
        "stageIndex": 1,
        "reason": "Verified",
        "message": message,
        "observedGeneration": 1,
        "stages": [run],
        "history": history,
        "conditions": conditions,
        "decisionsApplied": 0,
        "version": "v1.0.0",
        "stage": "staging",
        "pipeline": {"stages": [{**spec, "targets": [target], "name": "staging"}]},
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def probe(bench: Bench, name: str, timeout: float = 60) -> float:
    """Create one Release (its app, Pipeline and Deployment made beforehand); seconds until patched."""
    return probe_both(bench, name, timeout)[1]


def probe_both(bench: Bench, name: str, timeout: float = 60) -> tuple[float, float]:
    """Seconds from create to Gantry's first status write, and to the Deployment's re-pin."""
    started = time.monotonic()
    bench.create(RELEASES, release(name, name, f"registry.example.com/bench/web@{digest(0, name)}"))
    bench.wait(f"{name} patched", lambda: name in bench.patched and name in bench.first_write, timeout)
    return bench.first_write[name] - started, bench.patched[name] - started


def prepare_apps(bench: Bench, names: list[str], lock: bool = False) -> None:
    def go() -> None:
        for name in names:
            bench.server.create(PIPELINES, NAMESPACE, pipeline(name, lock))
            bench.server.create(DEPLOYMENTS, NAMESPACE, deployment(name))

    bench.call(go)


def measure_size(
    size: int, probes: int, config: Config, quiet: float = 10, waiting: int = 3, apps: int = 0
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        try:
            bench.seed(size, apps=apps or max(200, size // 20), waiting=waiting)
            names = [f"probe-{i}" for i in range(probes + 1)]
            prepare_apps(bench, [*names, "after-restart"])
            bench.requests.clear()
            operator = OperatorProcess(bench.kubeconfig, config, Path(tmp) / "operator.log")
            started = time.monotonic()
            operator.start()
            assert operator.process is not None
            try:
                probe(bench, names[0], timeout=600)
                startup = bench.patched[names[0]] - started
                bench.settle(config.waiting_interval + 2)  # the first looks at the seeded Releases
                before = collections.Counter(bench.requests)
                both = [probe_both(bench, name) for name in names[1:]]
                firsts, latencies = [f for f, _ in both], [p for _, p in both]
                bench.wait("probes verified", lambda: all(n in bench.verified for n in names), 60)
                during = bench.requests - before
                time.sleep(3 * config.reconcile_interval)
                quiet_start = collections.Counter(bench.requests)
                time.sleep(quiet)
                steady = bench.requests - quiet_start
                rss = rss_mb(operator.process.pid)
            finally:
                operator.stop()
            # A restart: every Release has been seen before (Kopf's annotations are in place).
            operator = OperatorProcess(bench.kubeconfig, config, Path(tmp) / "operator.log")
            started = time.monotonic()
            operator.start()
            try:
                probe(bench, "after-restart", timeout=600)
                restart = bench.patched["after-restart"] - started
            finally:
                operator.stop()
            history = bench.call(
                lambda: sum(
                    len(
                        (bench.server.store[(RELEASES, NAMESPACE, n)].get("status") or {}).get("history")
                        or []
                    )
                    for n in names[1:]
                )
            )
        finally:
            bench.stop()
    total = sum(during.values())
    return {
        "size": size,
        "startup": startup,
        "restart": restart,
        "first_p99": percentile(firsts, 0.99),
        "p50": statistics.median(latencies),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies),
        "requests_per_release": total / probes,
        "requests_per_transition": total / max(history, 1),
        "writes_per_release": sum(v for (m, _, _), v in during.items() if m in ("POST", "PATCH", "PUT"))
        / probes,
        "steady_list_watch": sum(v for (m, _, coll), v in steady.items() if m == "GET" and coll),
        "steady_requests_per_s": sum(steady.values()) / quiet,
        "rss": rss,
    }


def throughput(burst: int, apps: int, config: Config) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        try:
            app_names = [f"burst-{a}" for a in range(apps)]
            prepare_apps(bench, app_names, lock=True)
            operator = OperatorProcess(bench.kubeconfig, config, Path(tmp) / "operator.log").start()
            assert operator.process is not None
            try:
                warm = "burst-warm"
                prepare_apps(bench, [warm])
                probe(bench, warm, timeout=120)
                bench.requests.clear()
                names = [f"burst-{i % apps}-r{i}" for i in range(burst)]

                def create_all() -> None:
                    for i, name in enumerate(names):
                        app = f"burst-{i % apps}"
                        body = release(
                            app, name, f"registry.example.com/bench/web@{digest(i, 'burst')}", f"v1.0.{i}"
                        )
                        bench.server.create(RELEASES, NAMESPACE, body)

                started = time.monotonic()
                bench.call(create_all)
                bench.wait("burst verified", lambda: all(n in bench.verified for n in names), 900)
                elapsed = max(bench.verified[n] for n in names) - started
                rss = rss_mb(operator.process.pid)
            finally:
                operator.stop()
        finally:
            bench.stop()
    return {
        "burst": burst,
        "apps": apps,
        "elapsed": elapsed,
        "rate": burst / elapsed,
        "requests_per_release": sum(bench.requests.values()) / burst,
        "rss": rss,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="0,1000,5000,20000")
    parser.add_argument("--probes", type=int, default=40)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--burst-apps", type=int, default=100)
    parser.add_argument(
        "--waiting",
        type=int,
        default=3,
        help="one in N of the other Releases is Verified, waiting for a person (0: all finished)",
    )
    parser.add_argument(
        "--apps",
        type=int,
        default=0,
        help="applications (Pipelines) the other Releases spread over (0: one per 20, at least 200)",
    )
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only shows the benchmark works")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    config = Config(metrics_port=0)  # the operator's defaults: 5 s reconcile interval
    quiet = 10.0
    if args.smoke:  # short quiet periods; the figures mean nothing
        config, quiet = Config(reconcile_interval=0.5, waiting_interval=0.5, metrics_port=0), 1.0
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        print(f"size {size}:")
        rows.append(measure_size(size, args.probes, config, quiet, args.waiting, args.apps))
        print(f"  {rows[-1]}", flush=True)  # as measured: a later size that fails loses nothing
    print()
    columns = [
        ("other Releases", "size", "{:>14}"),
        ("first start s", "startup", "{:>13.2f}"),
        ("restart s", "restart", "{:>9.2f}"),
        ("first write p99 ms", "first_p99", "{:>18.0f}"),
        ("p50 ms", "p50", "{:>8.0f}"),
        ("p99 ms", "p99", "{:>8.0f}"),
        ("req/Release", "requests_per_release", "{:>11.1f}"),
        ("req/transition", "requests_per_transition", "{:>14.1f}"),
        ("writes/Release", "writes_per_release", "{:>14.1f}"),
        ("steady list+watch", "steady_list_watch", "{:>17}"),
        ("steady req/s", "steady_requests_per_s", "{:>12.1f}"),
        ("RSS MB", "rss", "{:>7.0f}"),
    ]
    print(" ".join(title.rjust(len(fmt.format(0))) for title, _, fmt in columns))
    for r in rows:
        values = {**r, "p50": r["p50"] * 1000, "p99": r["p99"] * 1000, "first_p99": r["first_p99"] * 1000}
        print(" ".join(fmt.format(values[key]) for _, key, fmt in columns))
    burst = throughput(args.burst, args.burst_apps, config) if args.burst else None
    if burst:
        print(
            f"\nburst: {burst['burst']} Releases over {burst['apps']} applications (5 per locked stage) "
            f"all Verified in {burst['elapsed']:.1f}s = {burst['rate']:.1f} Releases/s, "
            f"{burst['requests_per_release']:.1f} requests per Release, RSS {burst['rss']:.0f} MB"
        )
    first = rows[0]
    print(f"\nagainst the floor (the first row, {first['size']} other Releases):")
    for row in rows[1:]:
        p99_ratio = row["first_p99"] / first["first_p99"] if first["first_p99"] else float("nan")
        cost = row["requests_per_release"] / first["requests_per_release"]
        ms = {k: row[k] * 1000 for k in ("first_p99", "p99")}
        floor = {k: first[k] * 1000 for k in ("first_p99", "p99")}
        lines = [
            f"p99 create -> first status write {ms['first_p99']:.0f} ms (floor {floor['first_p99']:.0f} ms, "
            f"ratio {p99_ratio:.2f}; target <= 100 ms and ratio <= 1.10)",
            f"p99 create -> re-pin {ms['p99']:.0f} ms (floor {floor['p99']:.0f} ms)",
            f"requests per Release {row['requests_per_release']:.1f} "
            f"(floor {first['requests_per_release']:.1f}, ratio {cost:.2f}; target <= 1.10)",
            f"RSS {row['rss']:.0f} MB (floor {first['rss']:.0f} MB; target <= 150 MB at 100,000 finished)",
            f"first start {row['startup']:.1f} s (floor {first['startup']:.1f} s; target <= 10 s), "
            f"restart {row['restart']:.1f} s",
        ]
        print(f"  {row['size']} other Releases:")
        for line in lines:
            print(f"    {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
