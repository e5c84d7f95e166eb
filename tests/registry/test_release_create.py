"""`gantry release create` as a CI job runs it: the real command, a real registry holding the image
CI pushed under the commit hash, and the API server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.cluster import ROOT, Cluster
from tests.harness.registry import Registry, build_image

pytestmark = pytest.mark.e2e
COMMIT = "3f1c0ad3a5b2e4d7c8f9a0b1c2d3e4f5a6b7c8d9"


def gantry(cluster: Cluster, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "PYTHONPATH": str(ROOT / "operator"),
        "DOCKER_CONFIG": str(tmp / "no-docker-config"),
    }
    return subprocess.run(
        [sys.executable, "-m", "gantry", "release", "create", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_ci_creates_the_release_of_its_commit_by_digest_once(
    cluster: Cluster, namespace: str, open_registry: Registry, tmp_path: Path
) -> None:
    layout = build_image(tmp_path / "web", "web at 3f1c0ad", tag=COMMIT)
    open_registry.push(layout, "ci/web", COMMIT)  # CI: tag the artifact with the commit hash, push
    where = ["-n", namespace, "--application", "shop", "--revision", COMMIT]
    source = ["--repository", "https://git.example.com/shop.git", "--insecure-registry", open_registry.host]

    def artifact(image: str) -> list[str]:
        return [*where, *source, "--artifact", f"web={image}"]

    args = artifact(f"{open_registry.host}/ci/web:{COMMIT}")
    cluster.ensure_namespace(namespace)

    first = gantry(cluster, tmp_path, *args)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"release.gantry.dev/shop-{COMMIT[:12]} created"
    body = cluster.must_get("Release", namespace, f"shop-{COMMIT[:12]}")
    assert body["spec"]["artifacts"] == [
        {"name": "web", "image": f"{open_registry.host}/ci/web@{layout.digest}"}
    ]
    assert body["spec"]["source"]["revision"] == COMMIT and "version" not in body["spec"]

    again = gantry(cluster, tmp_path, *args)  # a retried CI job
    assert again.returncode == 0 and again.stdout.strip().endswith("unchanged"), again.stderr

    missing = gantry(cluster, tmp_path, *artifact(f"{open_registry.host}/ci/web:nope"))
    assert missing.returncode == 1
    said = f"--artifact web: {open_registry.host}/ci/web:nope is not in the registry; push it first"
    assert missing.stderr.strip() == f"gantry release create: {said}"
    mutable = gantry(cluster, tmp_path, *artifact(f"{open_registry.host}/ci/web"))
    assert mutable.returncode == 1 and "names no tag or digest" in mutable.stderr


def test_a_ci_job_on_the_hot_branch_creates_a_hotfix_release(
    cluster: Cluster, namespace: str, open_registry: Registry, tmp_path: Path
) -> None:
    layout = build_image(tmp_path / "web", "web at the hotfix", tag=COMMIT)
    open_registry.push(layout, "ci/web", COMMIT)
    cluster.ensure_namespace(namespace)
    made = gantry(
        cluster,
        tmp_path,
        *["-n", namespace, "--application", "shop", "--revision", COMMIT, "--hotfix"],
        *["--repository", "https://git.example.com/shop.git", "--insecure-registry", open_registry.host],
        *["--artifact", f"web={open_registry.host}/ci/web:{COMMIT}", "--name", "shop-hot-1"],
    )
    assert made.returncode == 0, made.stderr
    assert cluster.must_get("Release", namespace, "shop-hot-1")["spec"]["hotfix"] is True
