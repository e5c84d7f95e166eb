"""A git host or registry that accepts connections and never answers stalls nothing but the
ReleaseSources that point at it: they report themselves unavailable after their timeout, and an
unrelated Release keeps its usual pace.

Reported: 24 sources pointing at such a git host took every one of Kopf's 20 worker threads for
ever (clone and fetch had no timeout), and an unrelated Release had no status after 60 s.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FAST
from tests.e2e import manifests as m
from tests.git.repos import origin_and_clone
from tests.harness.cluster import Cluster
from tests.harness.operator import OperatorThread, RecordingAlerter
from tests.harness.silent import SilentServer

pytestmark = pytest.mark.e2e
HUNG_GIT_SOURCES = 24
HUNG_REGISTRY_SOURCES = 4


def source(namespace: str, name: str, repository: str, image_repository: str) -> dict[str, Any]:
    return {
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "ReleaseSource",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "application": name,
            "git": {"repository": repository, "branch": "main"},
            "artifacts": [{"name": "web", "repository": image_repository}],
            "intervalSeconds": 3600,
        },
    }


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer().start()
    yield server
    server.stop()


def test_hung_git_hosts_and_registries_stall_only_their_own_sources(
    cluster: Cluster, namespace: str, silent: SilentServer, tmp_path: Path
) -> None:
    for workload in m.workloads(namespace):
        cluster.apply(workload)
    cluster.apply(m.pipeline(namespace))
    origin, work = origin_and_clone(tmp_path, "shop")
    work.commit("feat(SHOP-1): start")
    work.git("push", "-q", "origin", "main")
    sources = f"{namespace}-sources"
    for i in range(HUNG_GIT_SOURCES):
        # Half over HTTP (curl's low-speed limit gives up), half over git:// (only the kill does).
        scheme = "http" if i % 2 else "git"
        repository = f"{scheme}://127.0.0.1:{silent.port}/shop-{i}.git"
        cluster.apply(source(sources, f"hung-git-{i}", repository, "registry.example/shop/web"))
    for i in range(HUNG_REGISTRY_SOURCES):
        cluster.apply(source(sources, f"hung-registry-{i}", str(origin), f"127.0.0.1:{silent.port}/ci/web"))

    config = replace(
        FAST, git_cache=str(tmp_path / "git-cache"), git_timeout=2, registry_timeout=2, source_tick=0.5
    )
    operator = OperatorThread(config, RecordingAlerter()).start()
    try:
        cluster.wait_for("looks to reach the silent host", lambda: silent.accepted >= 4, timeout=30)
        started = time.monotonic()
        unrelated = m.release(namespace, "shop-v1", "v1")
        unrelated["spec"].pop("source", None)  # no git of its own: nothing to wait for but the cluster
        cluster.apply(unrelated)
        verified = cluster.wait_for_phase(namespace, "shop-v1", "Verified", "Failed", timeout=60)
        lead_time = time.monotonic() - started
        assert verified["status"]["phase"] == "Verified", verified["status"]["message"]
        assert cluster.images("Deployment", namespace, "web")["web"] == m.image("web", "v1")
        print(f"unrelated Release: Verified {lead_time:.1f} s after it was applied, beside hung hosts")

        def ready(name: str) -> dict[str, Any]:
            status = cluster.must_get("ReleaseSource", sources, name).get("status") or {}
            return next(iter(status.get("conditions") or ()), {})

        def all_reported() -> bool:
            names = [f"hung-git-{i}" for i in range(HUNG_GIT_SOURCES)]
            names += [f"hung-registry-{i}" for i in range(HUNG_REGISTRY_SOURCES)]
            return all(ready(name).get("status") == "False" for name in names)

        try:
            cluster.wait_for("every hung source to report itself", all_reported, timeout=120)
        except AssertionError:
            for item in cluster.list("ReleaseSource", sources):
                print(item["metadata"]["name"], item.get("status"))
            raise
        killed = ready("hung-git-0")  # git://: the command killed at its timeout
        assert killed["reason"] == "GitSourceUnavailable"
        assert "no answer in 2s (the git host accepted the connection, then went silent)" in killed["message"]
        stalled = ready("hung-git-1")  # http://: the transfer gave up as too slow
        assert stalled["reason"] == "GitSourceUnavailable"
        assert "no answer in 2s" in stalled["message"] or "Operation too slow" in stalled["message"]
        registry_condition = ready("hung-registry-0")
        assert registry_condition["reason"] == "RegistryUnavailable", registry_condition
    finally:
        operator.stop()
