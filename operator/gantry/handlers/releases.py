"""Releases: a timer per in-flight Release drives it through its stages."""

from __future__ import annotations

from typing import Any

import kopf

from gantry.adapters.kube import GROUP, VERSION
from gantry.domain.release import TERMINAL
from gantry.runtime import Runtime
from gantry.settings import Config


def in_flight(status: kopf.Status, **_: Any) -> bool:
    return status.get("phase") not in TERMINAL


def register(registry: kopf.OperatorRegistry, config: Config) -> None:
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
        runtime: Runtime = memo
        runtime.reconciler.reconcile(namespace or "", name)
