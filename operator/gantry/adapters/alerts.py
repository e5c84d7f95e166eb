"""Telling the team: every alert is logged; receivers plug in behind the `Alerter` protocol."""

from __future__ import annotations

import logging
from typing import Protocol

from gantry.domain.release import Alert

log = logging.getLogger("gantry.alerts")


class Alerter(Protocol):
    def send(self, alert: Alert, labels: dict[str, str]) -> None: ...


class LogAlerter:
    """Writes alerts to the operator log (also visible as Warning Events on the Release)."""

    def send(self, alert: Alert, labels: dict[str, str]) -> None:
        log.warning("ALERT %s [%s] %s %s", alert.severity, alert.reason, alert.message, labels)
