"""The seed's hotfix flow from git alone: an emergency freezes staging, someone pushes a fix on a
HOT-<n> branch cut from the production tag, CI pushes its images, and the ReleaseSource makes the
hotfix Release (patch version, tagged on the branch) that lifts the freeze once released."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import manifests as m
from tests.harness.cluster import Cluster
from tests.harness.operator import OperatorThread
from tests.harness.registry import Registry
from tests.registry.test_release_sources import a_feature_after_v1_0_0, ci_builds, release_source

pytestmark = pytest.mark.e2e

TIMEOUT = 60


def test_during_an_emergency_a_push_to_the_hot_branch_becomes_the_hotfix_release(
    cluster: Cluster, namespace: str, open_registry: Registry, source_operator: OperatorThread, tmp_path: Path
) -> None:
    origin, work, feature = a_feature_after_v1_0_0(cluster, namespace, open_registry, tmp_path)
    pipeline = cluster.must_get("Pipeline", namespace, "shop")
    pipeline["spec"]["stages"][-1]["targets"].append({"namespace": namespace, "name": "worker"})
    cluster.apply({k: pipeline[k] for k in ("apiVersion", "kind", "metadata", "spec")})
    ci_builds(open_registry, tmp_path, feature)
    cluster.apply(release_source(namespace, origin, open_registry.host))

    shipped = f"shop-{feature[:12]}"
    cluster.wait_for("the Release", lambda: cluster.get("Release", namespace, shipped), timeout=TIMEOUT)
    cluster.wait_for_phase(namespace, shipped, "Verified", timeout=TIMEOUT)
    cluster.apply(m.decision(namespace, shipped, "Approve"))
    released = cluster.wait_for_phase(namespace, shipped, "Released", "Failed", "Blocked", timeout=TIMEOUT)
    assert released["status"]["phase"] == "Released", released["status"]["message"]
    assert released["status"]["version"] == "v1.1.0"

    def source_status() -> dict[str, Any]:
        return cluster.must_get("ReleaseSource", namespace, "shop").get("status") or {}

    # A HOT branch pushed before any emergency is nobody's hotfix yet.
    work.git("fetch", "-q", "origin", "--tags")  # the tag Gantry pushed when dev passed
    work.git("checkout", "-q", "-b", "HOT-1", "v1.1.0")
    hot = work.commit("fix(HOT-1): stop the double charge")
    work.git("push", "-q", "origin", "HOT-1")
    work.git("checkout", "-q", "main")
    ci_builds(open_registry, tmp_path, hot)
    cluster.wait_for(
        "a look after the push",
        lambda: source_status().get("lastCommit") == feature and source_status().get("hotfixes") == [],
        timeout=TIMEOUT,
    )
    assert cluster.get("Release", namespace, f"shop-{hot[:12]}") is None

    # The emergency: staging freezes, and the source now takes the HOT branch's head as the hotfix.
    cluster.apply(m.decision(namespace, shipped, "Emergency", by="carol"))
    cluster.wait_for_phase(namespace, shipped, "Emergency", timeout=TIMEOUT)
    name = f"shop-{hot[:12]}"
    body = cluster.wait_for(
        "the hotfix Release", lambda: cluster.get("Release", namespace, name), timeout=TIMEOUT
    )
    assert body["spec"]["hotfix"] is True and body["spec"]["source"]["revision"] == hot
    verified = cluster.wait_for_phase(namespace, name, "Verified", "Failed", "Blocked", timeout=TIMEOUT)
    assert verified["status"]["phase"] == "Verified", verified["status"]["message"]
    assert verified["status"]["version"] == "v1.1.1"  # the patch above what production runs
    cluster.apply(m.decision(namespace, name, "Approve", by="carol"))
    done = cluster.wait_for_phase(namespace, name, "Released", "Failed", "Blocked", timeout=TIMEOUT)
    assert done["status"]["phase"] == "Released", done["status"]["message"]
    tagged = subprocess.run(
        ["git", "rev-parse", "v1.1.1^{commit}"], cwd=origin, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert tagged == hot  # tagged on the HOT branch, never on main
    lock = cluster.wait_for(
        "the freeze to lift",
        lambda: (
            not (cluster.must_get("EnvironmentLock", namespace, "staging").get("status") or {}).get("frozen")
        ),
        timeout=TIMEOUT,
    )
    assert lock
    history = cluster.must_get("EnvironmentLock", namespace, "staging")["status"]["history"]
    lifted = [h for h in history if h["reason"].startswith("FreezeLifted")]
    assert lifted[-1]["reason"] == f"FreezeLifted: hotfix {namespace}/{name} released"  # on the record
    assert source_status()["hotfixes"] == [{"branch": "HOT-1", "commit": hot, "release": name}]
