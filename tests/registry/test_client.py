"""The distribution-API client against a real registry: digests survive byte for byte (skopeo checks),
blobs are mounted rather than uploaded, a re-run finishes a half-done copy, tags are never moved."""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from gantry.adapters.registry import RegistryClient, RegistryError, Repository, parse_repository
from tests.harness.observability import free_port
from tests.harness.registry import Layout, Registry, build_image
from tests.registry.conftest import USERS


class Recorder:
    """Every request the client sends, as (method, path and query, status)."""

    def __init__(self, client: RegistryClient) -> None:
        self.calls: list[tuple[str, str, int]] = []
        client.session.hooks["response"].append(self._record)

    def _record(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        url = requests.utils.urlparse(response.request.url)
        self.calls.append((str(response.request.method), f"{url.path}?{url.query}", response.status_code))

    def uploads(self) -> list[tuple[str, str, int]]:
        """Blob bytes sent: PUTs or PATCHes to an upload session."""
        return [c for c in self.calls if "/blobs/uploads/" in c[1] and c[0] in ("PUT", "PATCH")]


def client_for(registry: Registry, password: str | None = None) -> RegistryClient:
    credentials = {}
    if registry.users:
        user, right = next(iter(registry.users.items()))
        credentials = {registry.host: (user, password if password is not None else right)}
    return RegistryClient(credentials=credentials, tls={registry.host: "Disabled"})


def repo(registry: Registry, path: str) -> Repository:
    return parse_repository(f"{registry.host}/{path}")


@dataclass
class Pushed:
    name: str  # repositories dev/<name>-web and dev/<name>-worker hold the images, tagged "build"
    web: Layout
    worker: Layout


@pytest.fixture
def pushed(open_registry: Registry, tmp_path: Path, request: pytest.FixtureRequest) -> Pushed:
    """A single-arch and a two-platform image in dev/<test>-web and dev/<test>-worker."""
    name = request.node.name.replace("_", "-")[:40].strip("-")
    single = build_image(tmp_path / "single", f"{name} web")
    multi = build_image(tmp_path / "multi", f"{name} worker", platforms=("amd64", "arm64"))
    open_registry.push(single, f"dev/{name}-web", "build")
    open_registry.push(multi, f"dev/{name}-worker", "build")
    return Pushed(name, single, multi)


def test_tag_in_place_adds_the_version_to_the_same_bytes_and_moves_no_blob(
    open_registry: Registry, pushed: Pushed
) -> None:
    name, web = pushed.name, pushed.web
    client = client_for(open_registry)
    calls = Recorder(client)
    source = repo(open_registry, f"dev/{name}-web")
    client.tag(source, web.digest, source, "v1.0.0")
    assert open_registry.digest(f"dev/{name}-web", "v1.0.0") == web.digest
    assert not [c for c in calls.calls if "/blobs/" in c[1]]


def test_copy_mounts_blobs_across_repositories_and_keeps_the_digest(
    open_registry: Registry, pushed: Pushed
) -> None:
    name, web = pushed.name, pushed.web
    client = client_for(open_registry)
    calls = Recorder(client)
    client.tag(
        repo(open_registry, f"dev/{name}-web"), web.digest, repo(open_registry, f"prod/{name}-web"), "v1.0.0"
    )
    assert open_registry.digest(f"prod/{name}-web", "v1.0.0") == web.digest
    mounts = [c for c in calls.calls if "mount=" in c[1]]
    assert len(mounts) == 2 and all(status == 201 for _, _, status in mounts)  # config + layer
    assert calls.uploads() == []


def test_a_multi_arch_index_is_copied_whole_children_first_with_its_digest(
    open_registry: Registry, pushed: Pushed
) -> None:
    name, worker = pushed.name, pushed.worker
    client = client_for(open_registry)
    calls = Recorder(client)
    target = f"prod/{name}-worker"
    client.tag(
        repo(open_registry, f"dev/{name}-worker"), worker.digest, repo(open_registry, target), "v1.0.0"
    )
    assert open_registry.digest(target, "v1.0.0") == worker.digest
    index = open_registry.raw(target, "v1.0.0")
    assert [m["platform"]["architecture"] for m in index["manifests"]] == ["amd64", "arm64"]  # type: ignore[index]
    for child in worker.children:
        assert open_registry.digest(target, child) == child
    puts = [c[1] for c in calls.calls if c[0] == "PUT" and "/manifests/" in c[1]]
    children_at = [next(i for i, p in enumerate(puts) if child in p) for child in worker.children]
    assert max(children_at) < puts.index(next(p for p in puts if p.endswith("v1.0.0?")))


def test_a_copy_interrupted_half_way_is_finished_by_running_it_again(
    open_registry: Registry, pushed: Pushed
) -> None:
    name, worker = pushed.name, pushed.worker
    client = client_for(open_registry)
    source, target = repo(open_registry, f"dev/{name}-worker"), repo(open_registry, f"prod/{name}-worker")
    client.copy(source, target, worker.children[0])  # the crash came after the first platform
    calls = Recorder(client)
    client.tag(source, worker.digest, target, "v1.0.0")
    assert open_registry.digest(target.path, "v1.0.0") == worker.digest
    assert not [c for c in calls.calls if worker.children[0] in c[1] and c[0] == "PUT"]  # not redone
    calls.calls.clear()
    client.tag(source, worker.digest, target, "v1.0.0")  # and a third run changes nothing
    assert [c[0] for c in calls.calls] == ["HEAD"]


def test_a_tag_on_another_digest_is_never_overwritten(open_registry: Registry, pushed: Pushed) -> None:
    name, web, worker = pushed.name, pushed.web, pushed.worker
    client = client_for(open_registry)
    target = repo(open_registry, f"prod/{name}-web")
    client.tag(repo(open_registry, f"dev/{name}-web"), web.digest, target, "v2.0.0")
    with pytest.raises(RegistryError) as refused:
        client.tag(repo(open_registry, f"dev/{name}-worker"), worker.digest, target, "v2.0.0")
    assert refused.value.kind == "collision" and "never moved" in str(refused.value)
    assert open_registry.digest(target.path, "v2.0.0") == web.digest


def test_basic_auth_with_the_right_and_the_wrong_password(auth_registry: Registry, tmp_path: Path) -> None:
    image = build_image(tmp_path / "img", "authenticated")
    auth_registry.push(image, "dev/web", "build")
    good = client_for(auth_registry)
    good.tag(repo(auth_registry, "dev/web"), image.digest, repo(auth_registry, "prod/web"), "v1.0.0")
    assert auth_registry.digest("prod/web", "v1.0.0") == image.digest
    for client in (
        client_for(auth_registry, password="wrong"),
        RegistryClient(tls={auth_registry.host: "Disabled"}),
    ):
        with pytest.raises(RegistryError) as refused:
            client.resolve(repo(auth_registry, "dev/web"), "build")
        assert refused.value.kind == "auth" and auth_registry.host in str(refused.value)


def test_a_copy_between_two_registries_streams_the_blobs(
    open_registry: Registry, auth_registry: Registry, pushed: Pushed
) -> None:
    name, worker = pushed.name, pushed.worker
    client = RegistryClient(
        credentials={auth_registry.host: next(iter(USERS.items()))},
        tls={open_registry.host: "Disabled", auth_registry.host: "Disabled"},
    )
    calls = Recorder(client)
    client.tag(
        repo(open_registry, f"dev/{name}-worker"), worker.digest, repo(auth_registry, f"mirror/{name}"), "v1"
    )
    assert auth_registry.digest(f"mirror/{name}", "v1") == worker.digest
    assert len(calls.uploads()) == 4  # two platforms x (config + layer), no mount across hosts


def test_an_unreachable_or_failing_registry_is_reported_as_unavailable() -> None:
    port = free_port()
    client = RegistryClient(tls={f"127.0.0.1:{port}": "Disabled"}, timeout=2)
    with pytest.raises(RegistryError) as down:
        client.resolve(parse_repository(f"127.0.0.1:{port}/dev/web"), "v1")
    assert down.value.kind == "unavailable" and down.value.transient
    with FakeRegistry(status=503) as host, pytest.raises(RegistryError) as failing:
        RegistryClient(tls={host: "Disabled"}).resolve(parse_repository(f"{host}/dev/web"), "v1")
    assert failing.value.kind == "unavailable" and "503" in str(failing.value)


def test_bearer_token_challenge_gets_a_token_with_the_secrets_credentials() -> None:
    with FakeRegistry(bearer=True) as host:
        client = RegistryClient(credentials={host: ("ci", "s3cret")}, tls={host: "Disabled"})
        assert client.resolve(parse_repository(f"{host}/dev/web"), "v1") == "sha256:" + "a" * 64
        wrong = RegistryClient(credentials={host: ("ci", "nope")}, tls={host: "Disabled"})
        with pytest.raises(RegistryError) as refused:
            wrong.resolve(parse_repository(f"{host}/dev/web"), "v1")
        assert refused.value.kind == "auth"


class FakeRegistry:
    """A registry front door only: a fixed status, or Bearer token auth (realm on the same server)."""

    def __init__(self, status: int = 200, bearer: bool = False) -> None:
        self.port = free_port()
        status_, bearer_, port = status, bearer, self.port

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/token"):
                    expected = "Basic " + base64.b64encode(b"ci:s3cret").decode()
                    if self.headers.get("Authorization") != expected or "scope=repository" not in self.path:
                        self._reply(401, b"{}")
                        return
                    self._reply(200, json.dumps({"token": "t0k3n"}).encode())
                    return
                self.do_HEAD()

            def do_HEAD(self) -> None:
                if bearer_ and self.headers.get("Authorization") != "Bearer t0k3n":
                    challenge = f'Bearer realm="http://127.0.0.1:{port}/token",service="fake"'
                    self._reply(401, b"", {"WWW-Authenticate": challenge})
                    return
                self._reply(status_, b"", {"Docker-Content-Digest": "sha256:" + "a" * 64})

            def _reply(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)

    def __enter__(self) -> str:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
