"""Shared fixtures: a cluster (emulated unless GANTRY_TEST_KUBECONFIG is set) and the operator."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gantry.settings import Config
from tests.harness.cluster import Cluster, cluster_for_tests
from tests.harness.observability import (
    Alertmanager,
    MetricsApp,
    Prometheus,
    binaries_missing,
    observability,
    require_binaries,
)
from tests.harness.operator import OperatorThread, RecordingAlerter


def real_api_server() -> bool:
    """The suite runs against a real kube-apiserver (a kubeconfig, or envtest assets)."""
    return bool(os.environ.get("GANTRY_TEST_KUBECONFIG") or os.environ.get("KUBEBUILDER_ASSETS"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not real_api_server():
        return
    for item in items:
        marker = item.get_closest_marker("emulator_only")
        if marker is not None:
            item.add_marker(pytest.mark.skip(reason=f"emulator-only: {marker.args[0]}"))


FAST = Config(reconcile_interval=0.2, waiting_interval=0.3, lock_sweep_interval=0.5, metrics_port=0)


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    with cluster_for_tests(tmp_path) as cluster:
        monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
        yield cluster


@pytest.fixture
def namespace() -> str:
    """A fresh namespace name per test, so runs against a real cluster do not collide."""
    return f"gantry-test-{uuid.uuid4().hex[:6]}" if real_api_server() else "team"


@pytest.fixture
def alerts() -> RecordingAlerter:
    return RecordingAlerter()


@pytest.fixture
def operator(cluster: Cluster, alerts: RecordingAlerter) -> Iterator[OperatorThread]:
    running = OperatorThread(FAST, alerts).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def observability_stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[MetricsApp, Prometheus, Alertmanager]]:
    """One real Prometheus (1 s scrapes of the metrics app) and one Alertmanager for the session."""
    require_binaries(binaries_missing(), "prometheus prometheus-alertmanager")
    with observability(tmp_path_factory.mktemp("observability")) as stack:
        yield stack
