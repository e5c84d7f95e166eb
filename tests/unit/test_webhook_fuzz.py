"""The webhook endpoints under fuzzing: paths, headers and bodies from outside never name anything
but the source (or the namespace's locks) they spell, and never get an answer outside
200/202/400/401/403/404/413.

The real HTTP shell (adapters.webhooks, aiohttp on 127.0.0.1) and the real SourcePoller.hook, over
an in-memory API that serves two namespaces' sources and Secrets and records every path it is
asked for: a request may read only the source its path names (and that source's Secret, in the
source's own namespace), and may mark only that source as due.
"""

from __future__ import annotations

import asyncio
import base64
import json
import posixpath
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gantry.adapters import webhooks
from gantry.adapters.kube import custom_path
from gantry.adapters.resources import Resources
from gantry.domain.inputs import incidents
from gantry.domain.inputs.release_sources import NO_SUCH_SOURCE
from gantry.domain.vocabulary import names
from gantry.source_poller import SourcePoller
from gantry.stop_the_line import StopTheLine
from tests.harness.observability import free_port

ALLOWED = {200, 202, 400, 401, 403, 404, 413}  # (503: the API server failed; not here)
TOKENS = {"evil": "evil-token", "victim": "victim-token"}


def source(namespace: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "shop", "namespace": namespace},
        "spec": {
            "application": "shop",
            "git": {"repository": "https://git.example/shop.git", "branch": "main"},
            "artifacts": [{"name": "web", "repository": "registry.example/shop/web"}],
            "webhook": {"secretRef": {"name": "hooks"}},
        },
    }


def as_sent(path: str) -> str:
    """The path as an HTTP client sends it and a server routes it: dot segments resolved (urllib3
    and proxies do; an escaped `%2F` stays one segment)."""
    resolved = posixpath.normpath(path)
    return resolved + "/" if path.endswith("/") and resolved != "/" else resolved


