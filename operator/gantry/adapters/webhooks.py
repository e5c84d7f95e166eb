"""The webhook endpoints: POST /hooks/releasesources/<namespace>/<name> from a git host's push
event or a registry's notification; POST /hooks/alertmanager/<namespace> from Alertmanager
(stop-the-line: its alerts freeze the environments they name).

A thin HTTP shell: the request's headers and body go to the caller's handler (which checks the
source's secret and decides, see domain.inputs.release_sources.hook); its status and message go back.
The path's namespace and name come from outside: aiohttp decodes them (`%2F` becomes `/`), so
they are checked to be a Kubernetes namespace and object name before they may name anything, and
anything else answers exactly as a source that does not exist does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from gantry.domain.inputs.release_sources import NO_SUCH_SOURCE, Hook
from gantry.domain.vocabulary import names

MAX_BODY = 1024 * 1024  # push events are small; anything larger is refused before it is read
Handle = Callable[[str, str, Mapping[str, str], bytes], Awaitable[Hook]]
HandleAlerts = Callable[[str, Mapping[str, str], bytes], Awaitable[Hook]]


async def serve(address: str, port: int, handle: Handle, alerts: HandleAlerts) -> web.AppRunner:
    async def receive(request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        if not (names.is_namespace(namespace) and names.is_object_name(name)):
            answer = NO_SUCH_SOURCE
        else:
            answer = await handle(namespace, name, request.headers, await request.read())
        return web.json_response({"message": answer.message}, status=answer.status)

    async def receive_alerts(request: web.Request) -> web.Response:
        namespace = request.match_info["namespace"]
        if not names.is_namespace(namespace):
            answer = NO_SUCH_SOURCE
        else:
            answer = await alerts(namespace, request.headers, await request.read())
        return web.json_response({"message": answer.message}, status=answer.status)

    @web.middleware
    async def elsewhere_is_missing(request: web.Request, handler: Any) -> web.StreamResponse:
        """Any other path or method answers as a missing source does."""
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
            return web.json_response({"message": NO_SUCH_SOURCE.message}, status=NO_SUCH_SOURCE.status)

    app = web.Application(client_max_size=MAX_BODY, middlewares=[elsewhere_is_missing])
    app.router.add_post("/hooks/releasesources/{namespace}/{name}", receive)
    app.router.add_post("/hooks/alertmanager/{namespace}", receive_alerts)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, address, port).start()
    return runner
