"""The real Gantry operator under test: in a thread (fast) or as a process (killable)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from gantry.adapters.alerts import Alerter
from gantry.domain.flow.model import Alert
from gantry.runner import run_async
from gantry.runtime import Runtime
from gantry.settings import Config

ROOT = Path(__file__).resolve().parents[2]


class RecordingAlerter:
    """Keeps alerts so a test can assert the team was told."""

    def __init__(self) -> None:
        self.alerts: list[tuple[Alert, dict[str, str]]] = []

    def send(self, alert: Alert, labels: dict[str, str], config: object = None) -> None:
        self.alerts.append((alert, labels))


class OperatorThread:
    """Kopf in its own thread and event loop; stopping takes milliseconds, not Kopf's 5 s wait."""

    def __init__(self, config: Config, alerter: Alerter | None = None) -> None:
        self.config = config
        self.memo = Runtime()
        self.memo.connect(config, alerter)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="gantry-operator", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(run_async(self.config, memo=self.memo, stop_flag=self._stop, ready_flag=self._ready))
        except BaseException as error:  # surfaced by start()/stop()
            self._error = error
            self._ready.set()

    def start(self) -> OperatorThread:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"operator did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
        if self._thread.is_alive():
            raise RuntimeError("operator thread did not stop")


class OperatorProcess:
    """`python -m gantry run` as a child process, so a test can SIGKILL it mid-flight."""

    def __init__(self, kubeconfig: Path, config: Config, log_path: Path, verbose: bool = True) -> None:
        self.kubeconfig, self.config, self.log_path = kubeconfig, config, log_path
        self.verbose = verbose  # debug logs for a test to show; a benchmark runs as deployed (INFO)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        env: dict[str, Any] = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "GANTRY_RECONCILE_INTERVAL": str(self.config.reconcile_interval),
            "GANTRY_LOCK_SWEEP_INTERVAL": str(self.config.lock_sweep_interval),
            "GANTRY_WAITING_INTERVAL": str(self.config.waiting_interval),
            "GANTRY_METRICS_PORT": str(self.config.metrics_port),
            "GANTRY_PROMETHEUS_URL": self.config.prometheus_url or "",
            "GANTRY_ALERTMANAGER_URL": self.config.alertmanager_url or "",
            "PYTHONPATH": str(ROOT / "operator"),
            "GANTRY_PEERING": self.config.peering or "",
            "GANTRY_API_TIMEOUT": str(self.config.api_timeout),
            "GANTRY_PEERING_LIFETIME": str(self.config.peering_lifetime),
            "GANTRY_PEERING_PRIORITY": ""
            if self.config.peering_priority is None
            else str(self.config.peering_priority),
        }
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gantry", "run", *(["--verbose"] if self.verbose else [])],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, no finalizers, no goodbye; like an OOM kill or a node loss."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
