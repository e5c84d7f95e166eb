"""The webhook endpoint: POST /hooks/releasesources/<namespace>/<name> from a git host's push event
or a registry's notification.

A thin HTTP shell: the request's headers and body go to the caller's handler (which checks the
source's secret and decides, see domain.release_sources.hook); its status and message go back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from gantry.domain.release_sources import Hook

MAX_BODY = 1024 * 1024  # push events are small; anything larger is refused before it is read
Handle = Callable[[str, str, Mapping[str, str], bytes], Awaitable[Hook]]


async def serve(address: str, port: int, handle: Handle) -> web.AppRunner:
    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        answer = await handle(
            request.match_info["namespace"], request.match_info["name"], request.headers, body
        )
        return web.json_response({"message": answer.message}, status=answer.status)

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/hooks/releasesources/{namespace}/{name}", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, address, port).start()
    return runner
