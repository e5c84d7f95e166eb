"""Shared fixtures: a cluster (emulated unless GANTRY_TEST_KUBECONFIG is set) and the operator."""

from __future__ import annotations

import os
import signal
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


# A Ctrl-C stops the run; a KeyboardInterrupt that a test raised itself (a patched function, a
# fault injected too widely) fails that test only: no test may stop the suite.
_ctrl_c: list[bool] = []


def _on_sigint(signum: int, frame: object) -> None:
    _ctrl_c.append(True)
    raise KeyboardInterrupt


def pytest_configure(config: pytest.Config) -> None:
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> object:
    try:
        return (yield)
    except KeyboardInterrupt:
        if _ctrl_c:
            raise
        pytest.fail(f"{item.nodeid} raised KeyboardInterrupt without a Ctrl-C", pytrace=True)


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
