"""The stand-in controllers of the envtest tier, which work only through the API (watch, then
write status through the status subresource, and create the Pod a Job ran), checked here on the
emulator with its built-in controllers off, so CI runs the code the envtest tier depends on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FAST
from tests.e2e import manifests as m
from tests.e2e.test_staging_flow import setup_app
from tests.harness.cluster import Cluster, cluster_for_tests
from tests.harness.operator import OperatorThread, RecordingAlerter

pytestmark = [pytest.mark.e2e, pytest.mark.emulator_only("runs the emulator without its own controllers")]


@pytest.fixture
def api_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    monkeypatch.setenv("GANTRY_TEST_CONTROLLERS", "api")
    with cluster_for_tests(tmp_path) as cluster:
        assert cluster.server is not None and not cluster.server.change_hooks  # no built-in controllers
        monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
        operator = OperatorThread(FAST, RecordingAlerter()).start()
        yield cluster
        operator.stop()


def test_a_release_rolls_out_and_tests_through_api_driven_controllers(api_cluster: Cluster) -> None:
    cluster, namespace = api_cluster, "team"
    setup_app(cluster, namespace)
    cluster.apply(m.release(namespace, "shop-v1", "v1"))
    body = cluster.wait_for_phase(namespace, "shop-v1", "Verified", "Failed", timeout=60)
    assert body["status"]["phase"] == "Verified", body["status"]["message"]
    web = cluster.must_get("Deployment", namespace, "web")
    assert web["spec"]["template"]["spec"]["containers"][0]["image"] == m.image("web", "v1")
    assert web["status"]["observedGeneration"] == web["metadata"]["generation"]  # written via /status


def test_a_failing_job_ends_with_a_pod_that_holds_its_exit_code(api_cluster: Cluster) -> None:
    cluster, namespace = api_cluster, "team"
    setup_app(cluster, namespace, script="echo broken; exit 3")
    cluster.apply(m.release(namespace, "shop-v1", "v1"))
    body = cluster.wait_for_phase(namespace, "shop-v1", "Failed", "Verified", timeout=60)
    assert "container tests exited with code 3 (Error)" in body["status"]["message"]


def test_a_held_rollout_waits_until_released(api_cluster: Cluster) -> None:
    cluster, namespace = api_cluster, "team"
    setup_app(cluster, namespace)
    cluster.hold_rollouts(namespace, "web")
    cluster.apply(m.release(namespace, "shop-v1", "v1"))
    cluster.wait_for_phase(namespace, "shop-v1", "Deploying", timeout=60)
    cluster.release_rollouts(namespace, "web")
    body = cluster.wait_for_phase(namespace, "shop-v1", "Verified", "Failed", timeout=60)
    assert body["status"]["phase"] == "Verified", body["status"]["message"]
