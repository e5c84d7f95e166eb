"""ReleaseSources: look at the branch and the registry when a source's interval is due, or at once
after a push webhook (served while the operator runs, GANTRY_WEBHOOK_PORT)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf
from aiohttp import web

from gantry.adapters import webhooks
from gantry.adapters.kube import GROUP, VERSION
from gantry.domain.inputs.release_sources import Hook
from gantry.handlers import serving
from gantry.runtime import Runtime
from gantry.settings import Config


def register(registry: kopf.OperatorRegistry, config: Config) -> None:
    @kopf.timer(GROUP, VERSION, "releasesources", interval=config.source_tick, registry=registry)
    async def poll_source(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
        runtime: Runtime = memo
        await runtime.looking(runtime.sources.poll, namespace or "", name)

    @kopf.on.cleanup(registry=registry)
    async def stop_looking(memo: Any, **_: Any) -> None:
        executor = getattr(memo, "source_executor", None)
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)  # a hung look ends at its git timeout

    if not config.webhook_port:
        return

    async def start(runtime: Runtime) -> web.AppRunner:
        async def handle(namespace: str, name: str, headers: Mapping[str, str], body: bytes) -> Hook:
            return await runtime.blocking(runtime.sources.hook, namespace, name, dict(headers), body)

        async def alerts(namespace: str, headers: Mapping[str, str], body: bytes) -> Hook:
            return await runtime.blocking(runtime.stop_the_line.receive, namespace, dict(headers), body)

        return await webhooks.serve(config.webhook_address, config.webhook_port, handle, alerts)

    where = (config.webhook_address, config.webhook_port)
    serving.serve_while_running(registry, "webhooks", "GANTRY_WEBHOOK_PORT", where, start)
