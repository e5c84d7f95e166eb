"""The web view (the cockpit), served by the operator on its own port (GANTRY_WEB_PORT).

GET / is one page (gantry/web: HTML, a script and a style sheet, nothing fetched from the
internet) that polls GET /api/state: per application, what `kubectl gantry status -o json` says
(environments with what runs there, since when and whether it is healthy, locks and queues,
Releases in flight with their bake evaluations and the exact commands, the production ledger and
quarantine). Every button shows its `kubectl gantry` command to copy.

Read-only unless an authenticating proxy in front of it (oauth2-proxy's convention) passes the
person as X-Forwarded-User and X-Forwarded-Groups and the operator is told to trust them
(GANTRY_WEB_PROXY_HEADERS). POST /api/decisions then creates the ReleaseDecision impersonating
that person, so Kubernetes RBAC and the decidedBy admission policy judge it as they judge the
person's own kubectl. Without the header nothing can be written.

Input from outside is checked before it names anything: namespaces and names as Kubernetes
names, actions from the decision vocabulary, bodies of bounded size and JSON only; a write needs
a JSON body (a form on another site cannot send one) and, when the browser says where it comes
from, this very origin.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from aiohttp import web

from gantry.adapters.kube import ApiError, Kube, custom_path
from gantry.domain.records.decisions import Action
from gantry.domain.vocabulary import names
from gantry.plugin import main as plugin
from gantry.plugin import views

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024
USER_HEADER, GROUPS_HEADER = "X-Forwarded-User", "X-Forwarded-Groups"
STATIC = {"app.js": "text/javascript", "style.css": "text/css"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# The buttons the view offers, and the plugin verb each one is.
VERBS = {
    Action.APPROVE: "approve",
    Action.ROLLBACK: "rollback",
    Action.FAIL_FORWARD: "fail-forward",
    Action.EMERGENCY: "emergency",
    Action.LIFT_QUARANTINE: "lift-quarantine",
    Action.OVERRIDE_FREEZE: "override-freeze",
}

Blocking = Callable[..., Awaitable[Any]]


class Cockpit:
    def __init__(
        self, kube: Kube, blocking: Blocking, namespaces: tuple[str, ...], trust_proxy: bool
    ) -> None:
        self.kube, self.blocking = kube, blocking
        self.namespaces, self.trust_proxy = namespaces, trust_proxy

    def person(self, request: web.Request) -> tuple[str, list[str]] | None:
        """Who the proxy says this is, when the proxy is trusted; None: nobody (read-only)."""
        if not self.trust_proxy:
            return None
        user = request.headers.get(USER_HEADER, "").strip()
        if not user or len(user) > 253:
            return None
        groups = [g.strip() for g in request.headers.get(GROUPS_HEADER, "").split(",") if g.strip()]
        return user, groups[:64]

    def state(self, namespace: str | None) -> dict[str, Any]:
        where = namespace or (self.namespaces[0] if len(self.namespaces) == 1 else None)
        _, applications = plugin.status_of(self.kube, where, None, datetime.now(UTC))
        return {**views.status_document(applications), "generatedAt": datetime.now(UTC).isoformat()}

    def decide(self, person: tuple[str, list[str]], body: Mapping[str, Any]) -> tuple[int, str]:
        namespace, release = str(body.get("namespace") or ""), str(body.get("release") or "")
        action, reason = str(body.get("action") or ""), str(body.get("reason") or "")
        if not names.is_namespace(namespace) or not names.is_object_name(release):
            return 400, "namespace and release must be a Kubernetes namespace and Release name"
        if action not in VERBS:
            return 400, f"action must be one of {', '.join(VERBS)}"
        if not reason.strip() or len(reason) > 1000:
            return (
                400,
                "reason: say why, in at most 1,000 characters; it is kept in the decision and the ledger",
            )
        user, groups = person
        manifest = plugin.decision_manifest(namespace, release, action, user, groups, f"{reason} (web view)")
        try:
            created = self.kube.as_user(user, groups).create(
                custom_path("releasedecisions", namespace), manifest
            )
        except ApiError as error:  # RBAC or the admission policy said no: say what it said
            return error.status if 400 <= error.status < 500 else 502, error.message
        name = created["metadata"]["name"]
        log.info("web view: %s decided %s on %s/%s (%s)", user, action, namespace, release, name)
        return 201, f"releasedecision.gantry.dev/{name} created: {action} on {release} as {user}"


def app(cockpit: Cockpit) -> web.Application:
    async def page(_: web.Request) -> web.Response:
        return asset("index.html", "text/html")

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        return asset(name, STATIC[name])

    async def state(request: web.Request) -> web.Response:
        namespace = request.query.get("namespace") or None
        if namespace is not None and not names.is_namespace(namespace):
            return answer(400, {"message": "namespace: not a Kubernetes namespace name"})
        try:
            found = await cockpit.blocking(cockpit.state, namespace)
        except ApiError as error:
            return answer(502, {"message": f"the API server said: {error.message}"})
        person = cockpit.person(request)
        found["viewer"] = {"user": person[0] if person else None, "canDecide": person is not None}
        return answer(200, found)

    async def decide(request: web.Request) -> web.Response:
        person = cockpit.person(request)
        if person is None:
            return answer(403, {"message": "read-only: copy the command shown, or sign in through the proxy"})
        if request.content_type != "application/json" or not same_origin(request):
            return answer(403, {"message": "decisions are JSON from this page only"})
        try:
            body = json.loads(await request.read())
        except ValueError:
            return answer(400, {"message": "the body is not JSON"})
        if not isinstance(body, dict):
            return answer(400, {"message": "the body is not a JSON object"})
        status, message = await cockpit.blocking(cockpit.decide, person, body)
        return answer(status, {"message": message})

    application = web.Application(client_max_size=MAX_BODY)
    application.router.add_get("/", page)
    application.router.add_get("/static/{name}", static)
    application.router.add_get("/api/state", state)
    application.router.add_post("/api/decisions", decide)
    return application


def same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    return origin is None or origin.split("://", 1)[-1] == request.host


def asset(name: str, content_type: str) -> web.Response:
    text = resources.files("gantry").joinpath("web", name).read_text()
    return web.Response(text=text, content_type=content_type, headers=SECURITY_HEADERS)


def answer(status: int, body: Mapping[str, Any]) -> web.Response:
    return web.json_response(body, status=status, headers=SECURITY_HEADERS)


async def serve(cockpit: Cockpit, address: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app(cockpit), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, address, port).start()
    return runner
