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
