"""A stage in another cluster, reached through the kubeconfig Secret it names: two API servers
(on the envtest tier, two real kube-apiservers). The workloads and test Jobs are there; the locks,
records and Events stay with the Release."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import manifests as m
from tests.harness.cluster import Cluster, fresh_cluster_for_tests
from tests.harness.operator import OperatorThread

pytestmark = pytest.mark.e2e
FAR = "shop-eu"  # the application's namespace in the other cluster


def secret(namespace: str, name: str, kubeconfig: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"kubeconfig": base64.b64encode(kubeconfig.encode()).decode()},
    }


def far_pipeline(namespace: str, secret_name: str = "eu") -> dict[str, Any]:
    """staging and production both in the other cluster."""
    pipeline = m.pipeline(namespace, app_namespace=FAR)
    for stage in pipeline["spec"]["stages"]:
        stage["cluster"] = {"kubeconfigSecretRef": {"name": secret_name}}
    production = pipeline["spec"]["stages"][1]
    production.update(promotion="Auto", targets=pipeline["spec"]["stages"][0]["targets"])
    return pipeline


def test_a_stage_in_another_cluster_deploys_tests_and_rolls_back_there(
    cluster: Cluster, operator: OperatorThread, namespace: str, tmp_path: Path
) -> None:
    (tmp_path / "far").mkdir()
    with fresh_cluster_for_tests(tmp_path / "far") as far:
        for workload in m.workloads(FAR):
            far.apply(workload)
        cluster.apply(secret(namespace, "eu", far.kubeconfig.read_text()))
        cluster.apply(far_pipeline(namespace))
        for name, seed, version in (("shop-v1", "v1", "v1.0.0"), ("shop-v2", "v2", "v1.1.0")):
            cluster.apply(m.release(namespace, name, seed, version=version))
            body = cluster.wait_for_phase(namespace, name, "Released", "Failed", "Blocked")
            assert body["status"]["phase"] == "Released", body["status"]["message"]
            assert far.images("Deployment", FAR, "web")["web"] == m.image("web", seed)
            assert far.images("Deployment", FAR, "worker")["worker"] == m.image("worker", seed)
            # The test ran in the other cluster, where the stage deploys.
            jobs = far.list("Job", FAR, f"gantry.dev/release={name}")
            assert len(jobs) == 1, jobs
            run = body["status"]["stages"][0]
            assert run["testResult"] == "Succeeded"
            assert {i["workload"] for i in run["images"]} == {
                f"eu@Deployment/{FAR}/web",
                f"eu@Deployment/{FAR}/worker",
            }

        cluster.apply(m.decision(namespace, "shop-v2", "Rollback"))
        rolled = cluster.wait_for_phase(namespace, "shop-v2", "RolledBack", "Failed")
        assert rolled["status"]["phase"] == "RolledBack", rolled["status"]["message"]
        assert far.images("Deployment", FAR, "web")["web"] == m.image("web", "v1")
        # Locks and records stayed here.
        history = cluster.must_get("EnvironmentLock", namespace, "staging")["status"]["history"]
        assert [h["release"] for h in history][:2] == [f"{namespace}/shop-v1", f"{namespace}/shop-v2"]
        assert cluster.get("Deployment", FAR, "web") is None  # nothing of the far stage landed here


def test_a_stage_whose_cluster_secret_is_missing_is_blocked_naming_the_field(
    cluster: Cluster, operator: OperatorThread, namespace: str
) -> None:
    cluster.apply(far_pipeline(namespace, secret_name="nowhere"))
    cluster.apply(m.release(namespace, "shop-v1", "v1"))
    body = cluster.wait_for_phase(namespace, "shop-v1", "Blocked", "Failed", "Verified")
    status = body["status"]
    assert status["reason"] == "ClusterUnavailable", status["message"]
    assert "spec.stages[0].cluster.kubeconfigSecretRef" in status["message"]
    assert f"Secret {namespace}/nowhere does not exist" in status["message"]
