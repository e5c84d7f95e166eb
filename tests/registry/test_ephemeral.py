"""Ephemeral environments (the seed: "changes which are not ready for staging remain in feature
branches, and are tested in ephemeral environments"): a real bare origin with feature branches,
real images in a real registry, and the real operator with a ReleaseSource that follows them."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.git.repos import Clone
from tests.harness.cluster import Cluster
from tests.harness.operator import OperatorThread
from tests.harness.registry import Registry
from tests.registry.test_release_sources import ci_builds, main_with_its_images, release_source

pytestmark = pytest.mark.e2e

TIMEOUT = 60


def source_with_environments(namespace: str, origin: Path, host: str) -> dict[str, Any]:
    source = release_source(namespace, origin, host)
    source["spec"]["ephemeral"] = {"branches": ["*/JIRA-*"], "stage": "dev", "ttlSeconds": 3600}
    return source


def push_branch(work: Clone, branch: str, message: str) -> str:
    work.git("checkout", "-q", "-b", branch, "main")
    commit = work.commit(message)
    work.git("push", "-q", "origin", branch)
    work.git("checkout", "-q", "main")
    return commit


def gone(cluster: Cluster, namespace: str) -> bool:
    """Deleted (a real API server without a namespace controller keeps it Terminating)."""
    body = cluster.get("Namespace", None, namespace)
    return body is None or bool(body["metadata"].get("deletionTimestamp"))


def test_a_feature_branch_is_tested_in_its_own_environment_and_the_environment_goes_with_the_branch(
    cluster: Cluster, namespace: str, open_registry: Registry, source_operator: OperatorThread, tmp_path: Path
) -> None:
    source = source_with_environments(namespace, Path("origin"), open_registry.host)
    _, work, _ = main_with_its_images(cluster, namespace, open_registry, tmp_path, source)
    dev_before = cluster.images("Deployment", f"{namespace}-dev", "web")["web"]
    staging_before = cluster.images("Deployment", namespace, "web")["web"]

    ticket = uuid.uuid4().hex[:5]  # a real cluster keeps namespaces: each run its own branch
    branch = f"alice/JIRA-{ticket}-login"
    feature = push_branch(work, branch, f"feat(JIRA-{ticket}): a new login page")
    digests = ci_builds(open_registry, tmp_path, feature)  # CI builds branches too

    env = f"shop-alice-jira-{ticket}-login"
    name = f"{env}-{feature[:12]}"
    body = cluster.wait_for(
        "the branch's Release", lambda: cluster.get("Release", namespace, name), timeout=TIMEOUT
    )
    assert body["spec"]["ephemeral"] == {"branch": branch, "namespace": env}
    done = cluster.wait_for_phase(namespace, name, "Verified", "Failed", "Blocked", timeout=TIMEOUT)
    assert done["status"]["phase"] == "Verified", done["status"]["message"]
    (run,) = done["status"]["stages"]
    assert (run["name"], run["testResult"]) == ("dev", "Succeeded")  # the dev stage's tests, run there
    assert "tag" not in done["status"]  # a branch is never tagged

    # The environment: its own namespace, labelled as the source's, running the branch's digests.
    labels = cluster.must_get("Namespace", None, env)["metadata"]["labels"]
    assert labels["gantry.dev/ephemeral-of"] == "shop"
    assert cluster.images("Deployment", env, "web")["web"] == f"{open_registry.host}/ci/web@{digests['web']}"
    # Never dev, staging or production.
    assert cluster.images("Deployment", f"{namespace}-dev", "web")["web"] == dev_before
    assert cluster.images("Deployment", namespace, "web")["web"] == staging_before

    def environments() -> dict[str, Any]:
        status = cluster.must_get("ReleaseSource", namespace, "shop").get("status") or {}
        return dict(status.get("ephemeral") or {})

    recorded = cluster.wait_for(
        "the environment on record",
        lambda: [e for e in environments().get("environments", []) if e["release"] == name],
        timeout=TIMEOUT,
    )
    assert recorded[0]["namespace"] == env and recorded[0]["commit"] == feature

    # A second branch, deleted on origin: its environment goes.
    other = f"bob/JIRA-{ticket}-search"
    second = push_branch(work, other, f"feat(JIRA-{ticket}): search")
    ci_builds(open_registry, tmp_path, second)
    other_env = f"shop-bob-jira-{ticket}-search"
    cluster.wait_for(
        "the second environment", lambda: cluster.get("Namespace", None, other_env), timeout=TIMEOUT
    )
    work.git("push", "-q", "origin", "--delete", other)
    cluster.wait_for(
        "the deleted branch's environment to go", lambda: gone(cluster, other_env), timeout=TIMEOUT
    )

    # The first branch merged into main: its environment goes, on the record.
    work.git("merge", "-q", "--no-ff", "-m", f"Merge {branch}", branch)
    work.git("push", "-q", "origin", "main")
    cluster.wait_for("the merged branch's environment to go", lambda: gone(cluster, env), timeout=TIMEOUT)
    assert cluster.get("Pipeline", namespace, env) is None
    removed = cluster.wait_for(
        "both removals on record", lambda: len(environments().get("removed", [])) == 2, timeout=TIMEOUT
    )
    assert removed
    whys = {r["branch"]: r["why"] for r in environments()["removed"]}
    assert whys == {branch: f"branch {branch} was merged", other: f"branch {other} was deleted"}
    assert environments()["environments"] == []
    # The branch's finished Release stays, as the record of what was tried.
    assert cluster.must_get("Release", namespace, name)["status"]["phase"] == "Verified"
