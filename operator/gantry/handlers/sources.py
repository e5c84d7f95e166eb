"""ReleaseSources: look at the branch and the registry when a source's interval is due."""

from __future__ import annotations

from typing import Any

import kopf

from gantry.adapters.kube import GROUP, VERSION
from gantry.runtime import Runtime
from gantry.settings import Config


def register(registry: kopf.OperatorRegistry, config: Config) -> None:
    @kopf.timer(GROUP, VERSION, "releasesources", interval=config.source_tick, registry=registry)
    async def poll_source(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
        runtime: Runtime = memo
        await runtime.blocking(runtime.sources.poll, namespace or "", name)
