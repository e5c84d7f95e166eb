"""Stop-the-line: Alertmanager's webhook notifications, read as freezes of named environments.

An alert names the environments it stops with the label `gantry_environment` (one name, or
several separated by commas), e.g. in a Prometheus rule:

    labels: {severity: critical, gantry_environment: production}

While it fires, those environments' EnvironmentLocks take only hotfix Releases; when it resolves
(Alertmanager sends it again with status resolved, `send_resolved: true`), the freeze lifts. The
receiver is authenticated with a bearer token (Alertmanager's `http_config.authorization`) kept
in the namespace's Secret `gantry-stop-the-line`, key `token`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from gantry.domain.inputs.release_sources import Hook, authentic
from gantry.domain.vocabulary import names
from gantry.domain.vocabulary.timefmt import from_rfc3339

ENVIRONMENT_LABEL = "gantry_environment"
SECRET = "gantry-stop-the-line"
SECRET_KEY = "token"
MAX_ALERTS = 256  # Alertmanager groups alerts; a group larger than this is refused as a whole

NO_RECEIVER = Hook(404, "no stop-the-line receiver at this path")


@dataclass(frozen=True)
class Signal:
    """One alert's word about one environment."""

    environment: str
    alert: str  # alertname
    fingerprint: str
    firing: bool
    reason: str  # the alert's summary (or description), for the lock and the Releases it stops
    since: datetime


def unauthenticated(token: str | None, headers: Mapping[str, str]) -> Hook | None:
    """Why a request may not freeze anything (None: it may). Without the namespace's Secret the
    path answers as one that does not exist: the endpoint is no oracle."""
    if token is None:
        return NO_RECEIVER
    if not authentic({k: v for k, v in headers.items() if k.lower() == "authorization"}, b"", token):
        return Hook(
            401, f"not authorized: send the token of Secret {SECRET} (key {SECRET_KEY}) as a bearer token"
        )
    return None


def read(body: bytes) -> list[Signal] | Hook:
    """Alertmanager's webhook payload (version 4) -> signals, or a 400 naming what is wrong.
    Every environment's name is checked before it may name a lock."""
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        return Hook(400, "the body is not JSON (Alertmanager's webhook payload)")
    alerts = payload.get("alerts") if isinstance(payload, dict) else None
    if not isinstance(alerts, list) or not all(isinstance(a, dict) for a in alerts):
        return Hook(400, "alerts: a list of alerts is required (Alertmanager's webhook payload, version 4)")
    if len(alerts) > MAX_ALERTS:
        return Hook(413, f"alerts: {len(alerts)} alerts in one notification; at most {MAX_ALERTS}")
    out = []
    for i, alert in enumerate(alerts):
        labels, annotations = alert.get("labels") or {}, alert.get("annotations") or {}
        if not isinstance(labels, dict) or not isinstance(annotations, dict):
            return Hook(400, f"alerts[{i}]: labels and annotations must be objects")
        wanted = str(labels.get(ENVIRONMENT_LABEL) or "")
        environments = [e.strip() for e in wanted.split(",") if e.strip()]
        bad = [e for e in environments if not names.is_object_name(e)]
        if bad:
            return Hook(
                400, f"alerts[{i}].labels.{ENVIRONMENT_LABEL}: {bad[0][:64]!r} is not an environment name"
            )
        status, fingerprint = alert.get("status"), str(alert.get("fingerprint") or "")
        if status not in ("firing", "resolved") or not fingerprint or len(fingerprint) > 64:
            return Hook(400, f"alerts[{i}]: status firing|resolved and a fingerprint are required")
        try:
            since = from_rfc3339(str(alert.get("startsAt")))
            since = since if since.tzinfo is not None else since.replace(tzinfo=UTC)
        except ValueError:
            return Hook(400, f"alerts[{i}].startsAt: {str(alert.get('startsAt'))[:40]!r} is not a time")
        name = str(labels.get("alertname") or "unnamed")[:253]
        reason = str(annotations.get("summary") or annotations.get("description") or name)[:1024]
        for environment in environments:
            out.append(Signal(environment, name, fingerprint, status == "firing", reason, since))
    return out
