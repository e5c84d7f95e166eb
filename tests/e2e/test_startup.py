"""`gantry run` that cannot start as configured says so in one line and exits, not retrying."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.cluster import ROOT, Cluster

pytestmark = pytest.mark.e2e


def test_a_taken_metrics_port_stops_start_up_with_one_line(cluster: Cluster) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "GANTRY_METRICS_PORT": str(port),
            "GANTRY_METRICS_ADDRESS": "127.0.0.1",
            "PYTHONPATH": str(Path(ROOT) / "operator"),
        }
        result = subprocess.run(
            [sys.executable, "-m", "gantry", "run"], env=env, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"gantry run: cannot serve metrics on 127.0.0.1:{port}: Address already in use")
    assert "GANTRY_METRICS_PORT" in last and "Traceback" not in result.stderr


def gantry_run(kubeconfig: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONPATH": str(Path(ROOT) / "operator")}
    env.pop("KUBERNETES_SERVICE_HOST", None)  # never the in-cluster credentials of a CI pod
    return subprocess.run(
        [sys.executable, "-m", "gantry", "run"], env=env, capture_output=True, text=True, timeout=60
    )


def test_no_cluster_configured_is_one_line_and_exit_1(tmp_path: Path) -> None:
    result = gantry_run(tmp_path / "missing-kubeconfig")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"gantry run: KUBECONFIG={tmp_path / 'missing-kubeconfig'}: no such file; point it at a "
        "kubeconfig, or unset it to use ~/.kube/config (or run it in a cluster), or use --wait"
    ]


def test_an_api_server_nobody_answers_on_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
            f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
            "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n"
        )
        result = gantry_run(kubeconfig)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"gantry run: cannot reach the API server at http://127.0.0.1:{port} (")
    assert "Connection refused" in line and line.endswith("or use --wait to keep retrying")
