"""The operator killed with SIGKILL mid-deploy: after a restart nothing happens twice or is skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from gantry.settings import Config
from tests.e2e import manifests as m
from tests.e2e.test_staging_flow import setup_app
from tests.harness.cluster import Cluster
from tests.harness.operator import OperatorProcess

pytestmark = pytest.mark.e2e


@pytest.mark.emulator_only("holds a rollout open, which needs the emulated deployment controller")
def test_killed_mid_deploy_then_restarted_deploys_once_and_still_tests(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    setup_app(cluster, namespace)
    cluster.hold_rollouts(namespace, "web")
    generation_before = cluster.must_get("Deployment", namespace, "web")["metadata"]["generation"]
    config = Config(reconcile_interval=0.2, lock_sweep_interval=0.5, metrics_port=0)
    log = tmp_path / "operator.log"

    first = OperatorProcess(cluster.kubeconfig, config, log).start()
    try:
        cluster.apply(m.release(namespace, "shop-v4", "v4"))
        cluster.wait_for(
            "the rollout to start",
            lambda: (cluster.release(namespace, "shop-v4").get("status") or {}).get("step") == "RollingOut",
            timeout=30,
        )
    finally:
        first.kill()
    assert cluster.release(namespace, "shop-v4")["status"]["phase"] == "Deploying"
    assert cluster.list("Job", namespace) == []

    second = OperatorProcess(cluster.kubeconfig, config, log).start()
    try:
        cluster.release_rollouts(namespace, "web")
        body = cluster.wait_for_phase(namespace, "shop-v4", "Verified", "Failed", timeout=30)
    finally:
        second.stop()

    assert body["status"]["phase"] == "Verified", body["status"]["message"]
    assert cluster.must_get("Deployment", namespace, "web")["metadata"]["generation"] == generation_before + 1
    assert len(cluster.list("Job", namespace, "gantry.dev/release=shop-v4")) == 1
    assert body["status"]["stages"][0]["testResult"] == "Succeeded"
    lock = cluster.must_get("EnvironmentLock", namespace, "staging")["status"]
    assert "holder" not in lock
    assert [h["reason"] for h in lock["history"]] == ["Passed"]
