"""Stop-the-line: an Alertmanager notification freezes (or unfreezes) the environments its alerts
name, on their EnvironmentLocks (domain.inputs.incidents says how an alert names them)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from gantry.adapters.kube import ApiError
from gantry.adapters.objects.locks import LockUpdate
from gantry.adapters.resources import Resources
from gantry.domain.inputs import incidents
from gantry.domain.inputs.release_sources import Hook
from gantry.domain.records import locks


@dataclass
class StopTheLine:
    resources: Resources
    clock: Callable[[], datetime]

    def receive(self, namespace: str, headers: Mapping[str, str], body: bytes) -> Hook:
        """`namespace` is a valid namespace name (adapters.webhooks checks it)."""
        refused = incidents.unauthenticated(self.token(namespace), headers)
        if refused is not None:
            return refused
        signals = incidents.read(body)
        if isinstance(signals, Hook):
            return signals
        now = self.clock()
        try:
            for signal in signals:
                self.resources.update_lock(namespace, signal.environment, change(signal, now), now)
        except ApiError as error:  # Alertmanager retries a notification answered with 5xx
            return Hook(503, f"could not record the freeze on the EnvironmentLock ({error.message}); retry")
        firing = sorted({s.environment for s in signals if s.firing})
        resolved = sorted({s.environment for s in signals if not s.firing})
        said = [f"frozen: {', '.join(firing)}"] if firing else []
        said += [f"resolved: {', '.join(resolved)}"] if resolved else []
        return Hook(
            200, "; ".join(said) or f"no alert names an environment (label {incidents.ENVIRONMENT_LABEL})"
        )

    def token(self, namespace: str) -> str | None:
        data = self.resources.read_secret(namespace, incidents.SECRET) or {}
        encoded = data.get(incidents.SECRET_KEY)
        if not encoded:
            return None
        try:
            return base64.b64decode(encoded).decode().strip() or None
        except (binascii.Error, UnicodeDecodeError):
            return None


def change(signal: incidents.Signal, now: datetime) -> LockUpdate:
    def apply(
        state: locks.LockState, lease: timedelta, seen: locks.Sightings
    ) -> tuple[locks.LockState, None]:
        if signal.firing:
            return locks.incident_fires(
                state, signal.alert, signal.fingerprint, signal.reason, signal.since
            ), None
        return locks.incident_resolves(state, signal.fingerprint, now), None

    return apply
