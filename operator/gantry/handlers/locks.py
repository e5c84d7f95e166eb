"""EnvironmentLocks: sweep expired leases so `kubectl get environmentlocks` never shows a dead holder."""

from __future__ import annotations

from typing import Any

import kopf

from gantry.adapters.kube import GROUP, VERSION
from gantry.reconciler import utcnow
from gantry.runtime import Runtime
from gantry.settings import Config


def register(registry: kopf.OperatorRegistry, config: Config) -> None:
    @kopf.timer(GROUP, VERSION, "environmentlocks", interval=config.lock_sweep_interval, registry=registry)
    def sweep_expired_leases(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
        now = utcnow()
        runtime: Runtime = memo
        runtime.resources.sweep_lock(namespace or "", name, now)
