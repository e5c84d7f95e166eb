"""Releases: a timer per Release drives it; one that waits for a person is looked at less often."""

from __future__ import annotations

from typing import Any

import kopf

from gantry.adapters.kube import GROUP, VERSION
from gantry.domain.model import FINAL, WAITING
from gantry.runtime import Runtime
from gantry.settings import Config


def in_flight(status: kopf.Status, **_: Any) -> bool:
    phase = status.get("phase")
    return phase not in FINAL and phase not in WAITING


def waiting(status: kopf.Status, **_: Any) -> bool:
    return status.get("phase") in WAITING


def register(registry: kopf.OperatorRegistry, config: Config) -> None:
    def advance(namespace: str | None, name: str, memo: Any) -> None:
        runtime: Runtime = memo
        try:
            runtime.reconciler.reconcile(namespace or "", name)
        except Exception:
            if runtime.metrics is not None:
                runtime.metrics.reconcile_errors.labels("Release").inc()
            raise

    @kopf.timer(
        GROUP,
        VERSION,
        "releases",
        interval=config.reconcile_interval,
        backoff=config.reconcile_interval,
        when=in_flight,
        registry=registry,
    )
    def advance_release(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
        advance(namespace, name, memo)

    @kopf.timer(
        GROUP,
        VERSION,
        "releases",
        interval=config.waiting_interval,
        backoff=config.waiting_interval,
        when=waiting,
        registry=registry,
    )
    def check_waiting_release(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
        advance(namespace, name, memo)
