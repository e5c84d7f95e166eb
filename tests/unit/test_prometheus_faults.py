"""Prometheus misbehaving: every failure comes back as an inconclusive sample, never a pass or a crash."""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from gantry.adapters.prometheus import PrometheusSource
from gantry.domain.inputs.analysis import AnalysisSpec, Verdict, judge
from tests.harness.observability import free_port

Answer = Callable[[str], tuple[int, bytes]]


def vector(*values: str) -> bytes:
    result = [{"metric": {}, "value": [time.time(), v]} for v in values]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


@contextmanager
def prometheus(answer: Answer, delay: float = 0.0) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(delay)
            code, body = answer(self.path)
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError):  # the client gave up waiting (the slow case)
                self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


SPEC = AnalysisSpec(threshold=0.1, min_request_rate=1)


@pytest.mark.parametrize(
    ("answer", "delay", "why"),
    [
        (lambda path: (200, b"<html>not json</html>"), 0.0, "malformed"),
        (lambda path: (200, b'{"status": "success", "data": {"result": "nope"}}'), 0.0, "malformed"),
        (lambda path: (500, b'{"status": "error", "error": "boom"}'), 0.0, "server error"),
        (
            lambda path: (400, b'{"status": "error", "errorType": "bad_data", "error": "parse error"}'),
            0.0,
            "bad PromQL",
        ),
        (lambda path: (200, vector("0.2", "0.3")), 0.0, "several series"),
        (lambda path: (200, vector("not-a-number")), 0.0, "not a number"),
        (lambda path: (200, vector("0.01")), 2.0, "slow"),
    ],
)
def test_a_misbehaving_prometheus_gives_an_inconclusive_sample(
    answer: Answer, delay: float, why: str
) -> None:
    with prometheus(answer, delay) as url:
        sample = PrometheusSource(timeout=0.5).sample(url, "errors", "requests")
    assert sample.error is not None, why
    assert judge(sample, SPEC)[0] == Verdict.INCONCLUSIVE


def test_an_unreachable_prometheus_gives_an_inconclusive_sample() -> None:
    sample = PrometheusSource(timeout=0.5).sample(f"http://127.0.0.1:{free_port()}", "errors", "requests")
    assert sample.error is not None and judge(sample, SPEC)[0] == Verdict.INCONCLUSIVE


def test_empty_or_nan_answers_are_inconclusive_and_a_clean_answer_is_judged() -> None:
    with prometheus(lambda path: (200, vector())) as url:
        assert judge(PrometheusSource().sample(url, "e", "r"), SPEC)[0] == Verdict.INCONCLUSIVE
    with prometheus(lambda path: (200, vector("NaN"))) as url:
        sample = PrometheusSource().sample(url, "e", "r")
        assert sample.error_rate is not None and math.isnan(sample.error_rate)
        assert judge(sample, SPEC)[0] == Verdict.INCONCLUSIVE
    with prometheus(lambda path: (200, vector("50" if "query=r" in path else "0.5"))) as url:
        assert judge(PrometheusSource().sample(url, "e", "r"), SPEC)[0] == Verdict.BREACH
