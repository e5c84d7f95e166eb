"""Telling the team: Alertmanager's v2 API, an optional webhook (Slack-compatible), and the log.

Receivers come from the Pipeline (`spec.alerts`) or the operator's settings; a webhook URL is
read from a Kubernetes Secret so it never sits in a Pipeline. A receiver that is down is logged
and skipped: an alert must never stop a rollback.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Protocol

import requests

from gantry.domain.flow.model import Alert
from gantry.domain.inputs.pipeline import AlertConfig

log = logging.getLogger("gantry.alerts")
TIMEOUT_SECONDS = 5

SecretReader = Callable[[str, str], Mapping[str, str] | None]  # (namespace, name) -> data


class Alerter(Protocol):
    def send(self, alert: Alert, labels: dict[str, str], config: AlertConfig | None = None) -> None: ...


class LogAlerter:
    """Writes alerts to the operator log (they are also Warning Events on the Release)."""

    def send(self, alert: Alert, labels: dict[str, str], config: AlertConfig | None = None) -> None:
        log.warning("ALERT %s [%s] %s %s", alert.severity, alert.reason, alert.message, labels)


class AlertRouter:
    def __init__(self, default_alertmanager: str | None, read_secret: SecretReader) -> None:
        self.default_alertmanager = default_alertmanager
        self.read_secret = read_secret
        self.session = requests.Session()

    def send(self, alert: Alert, labels: dict[str, str], config: AlertConfig | None = None) -> None:
        LogAlerter().send(alert, labels, config)
        config = config or AlertConfig()
        all_labels = {**labels, **config.labels}
        alertmanager = config.alertmanager_url or self.default_alertmanager
        if alertmanager:
            self._post(f"{alertmanager.rstrip('/')}/api/v2/alerts", alertmanager_payload(alert, all_labels))
        if config.webhook_secret is not None:
            url = self._webhook_url(all_labels.get("namespace", ""), config.webhook_secret)
            if url:
                self._post(url, webhook_payload(alert, all_labels, config.webhook_format))

    def _webhook_url(self, namespace: str, secret: tuple[str, str]) -> str | None:
        data = self.read_secret(namespace, secret[0])
        if not data or secret[1] not in data:
            log.warning("alert webhook: Secret %s/%s has no key %r", namespace, secret[0], secret[1])
            return None
        return base64.b64decode(data[secret[1]]).decode().strip()

    def _post(self, url: str, payload: object) -> None:
        try:
            response = self.session.post(
                url,
                data=json.dumps(payload),
                timeout=TIMEOUT_SECONDS,
                headers={"Content-Type": "application/json"},
            )
            if response.status_code >= 300:
                log.warning("alert receiver %s answered %s: %.200s", url, response.status_code, response.text)
        except requests.RequestException as error:
            log.warning("alert receiver %s unreachable: %s", url, error)


def alertmanager_payload(alert: Alert, labels: Mapping[str, str]) -> list[dict[str, object]]:
    return [
        {
            "labels": {"alertname": f"Gantry{alert.reason}", "severity": alert.severity, **labels},
            "annotations": {
                "summary": f"{alert.reason}: {labels.get('release', '')}",
                "description": alert.message,
            },
            "startsAt": datetime.now(UTC).isoformat(),
        }
    ]


def webhook_payload(alert: Alert, labels: Mapping[str, str], format_: str) -> dict[str, object]:
    icon = ":rotating_light:" if alert.severity == "critical" else ":warning:"
    text = f"{icon} *{alert.reason}* ({alert.severity}) {alert.message}"
    if format_ == "Slack":
        return {"text": text}
    return {
        "text": text,
        "severity": alert.severity,
        "reason": alert.reason,
        "message": alert.message,
        "labels": dict(labels),
    }