class RecordingKube:
    """Serves objects by path as a real API server does; remembers each path asked for."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        for namespace, token in TOKENS.items():
            self.objects[custom_path("releasesources", namespace, "shop")] = source(namespace)
            self.objects[f"/api/v1/namespaces/{namespace}/secrets/hooks"] = {
                "data": {"token": base64.b64encode(token.encode()).decode()}
            }
            self.objects[f"/api/v1/namespaces/{namespace}/secrets/{incidents.SECRET}"] = {
                "data": {"token": base64.b64encode(token.encode()).decode()}
            }
        self.reads: list[str] = []
        self.writes: list[str] = []
        self.lock = threading.Lock()

    def get(self, path: str) -> dict[str, Any] | None:
        with self.lock:
            self.reads.append(as_sent(path))
        return self.objects.get(as_sent(path))

    def merge_patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.writes.append(as_sent(path))
        return {}

    def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.writes.append(as_sent(path))
        return {**body, "metadata": {**body["metadata"], "resourceVersion": "1"}}

    def replace(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.writes.append(as_sent(path))
        return dict(body)


class Endpoint:
    """The webhook server in a thread of its own, as the operator runs it."""

    def __init__(self) -> None:
        self.kube = RecordingKube()
        resources = Resources.__new__(Resources)
        resources.kube = self.kube  # type: ignore[assignment]  # only kube is used by hook()
        self.poller = SourcePoller(resources, None, lambda: datetime.now(UTC))
        resources._sightings = {}  # what Locks.__init__ sets
        self.stop_the_line = StopTheLine(resources, lambda: datetime.now(UTC))
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def handle(namespace: str, name: str, headers: Mapping[str, str], body: bytes) -> Any:
            return self.poller.hook(namespace, name, dict(headers), body)

        async def alerts(namespace: str, headers: Mapping[str, str], body: bytes) -> Any:
            return self.stop_the_line.receive(namespace, dict(headers), body)

        self.runner = self.loop.run_until_complete(webhooks.serve("127.0.0.1", self.port, handle, alerts))
        self.ready.set()
        self.loop.run_forever()

    def post(self, raw_path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, str]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{raw_path}", data=body, headers=dict(headers), method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return int(answer.status), answer.read().decode()
        except urllib.error.HTTPError as error:
            return int(error.code), error.read().decode()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[Endpoint]:
    running = Endpoint()
    running.thread.start()
    assert running.ready.wait(10)
    yield running
    asyncio.run_coroutine_threadsafe(running.runner.cleanup(), running.loop).result(10)
    running.loop.call_soon_threadsafe(running.loop.stop)


def segment_text() -> st.SearchStrategy[str]:
    pieces = st.sampled_from(
        [
            "..",
            ".",
            "/",
            "%2F",
            "%2f",
            "%2E%2E",
            "%252F",
            "victim",
            "evil",
            "shop",
            "releasesources",
            "%00",
            "%",
        ]
    )
    return st.one_of(
        st.lists(pieces, min_size=1, max_size=6).map("".join),
        st.text(min_size=1, max_size=30).map(lambda t: quote(t, safe="")),
        st.sampled_from(["evil", "victim", "shop", "nosuch", "a" * 300]),
    )


def acted_only_on_what_it_named(
    kube: RecordingKube, reads_before: int, writes_before: int, named: str
) -> None:
    """Every path read or written is the named source's, or that source's Secret."""
    allowed_reads = {named}
    obj = kube.objects.get(named)
    if obj is not None:
        allowed_reads.add(f"/api/v1/namespaces/{obj['metadata']['namespace']}/secrets/hooks")
    assert set(kube.reads[reads_before:]) <= allowed_reads, kube.reads[reads_before:]
    assert set(kube.writes[writes_before:]) <= {f"{named}/status"}, kube.writes[writes_before:]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    namespace=segment_text(),
    name=segment_text(),
    token=st.sampled_from([None, "evil-token", "victim-token", "", "x" * 100]),
    body=st.one_of(
        st.binary(max_size=200),
        st.just(json.dumps({"ref": "refs/heads/main"}).encode()),
        st.just(b'{"events": [{"action": "push", "target": {"repository": "shop/web", "tag": "abc"}}]}'),
    ),
    extra=st.dictionaries(
        st.sampled_from(["X-Gitlab-Token", "X-Hub-Signature-256", "Content-Type", "X-Forwarded-For"]),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80),
        max_size=2,
    ),
)
def test_no_path_header_or_body_acts_outside_the_source_it_names(
    endpoint: Endpoint, namespace: str, name: str, token: str | None, body: bytes, extra: dict[str, str]
) -> None:
    headers = dict(extra)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    kube = endpoint.kube
    reads, writes = len(kube.reads), len(kube.writes)
    status, text = endpoint.post(f"/hooks/releasesources/{namespace}/{name}", headers, body)
    assert status in ALLOWED, (status, text)
    decoded = unquote(namespace), unquote(name)  # what aiohttp hands the handler
    if not (names.is_namespace(decoded[0]) and names.is_object_name(decoded[1])):
        # Not a source's path: nothing is read or written, and the answer is a missing source's.
        assert (kube.reads[reads:], kube.writes[writes:]) == ([], [])
        assert (status, json.loads(text)["message"]) == (404, NO_SUCH_SOURCE.message)
        return
    acted_only_on_what_it_named(kube, reads, writes, custom_path("releasesources", *decoded))


def test_the_reported_traversal_answers_as_a_missing_source_and_touches_nothing(endpoint: Endpoint) -> None:
    kube = endpoint.kube
    reads, writes = len(kube.reads), len(kube.writes)
    bearer = {"Authorization": "Bearer evil-token"}
    event = json.dumps({"ref": "refs/heads/main"}).encode()
    missing = endpoint.post("/hooks/releasesources/evil/nosuch", bearer, event)
    for path in (
        "/hooks/releasesources/evil/..%2F..%2Fvictim%2Freleasesources%2Fshop",
        "/hooks/releasesources/..%2Fvictim/shop",
        "/hooks/releasesources/evil/%2E%2E",
        "/hooks/releasesources/evil/shop%2F..%2F..%2F..%2Fvictim%2Freleasesources%2Fshop",
        "/hooks/releasesources/EVIL/shop",
    ):
        assert endpoint.post(path, bearer, event) == missing, path  # no oracle: one answer
    assert missing[0] == 404
    assert set(kube.reads[reads:]) == {custom_path("releasesources", "evil", "nosuch")}
    assert kube.writes[writes:] == []
    # Its own source, with its own token: accepted, and only that source is marked due.
    assert endpoint.post("/hooks/releasesources/evil/shop", bearer, event)[0] == 202
    assert kube.writes[writes:] == [custom_path("releasesources", "evil", "shop") + "/status"]
    # Its token on the victim's source: refused.
    assert endpoint.post("/hooks/releasesources/victim/shop", bearer, event)[0] == 401


def alert_body(environment: str, status: str = "firing") -> bytes:
    alert = {
        "status": status,
        "labels": {"alertname": "ErrorBudgetBurn", incidents.ENVIRONMENT_LABEL: environment},
        "annotations": {"summary": "checkout errors"},
        "startsAt": "2026-12-03T10:00:00Z",
        "fingerprint": "abc123",
    }
    return json.dumps({"version": "4", "status": status, "alerts": [alert]}).encode()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    namespace=segment_text(),
    environment=st.one_of(segment_text(), st.sampled_from(["production", "../victim", "a,b", "PROD"])),
    token=st.sampled_from([None, "evil-token", "victim-token", "", "x" * 100]),
    raw=st.one_of(st.binary(max_size=200), st.just(b'{"alerts": 3}')),
)
def test_an_alertmanager_notification_touches_only_the_locks_of_the_namespace_it_names(
    endpoint: Endpoint, namespace: str, environment: str, token: str | None, raw: bytes
) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    kube = endpoint.kube
    reads, writes = len(kube.reads), len(kube.writes)
    for body in (raw, alert_body(unquote(environment))):
        status, text = endpoint.post(f"/hooks/alertmanager/{namespace}", headers, body)
        assert status in ALLOWED, (status, text)
    decoded = unquote(namespace)
    if not names.is_namespace(decoded):
        assert (kube.reads[reads:], kube.writes[writes:]) == ([], [])
        return
    own = custom_path("environmentlocks", decoded)
    secret = f"/api/v1/namespaces/{decoded}/secrets/{incidents.SECRET}"
    assert all(p in (secret, own) or p.startswith(own + "/") for p in kube.reads[reads:]), kube.reads[reads:]
    assert all(p.startswith(own) for p in kube.writes[writes:]), kube.writes[writes:]
    if token != TOKENS.get(decoded):
        assert kube.writes[writes:] == []
