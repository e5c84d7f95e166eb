"""A small OCI distribution-API client: read what a tag points at, tag a digest, copy a digest.

Why our own client: promotion must keep digests byte for byte. oras-py 0.2.43 re-encodes a
manifest when it re-tags (`get_manifest` then `upload_manifest` changed the digest) and has no
copy between repositories. Keeping digests takes only a few calls of the distribution API, done
here on `requests`: fetch a manifest's raw bytes with its exact Content-Type, mount or stream the
blobs the target lacks, and PUT those same bytes. Every digest a registry reports is checked
against sha256 of the bytes we hold.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import tempfile
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import requests

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)

TLS_MODES = ("Verify", "SkipVerify", "Disabled")  # Disabled: plain HTTP, for local registries
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
CHUNK = 1 << 20


class RegistryError(Exception):
    """`kind` tells the caller what to do: wait (unavailable), fix credentials (auth), or stop."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # unavailable | auth | collision | invalid (see registry_effects.failure_of)

    @property
    def transient(self) -> bool:
        return self.kind == "unavailable"


@dataclass(frozen=True)
class Repository:
    host: str  # as written in image references (docker.io, registry.example.com:5000)
    path: str  # e.g. prod/shop

    def __str__(self) -> str:
        return f"{self.host}/{self.path}"


def parse_repository(name: str) -> Repository:
    """Split an image repository the way docker does: the first part is a host if it looks like one."""
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return Repository(first, rest)
    return Repository(DOCKER_HUB, name if rest else f"library/{name}")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def parse_dockerconfigjson(raw: bytes | str) -> dict[str, tuple[str, str]]:
    """Registry host -> (username, password) from a kubernetes.io/dockerconfigjson Secret's data."""
    config = json.loads(raw)
    out: dict[str, tuple[str, str]] = {}
    for server, entry in (config.get("auths") or {}).items():
        if entry.get("auth"):
            username, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        else:
            username, password = entry.get("username", ""), entry.get("password", "")
        if not username and not password:
            continue
        host = re.sub(r"^https?://", "", server).split("/", 1)[0]
        out[DOCKER_HUB if host in ("index.docker.io", DOCKER_HUB_API) else host] = (username, password)
    return out


REQUEST_TIMEOUT = 30.0  # seconds one registry request may take (connect, then between bytes)


