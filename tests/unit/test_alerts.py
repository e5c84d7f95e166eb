"""Alert routing: Alertmanager's v2 payload and a Slack-compatible webhook whose URL is a Secret."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from gantry.adapters.alerts import AlertRouter
from gantry.domain.flow.model import Alert
from gantry.domain.inputs.pipeline import AlertConfig


def receiver() -> tuple[ThreadingHTTPServer, list[tuple[str, Any]]]:
    received: list[tuple[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, json.loads(body)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, received


def test_alerts_reach_alertmanager_and_the_webhook_from_the_secret() -> None:
    server, received = receiver()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    secrets = {("team", "shop-alerts"): {"url": base64.b64encode(f"{url}/hook".encode()).decode()}}
    router = AlertRouter(None, lambda namespace, name: secrets.get((namespace, name)))
    config = AlertConfig(labels={"team": "shop"}, alertmanager_url=url, webhook_secret=("shop-alerts", "url"))
    try:
        router.send(
            Alert("critical", "ErrorRateBreach", "5xx at 40%"),
            {"release": "team/shop-v2", "namespace": "team"},
            config,
        )
    finally:
        server.shutdown()
    paths = dict(received)
    [alert] = paths["/api/v2/alerts"]
    assert alert["labels"] == {
        "alertname": "GantryErrorRateBreach",
        "severity": "critical",
        "release": "team/shop-v2",
        "namespace": "team",
        "team": "shop",
    }
    assert alert["annotations"]["description"] == "5xx at 40%"
    assert paths["/hook"] == {"text": ":rotating_light: *ErrorRateBreach* (critical) 5xx at 40%"}


def test_a_receiver_that_is_down_does_not_stop_anything() -> None:
    router = AlertRouter("http://127.0.0.1:9", lambda namespace, name: None)
    router.send(
        Alert("warning", "TestFailed", "x"),
        {"namespace": "team"},
        AlertConfig(webhook_secret=("gone", "url")),
    )
