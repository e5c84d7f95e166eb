"""Benchmark: a promotion through git, from the person's decision to the commit to the rollout.

Real operator at its default settings (with a git cache), emulated API server, a real bare
origin, and the harness's GitOps tool polling each branch every 100 ms (Argo CD polls every 3 min
unless a webhook wakes it: that lag is the tool's, not Gantry's, and is what `sync` reads). Staging
commits to main; production is the seed's production branch (the tag of what staging ran, merged),
promotion Manual. Each run releases a new version to Verified, then approves it and times:

- decision -> commit: the ReleaseDecision created until the production branch moved (tagging the
  staging commit, merging the tag, pushing);
- commit -> applied: until the production Deployment runs the new digest (the tool's poll);
- applied -> Released: until Gantry saw the rollout complete and released it.

    .venv/bin/python -m bench.gitops_promotion [--runs 5]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tests.e2e import manifests as m
from tests.harness.cluster import Cluster, cluster_for_tests
from tests.harness.operator import OperatorThread, RecordingAlerter
from tests.harness.syncer import Syncer, branch_per_environment

from gantry.settings import Config

POLL = 0.1  # the GitOps tool's poll of each branch (the harness's syncer)


def head(origin: Path, branch: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(origin), "rev-parse", branch], check=True, capture_output=True, text=True
    ).stdout.strip()


def until(what: str, check: object, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.005)
    return time.monotonic()


def setup(cluster: Cluster, tmp: Path, namespace: str, prod: str) -> Path:
    origin = branch_per_environment(tmp, m.workloads("unused"))
    for workload in m.workloads(namespace) + m.workloads(prod):
        cluster.apply(workload)
    cluster.apply(m.production_branch_pipeline(namespace, prod, str(origin), promotion="Manual"))
    return origin


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    namespace, prod = "team", "prod-bench"
    lags: list[tuple[float, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp, cluster_for_tests(Path(tmp)) as cluster:
        os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
        config = Config(metrics_port=0, git_cache=str(Path(tmp) / "git-cache"))  # default intervals
        operator = OperatorThread(config, RecordingAlerter()).start()
        origin = setup(cluster, Path(tmp), namespace, prod)
        staging = Syncer(cluster, origin, "shop", namespace=namespace, interval=POLL)
        production = Syncer(cluster, origin, "shop", branch="production", namespace=prod, interval=POLL)
        try:
            with staging, production:
                for run in range(args.runs):
                    name, seed = f"shop-{run}", f"run-{run}"
                    release = m.release(namespace, name, seed, version=f"v1.{run}.0")
                    del release["spec"]["source"]
                    cluster.apply(release)
                    cluster.wait_for_phase(namespace, name, "Verified", timeout=120)
                    before = head(origin, "production")
                    started = time.monotonic()
                    cluster.apply(m.decision(namespace, name, "Approve"))
                    committed = until("the commit", lambda b=before: head(origin, "production") != b)
                    want = m.image("web", seed)
                    applied = until(
                        "the rollout", lambda w=want: cluster.images("Deployment", prod, "web")["web"] == w
                    )
                    released = until(
                        "Released",
                        lambda n=name: (
                            (cluster.release(namespace, n).get("status") or {}).get("phase") == "Released"
                        ),
                    )
                    lag = (committed - started, applied - committed, released - applied)
                    lags.append(lag)
                    print(
                        f"run {run + 1}: decision -> commit {lag[0] * 1000:.0f} ms, commit -> applied "
                        f"{lag[1] * 1000:.0f} ms, applied -> Released {lag[2] * 1000:.0f} ms "
                        f"(total {sum(lag):.2f}s)",
                        flush=True,
                    )
        finally:
            operator.stop()
    median = statistics.median
    print(
        f"\n{len(lags)} promotions: median decision -> commit {median(x[0] for x in lags) * 1000:.0f} ms "
        f"(tag, merge, push), commit -> applied {median(x[1] for x in lags) * 1000:.0f} ms "
        f"(at most the tool's poll, {POLL * 1000:.0f} ms here), applied -> Released "
        f"{median(x[2] for x in lags) * 1000:.0f} ms; total median {median(sum(x) for x in lags):.2f}s, "
        f"max {max(sum(x) for x in lags):.2f}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