@dataclass
class RegistryClient:
    """One client for all registries; `tls` and `credentials` are keyed by registry host."""

    credentials: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    tls: Mapping[str, str] = field(default_factory=dict)
    timeout: float = REQUEST_TIMEOUT
    session: requests.Session = field(default_factory=requests.Session)
    _tokens: dict[tuple[str, tuple[str, ...]], str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- what promotion needs --------------------------------------------------------------------

    def resolve(self, repo: Repository, reference: str) -> str | None:
        """The digest a tag (or digest) names in `repo`, or None when the registry has no such manifest."""
        response = self._call("HEAD", repo, f"manifests/{reference}", [repo], accept=MANIFEST_TYPES)
        if response.status_code == 404:
            return None
        self._check(response, repo, f"manifest {reference}")
        digest = response.headers.get("Docker-Content-Digest")
        if digest:
            return digest
        return sha256_digest(self.manifest(repo, reference)[0])

    def manifest(self, repo: Repository, reference: str) -> tuple[bytes, str]:
        """A manifest's exact bytes and media type; a digest reference is checked against the bytes."""
        response = self._call("GET", repo, f"manifests/{reference}", [repo], accept=MANIFEST_TYPES)
        if response.status_code == 404:
            raise RegistryError("invalid", f"{repo} has no manifest {reference}")
        self._check(response, repo, f"manifest {reference}")
        body = response.content
        if reference.startswith("sha256:") and sha256_digest(body) != reference:
            raise RegistryError("invalid", f"{repo} served manifest bytes that do not hash to {reference}")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        if media_type not in MANIFEST_TYPES:
            media_type = json.loads(body).get("mediaType") or media_type
        if media_type not in MANIFEST_TYPES:
            raise RegistryError(
                "invalid",
                f"{repo}@{reference} is a {media_type or 'untyped'} manifest, not an OCI/Docker v2 one",
            )
        return body, media_type

    def tag(self, source: Repository, digest: str, target: Repository, tag: str) -> None:
        """Make `target:tag` name exactly `digest` from `source`, copying whatever `target` lacks.

        Idempotent: a re-run after a crash half-way finds what is already there and skips it.
        A tag that already names another digest is never overwritten.
        """
        current = self.resolve(target, tag)
        if current == digest:
            return
        if current is not None:
            raise RegistryError(
                "collision", f"{target}:{tag} already points at {current}, not {digest}; tags are never moved"
            )
        body, media_type = self.copy(source, target, digest)
        self.put_manifest(target, tag, body, media_type, digest)

    def copy(self, source: Repository, target: Repository, digest: str) -> tuple[bytes, str]:
        """Copy a manifest (an index: its children first) and its blobs by digest; return its bytes."""
        body, media_type = self.manifest(source, digest)
        if source == target:
            return body, media_type
        document = json.loads(body)
        if media_type in INDEX_TYPES:
            for child in document.get("manifests") or ():
                self.copy(source, target, child["digest"])
        else:
            blobs = [document["config"], *(document.get("layers") or ())]
            for blob in blobs:
                self.ensure_blob(source, target, blob["digest"])
        if self.resolve(target, digest) != digest:
            self.put_manifest(target, digest, body, media_type, digest)
        return body, media_type

    def put_manifest(
        self, repo: Repository, reference: str, body: bytes, media_type: str, digest: str
    ) -> None:
        response = self._call(
            "PUT", repo, f"manifests/{reference}", [repo], push=True, data=body, content_type=media_type
        )
        self._check(response, repo, f"PUT manifest {reference}")
        stored = response.headers.get("Docker-Content-Digest")
        if stored is not None and stored != digest:
            raise RegistryError("invalid", f"{repo} stored {reference} as {stored}, not {digest}")

    def ensure_blob(self, source: Repository, target: Repository, digest: str) -> None:
        if self._blob_exists(target, digest):
            return
        location = None
        if source.host == target.host:
            # Cross-repository mount: the registry links the blob, nothing is uploaded (201).
            response = self._call(
                "POST",
                target,
                f"blobs/uploads/?mount={digest}&from={source.path}",
                [target, source],
                push=True,
            )
            if response.status_code == 201:
                return
            self._check(response, target, f"mount of {digest}")
            location = response.headers.get("Location")
        self._stream_blob(source, target, digest, location)

    # --- plumbing --------------------------------------------------------------------------------

    def _blob_exists(self, repo: Repository, digest: str) -> bool:
        response = self._call("HEAD", repo, f"blobs/{digest}", [repo])
        if response.status_code == 404:
            return False
        self._check(response, repo, f"blob {digest}")
        return True

    def _stream_blob(self, source: Repository, target: Repository, digest: str, location: str | None) -> None:
        """Copy a blob through a temporary file (layers can be large), checking its digest on the way."""
        with tempfile.TemporaryFile() as spool:
            response = self._call("GET", source, f"blobs/{digest}", [source], stream=True)
            self._check(response, source, f"blob {digest}")
            hasher = hashlib.sha256()
            for chunk in response.iter_content(CHUNK):
                hasher.update(chunk)
                spool.write(chunk)
            if "sha256:" + hasher.hexdigest() != digest:
                raise RegistryError("invalid", f"{source} served blob bytes that do not hash to {digest}")
            if location is None:
                started = self._call("POST", target, "blobs/uploads/", [target], push=True)
                self._check(started, target, "blob upload")
                location = started.headers["Location"]
            url = urljoin(self._base(target), location)
            url += ("&" if "?" in url else "?") + f"digest={digest}"
            spool.seek(0)
            done = self._call(
                "PUT", target, url, [target], push=True, data=spool, content_type="application/octet-stream"
            )
            self._check(done, target, f"upload of {digest}")

    def _verify(self, host: str) -> bool:
        """Check the registry's TLS certificate unless its host is set to SkipVerify (or Disabled)."""
        return self.tls.get(host, "Verify") == "Verify"

    def _base(self, repo: Repository) -> str:
        host = DOCKER_HUB_API if repo.host == DOCKER_HUB else repo.host
        scheme = "http" if self.tls.get(repo.host) == "Disabled" else "https"
        return f"{scheme}://{host}/v2/{repo.path}/"

    def _call(
        self,
        method: str,
        repo: Repository,
        path: str,
        scopes_for: Iterable[Repository],
        *,
        push: bool = False,
        accept: Iterable[str] = (),
        data: Any = None,
        content_type: str | None = None,
        stream: bool = False,
    ) -> requests.Response:
        url = path if path.startswith("http") else self._base(repo) + path
        scopes = tuple(
            f"repository:{r.path}:{'pull,push' if push and r == repo else 'pull'}" for r in scopes_for
        )
        headers = {}
        if accept:
            headers["Accept"] = ", ".join(accept)
        if content_type:
            headers["Content-Type"] = content_type
        for attempt in range(2):
            authorization = self._authorization(repo.host, scopes)
            if authorization:
                headers["Authorization"] = authorization
            if hasattr(data, "seek"):
                data.seek(0)
            try:
                response = self.session.request(
                    method,
                    url,
                    headers=headers,
                    data=data,
                    stream=stream,
                    timeout=self.timeout,
                    verify=self._verify(repo.host),
                    allow_redirects=True,
                )
            except requests.RequestException as error:
                raise RegistryError("unavailable", f"registry {repo.host} unreachable: {error}") from error
            if response.status_code != 401 or attempt == 1:
                return response
            self._authenticate(repo.host, scopes, response.headers.get("WWW-Authenticate", ""))
        raise AssertionError("unreachable")

    def _authorization(self, host: str, scopes: tuple[str, ...]) -> str | None:
        with self._lock:
            return self._tokens.get((host, scopes)) or self._tokens.get((host, ()))

    def _authenticate(self, host: str, scopes: tuple[str, ...], challenge: str) -> None:
        """Answer a 401: Basic gets the Secret's credentials, Bearer a token from the realm it names."""
        credentials = self.credentials.get(host)
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            if credentials is None:
                raise RegistryError(
                    "auth", f"registry {host} asks for credentials and the Secret has none for it"
                )
            token = base64.b64encode(":".join(credentials).encode()).decode()
            with self._lock:
                self._tokens[(host, ())] = f"Basic {token}"
            return
        if scheme.lower() != "bearer":
            raise RegistryError(
                "auth", f"registry {host} answered 401 with an unsupported challenge {challenge!r}"
            )
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        query: list[tuple[str, str]] = [("service", fields.get("service", host))]
        query += [("scope", scope) for scope in scopes]
        try:
            response = self.session.get(
                fields["realm"],
                params=query,
                auth=credentials,
                timeout=self.timeout,
                verify=self._verify(host),
            )
        except requests.RequestException as error:
            raise RegistryError("unavailable", f"token service of {host} unreachable: {error}") from error
        if response.status_code in (401, 403):
            raise RegistryError("auth", f"registry {host} refused the credentials ({response.status_code})")
        if response.status_code >= 500:
            raise RegistryError("unavailable", f"token service of {host} answered {response.status_code}")
        payload = response.json()
        with self._lock:
            self._tokens[(host, scopes)] = f"Bearer {payload.get('token') or payload.get('access_token')}"

    @staticmethod
    def _check(response: requests.Response, repo: Repository, what: str) -> None:
        status = response.status_code
        if status < 400:
            return
        detail = _error_detail(response)
        if status in (401, 403):
            raise RegistryError(
                "auth", f"registry {repo.host} refused access to {repo.path} ({status}{detail})"
            )
        if status == 429 or status >= 500:
            raise RegistryError("unavailable", f"registry {repo.host} answered {status} for {what}{detail}")
        raise RegistryError(
            "invalid", f"registry {repo.host} answered {status} for {what} in {repo.path}{detail}"
        )


def _error_detail(response: requests.Response) -> str:
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        return ""
    return "".join(f": {e.get('code')} {e.get('message')}" for e in errors[:2])
