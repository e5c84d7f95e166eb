"""The HTTP servers the operator runs beside its handlers (push webhooks, the web view): started
with the operator, stopped with it; a port already taken stops start-up at once with one line
that names the setting, instead of Kopf retrying start-up."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import kopf
from aiohttp import web

from gantry.runtime import Runtime


def serve_while_running(
    registry: kopf.OperatorRegistry,
    what: str,
    setting: str,
    where: tuple[str, int],
    start: Callable[[Runtime], Awaitable[web.AppRunner]],
) -> None:
    """`what`: the server, in words (and the Runtime attribute that holds it, spaces as _)."""
    attribute = what.replace(" ", "_")

    @kopf.on.startup(id=f"serve {what}", registry=registry)
    async def start_server(memo: Any, **_: Any) -> None:
        try:
            setattr(memo, attribute, await start(memo))
        except OSError as error:
            raise kopf.PermanentError(
                f"cannot serve {what} on {where[0]}:{where[1]}: {error.strerror}; "
                f"fix: free the port, or set {setting} (0: none)"
            ) from error

    @kopf.on.cleanup(id=f"stop {what}", registry=registry)
    async def stop_server(memo: Any, **_: Any) -> None:
        runner = getattr(memo, attribute, None)
        if runner is not None:
            await runner.cleanup()
