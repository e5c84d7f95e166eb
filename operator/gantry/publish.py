"""`gantry release create`: what a CI job runs after it pushed its images, instead of writing YAML.

Each artifact is given as NAME=IMAGE, by digest or by the tag CI just pushed; a tag is resolved
to its digest in the registry right away, so the Release never names a mutable tag. The Release
is named after its commit (as a ReleaseSource names it), so a retried CI job, or a ReleaseSource
seeing the same commit, makes no second Release: the same spec again is "unchanged", a different
one an error (a Release is immutable).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gantry.adapters.kube import ApiError, Kube, custom_path, self_review
from gantry.adapters.registry import RegistryClient, parse_dockerconfigjson, parse_repository
from gantry.domain.inputs import approvals
from gantry.domain.inputs.release_sources import release_name

DIGEST_MARK = "@sha256:"


class PublishError(Exception):
    """One line for the CI log: what is wrong and what to do."""


@dataclass(frozen=True)
class Request:
    namespace: str
    application: str
    revision: str
    repository: str
    artifacts: Sequence[str]  # NAME=IMAGE
    pipeline: str | None = None
    version: str | None = None
    name: str | None = None  # default: after the commit (one Release per commit, as a ReleaseSource names it)
    hotfix: bool = False  # a CI job on the emergency's HOT-<n> branch


def pin(artifacts: Sequence[str], client: RegistryClient, revision: str) -> dict[str, str]:
    """NAME -> image by digest, resolving tags in the registry."""
    pinned: dict[str, str] = {}
    for given in artifacts:
        name, sep, image = given.partition("=")
        if not sep or not name or not image:
            raise PublishError(
                f"--artifact {given!r}: write NAME=IMAGE, e.g. web=registry.example.com/shop/web:{revision}"
            )
        if DIGEST_MARK in image:
            pinned[name] = image
            continue
        repository, colon, tag = image.rpartition(":")
        if not colon or "/" in tag:
            raise PublishError(f"--artifact {name}: {image} names no tag or digest; give the tag CI pushed")
        digest = client.resolve(parse_repository(repository), tag)
        if digest is None:
            raise PublishError(f"--artifact {name}: {image} is not in the registry; push it first")
        pinned[name] = f"{repository}@{digest}"
    return pinned


def manifest(request: Request, pinned: Mapping[str, str]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "application": request.application,
        "source": {"repository": request.repository, "revision": request.revision},
        "artifacts": [{"name": name, "image": image} for name, image in pinned.items()],
    }
    if request.pipeline:
        spec["pipeline"] = request.pipeline
    if request.version:
        spec["version"] = request.version
    if request.hotfix:
        spec["hotfix"] = True
    return {
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "Release",
        "metadata": {
            "name": request.name or release_name(request.application, request.revision),
            "namespace": request.namespace,
        },
        "spec": spec,
    }


def create(kube: Kube, request: Request, client: RegistryClient) -> tuple[str, bool]:
    """(the Release's name, whether it was created now)."""
    body = manifest(request, pin(request.artifacts, client, request.revision))
    who = self_review(kube)
    authors = {
        approvals.CREATED_BY: who[0] if who else "",
        approvals.COMMIT_AUTHOR: local_author(request.revision),
    }
    if any(authors.values()):  # for an approval policy's "not the author"
        body["metadata"]["annotations"] = {k: v for k, v in authors.items() if v}
    name = body["metadata"]["name"]
    try:
        kube.create(custom_path("releases", request.namespace), body)
        return name, True
    except ApiError as error:
        if error.status != 409:
            raise PublishError(f"the API server refused Release {name}: {error.message}") from None
    existing = kube.get(custom_path("releases", request.namespace, name)) or {}
    if same(existing.get("spec") or {}, body["spec"]):
        return name, False
    raise PublishError(
        f"Release {request.namespace}/{name} exists for this commit with another spec; a Release is "
        "immutable: release the images that were built from this commit, or a new commit"
    )


def same(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """The same Release again: what was asked for is there (defaults the server added aside)."""
    return all(existing.get(key) == value for key, value in wanted.items())


def docker_credentials() -> dict[str, tuple[str, str]]:
    """What `docker login` saved (DOCKER_CONFIG or ~/.docker/config.json), for private registries."""
    path = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"
    try:
        return parse_dockerconfigjson(path.read_text())
    except (OSError, ValueError):
        return {}


def local_author(revision: str) -> str:
    """The commit's author email, when CI runs this in a checkout that has the commit."""
    done = subprocess.run(
        ["git", "log", "-1", "--format=%ae", revision],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def origin_url() -> str:
    """The git repository CI checked out here (its origin), when --repository is not given."""
    done = subprocess.run(["git", "remote", "get-url", "origin"], capture_output=True, text=True, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        raise PublishError(
            "--repository not given and no git origin here: name the repository the images came from"
        )
    return done.stdout.strip()
