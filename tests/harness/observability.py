"""Real Prometheus and Alertmanager (Debian's packages) on 127.0.0.1, and a metrics app to scrape.

The metrics app serves `http_requests_total{namespace, code}` counters that grow at the request
rate and error ratio a test sets per namespace, so a test can switch an application's 5xx
ratio up and down without sending traffic.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import services

PROMETHEUS = services.program("prometheus")
ALERTMANAGER = services.program("prometheus-alertmanager")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {timeout}s")


@dataclass
class Traffic:
    rps: float = 0.0
    error_ratio: float = 0.0
    ok: float = 0.0
    errors: float = 0.0
    since: float = 0.0


class MetricsApp:
    def __init__(self) -> None:
        self.port = free_port()
        self._traffic: dict[str, Traffic] = {}
        self._lock = threading.Lock()
        app = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = app.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> MetricsApp:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()

    def set(self, namespace: str, rps: float, error_ratio: float = 0.0) -> None:
        with self._lock:
            traffic = self._advance(namespace)
            traffic.rps, traffic.error_ratio = rps, error_ratio

    def _advance(self, namespace: str) -> Traffic:
        now = time.monotonic()
        traffic = self._traffic.setdefault(namespace, Traffic(since=now))
        elapsed = now - traffic.since
        traffic.ok += elapsed * traffic.rps * (1 - traffic.error_ratio)
        traffic.errors += elapsed * traffic.rps * traffic.error_ratio
        traffic.since = now
        return traffic

    def render(self) -> str:
        lines = ["# TYPE http_requests_total counter"]
        with self._lock:
            for namespace in list(self._traffic):
                traffic = self._advance(namespace)
                lines.append(f'http_requests_total{{namespace="{namespace}",code="200"}} {traffic.ok:.3f}')
                lines.append(
                    f'http_requests_total{{namespace="{namespace}",code="500"}} {traffic.errors:.3f}'
                )
        return "\n".join(lines) + "\n"


class Daemon:
    """A server binary run for the tests, on loopback only, stopped with them."""

    def __init__(self, argv: list[str], ready_url: str, log_path: Path) -> None:
        self.argv, self.ready_url, self.log_path = argv, ready_url, log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http(self.ready_url)
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"{self.argv[0]} did not start; see {self.log_path}") from None
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


class Prometheus(Daemon):
    def __init__(self, workdir: Path, target_port: int, scrape_seconds: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": f"{scrape_seconds}s", "evaluation_interval": f"{scrape_seconds}s"},
            "scrape_configs": [
                {"job_name": "app", "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        argv = [
            PROMETHEUS,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        super().__init__(argv, f"{self.url}/-/ready", workdir / "prometheus.log")

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=5) as response:
            result: list[dict[str, Any]] = json.load(response)["data"]["result"]
            return result


class Alertmanager(Daemon):
    def __init__(self, workdir: Path, config: dict[str, Any] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        config = config or {
            "route": {"receiver": "team", "group_wait": "1s"},
            "receivers": [{"name": "team"}],
        }
        (workdir / "alertmanager.yml").write_text(yaml.safe_dump(config))
        argv = [
            ALERTMANAGER,
            f"--config.file={workdir / 'alertmanager.yml'}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",  # no gossip on 0.0.0.0:9094
        ]
        super().__init__(argv, f"{self.url}/-/ready", workdir / "alertmanager.log")

    def post(self, alerts: list[dict[str, Any]]) -> None:
        """Alerts as Prometheus sends them (API v2); an endsAt in the past resolves one."""
        request = urllib.request.Request(
            f"{self.url}/api/v2/alerts",
            data=json.dumps(alerts).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(request, timeout=5).close()

    def alerts(self, **labels: str) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=5) as response:
            found: list[dict[str, Any]] = json.load(response)
        return [a for a in found if all(a["labels"].get(k) == v for k, v in labels.items())]


def binaries_missing() -> list[str]:
    return [b for b in (PROMETHEUS, ALERTMANAGER) if not shutil.which(b)]


@contextmanager
def observability(workdir: Path) -> Iterator[tuple[MetricsApp, Prometheus, Alertmanager]]:
    app = MetricsApp().start()
    prometheus = Prometheus(workdir / "prometheus", app.port)
    alertmanager = Alertmanager(workdir / "alertmanager")
    try:
        prometheus.start()
        alertmanager.start()
        yield app, prometheus, alertmanager
    finally:
        prometheus.stop()
        alertmanager.stop()
        app.stop()


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_binaries(missing: list[str], packages: str) -> None:
    """Skip a test whose daemons are not installed, except in CI, where that is a failure."""
    if missing:
        message = f"needs {', '.join(missing)}: apt-get install -y {packages}"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
