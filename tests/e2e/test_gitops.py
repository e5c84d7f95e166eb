"""Stages that deploy through git: Gantry commits the digests, a GitOps tool (played by the
harness's syncer, over a real bare origin) applies them, and Gantry observes the rollout; a
rollback is a commit too. And a live stage beside a self-healing GitOps tool is told apart from
a bare timeout: the other controller is named, with the fix."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import FAST
from tests.e2e import manifests as m
from tests.git.repos import Clone, bare, origin_and_clone
from tests.harness.cluster import Cluster
from tests.harness.git_host import GitHost
from tests.harness.operator import OperatorThread, RecordingAlerter
from tests.harness.syncer import Syncer, branch_per_environment, install_application_kind

pytestmark = pytest.mark.e2e


def deploy_repository(tmp_path: Path, namespace: str) -> Path:
    """The team's deploy repository: staging as a kustomization over the workloads' manifests,
    and files Gantry must never touch."""
    origin, work = origin_and_clone(tmp_path, "deploy")
    staging = work.path / "staging"
    staging.mkdir()
    (staging / "deployment.yaml").write_text(yaml.safe_dump_all(m.workloads(namespace)))
    (staging / "kustomization.yaml").write_text(
        "# staging: what main runs\nresources:\n  - deployment.yaml  # web and worker\n"
    )
    (work.path / "README.md").write_text("deploy repository\n")
    work.git("add", "-A")
    work.git("commit", "-q", "-m", "chore: staging as a kustomization")
    work.git("push", "-q", "origin", "main")
    return origin


def git(origin: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(origin), *args], check=True, capture_output=True, text=True
    ).stdout


def git_pipeline(namespace: str, origin: Path, **git_options: Any) -> dict[str, Any]:
    options = ("script", "test_timeout")  # the Pipeline's; the rest are the git target's
    pipeline = m.pipeline(namespace, **{k: v for k, v in git_options.items() if k in options})
    target = {"repository": str(origin), "branch": "main", "path": "staging"}
    target.update({k: v for k, v in git_options.items() if k not in options})
    pipeline["spec"]["stages"][0]["git"] = target
    return pipeline


def staged(cluster: Cluster, tmp_path: Path, namespace: str, **git_options: Any) -> Path:
    """The deploy repository, the workloads the GitOps tool made from it, and the Pipeline with
    staging deploying through git: the origin."""
    origin = deploy_repository(tmp_path, namespace)
    for workload in m.workloads(namespace):
        cluster.apply(workload)
    cluster.apply(git_pipeline(namespace, origin, **git_options))
    return origin


def says(cluster: Cluster, namespace: str, name: str, text: str) -> dict[str, Any]:
    """The Release once its message says `text`."""

    def said() -> dict[str, Any] | None:
        body = cluster.release(namespace, name)
        return body if text in (body.get("status") or {}).get("message", "") else None

    found: dict[str, Any] = cluster.wait_for(f"{name} to say {text!r}", said)
    return found


def release(namespace: str, name: str, seed: str) -> dict[str, Any]:
    """A Release naming its version, without a source repository (the operator has a git cache)."""
    body = m.release(namespace, name, seed)
    del body["spec"]["source"]
    return body


@pytest.fixture
def gitops_operator(cluster: Cluster, tmp_path: Path) -> Iterator[OperatorThread]:
    running = OperatorThread(replace(FAST, git_cache=str(tmp_path / "git-cache")), RecordingAlerter()).start()
    yield running
    running.stop()


def test_staging_promotion_is_a_commit_the_gitops_tool_applies(
    cluster: Cluster, gitops_operator: OperatorThread, namespace: str, tmp_path: Path
) -> None:
    origin = staged(cluster, tmp_path, namespace)
    with Syncer(cluster, origin, "staging") as syncer:
        cluster.apply(release(namespace, "shop-v1", "v1"))
        body = cluster.wait_for_phase(namespace, "shop-v1", "Verified", "Failed", "Blocked")
        assert body["status"]["phase"] == "Verified", body["status"]["message"]
        head = git(origin, "rev-parse", "main").strip()
        assert head in syncer.applied  # the cluster runs what git says, applied by the tool

    # The live workloads run the Release's digests, and only those containers changed.
    assert cluster.images("Deployment", namespace, "web") == {
        "web": m.image("web", "v1"),
        "istio-proxy": "istio/proxyv2@" + m.digest("istio"),
    }
    assert cluster.images("Deployment", namespace, "worker") == {"worker": m.image("worker", "v1")}
    # One honest commit, touching the kustomization only, its comments kept.
    message = git(origin, "log", "-1", "--format=%B", "main")
    assert message.startswith("deploy(staging): shop v1.0.0\n"), message
    assert f"Gantry-Release: {namespace}/shop-v1" in message and "Gantry-Stage: staging" in message
    assert f"web: {m.image('web', 'v1')}" in message
    assert git(origin, "show", "--name-only", "--format=", "main").split() == ["staging/kustomization.yaml"]
    kustomization = git(origin, "show", "main:staging/kustomization.yaml")
    assert "# web and worker" in kustomization
    images = {i["name"]: i["digest"] for i in yaml.safe_load(kustomization)["images"]}
    assert images == {f"{m.REGISTRY}/web": m.digest("v1"), f"{m.REGISTRY}/worker": m.digest("v1")}
    # The rollback target is what ran before, as for a live stage.
    run = body["status"]["stages"][0]
    assert {(i["container"], i["before"]) for i in run["images"]} == {
        ("web", m.OLD_WEB),
        ("worker", m.OLD_WORKER),
    }
    cluster.wait_for_events(namespace, "shop-v1", "Committed", "RolledOut", "Verified")


def test_a_failed_stage_rolls_back_by_a_commit(
    cluster: Cluster, gitops_operator: OperatorThread, namespace: str, tmp_path: Path
) -> None:
    origin = staged(cluster, tmp_path, namespace, script="echo checkout broken; exit 1")
    with Syncer(cluster, origin, "staging"):
        cluster.apply(release(namespace, "shop-v2", "v2"))
        body = cluster.wait_for_phase(namespace, "shop-v2", "Failed", "Verified")
        assert body["status"]["phase"] == "Failed" and body["status"]["reason"] == "TestFailed"
        assert "stage rolled back" in body["status"]["message"]

    titles = git(origin, "log", "--format=%s", "main").splitlines()
    assert titles[:2] == ["revert(staging): shop v1.0.0 rolled back", "deploy(staging): shop v1.0.0"]
    revert = git(origin, "log", "-1", "--format=%B", "main")
    assert "Why: stage staging: test Job" in revert and f"web: {m.OLD_WEB}" in revert
    # Nobody touched the file since: it is exactly what it was before the deploy, comments and all.
    file = "staging/kustomization.yaml"
    assert git(origin, "show", f"main:{file}") == git(origin, "show", f"main~2:{file}")
    assert cluster.images("Deployment", namespace, "web")["web"] == m.OLD_WEB
    assert cluster.images("Deployment", namespace, "worker")["worker"] == m.OLD_WORKER


def test_a_live_first_rollback_restores_at_once_with_git_unreachable(
    cluster: Cluster, gitops_operator: OperatorThread, namespace: str, tmp_path: Path
) -> None:
    origin = staged(
        cluster, tmp_path, namespace, rollback="LiveFirst", script="sleep infinity", test_timeout=3
    )
    with Syncer(cluster, origin, "staging"):
        cluster.apply(release(namespace, "shop-v3", "v3"))
        says(cluster, namespace, "shop-v3", "running")  # its test Job started
        assert cluster.images("Deployment", namespace, "web")["web"] == m.image("web", "v3")
        gone = origin.with_name("deploy-away.git")
        origin.rename(gone)  # the git host goes down while the test runs; the test then times out
        try:
            body = cluster.wait_for_phase(namespace, "shop-v3", "Failed", "Verified")
        finally:
            gone.rename(origin)

    assert body["status"]["reason"] == "TestTimeout", body["status"]["message"]
    assert "stage rolled back" in body["status"]["message"]
    # The rollback did not wait for git: the live workloads are back, and the Event says what git
    # still names and what to do.
    assert cluster.images("Deployment", namespace, "web")["web"] == m.OLD_WEB
    assert cluster.images("Deployment", namespace, "worker")["worker"] == m.OLD_WORKER
    failed = cluster.wait_for_events(namespace, "shop-v3", "GitCommitFailed")
    said = next(e["message"] for e in failed if e["reason"] == "GitCommitFailed")
    assert "the rollback is live" in said and "staging/kustomization.yaml" in said
    assert git(origin, "log", "-1", "--format=%s", "main").startswith("deploy(staging): shop")


def test_a_self_healing_gitops_tool_is_named_as_the_other_controller(
    cluster: Cluster, operator: OperatorThread, namespace: str, tmp_path: Path
) -> None:
    origin = deploy_repository(tmp_path, namespace)
    for workload in m.workloads(namespace):
        cluster.apply(workload)
    # A live stage, while a GitOps tool re-applies the same workloads from git (selfHeal).
    cluster.apply(m.pipeline(namespace, script="sleep infinity"))
    with Syncer(cluster, origin, "staging", self_heal=True):
        cluster.apply(release(namespace, "shop-v4", "v4"))
        body = cluster.wait_for_phase(namespace, "shop-v4", "Failed", "Verified")

    status = body["status"]
    assert status["reason"] == "ControllerFight", status["message"]
    assert "set back again by argocd-controller" in status["message"]
    assert "spec.stages[0].git" in status["message"]  # the fix
    cluster.wait_for_events(namespace, "shop-v4", "Reverted")
    assert cluster.images("Deployment", namespace, "web")["web"] == m.OLD_WEB  # git's, untouched since


def test_the_seeds_production_branch_takes_the_tag_staging_ran_and_rolls_back_to_the_previous_tag(
    cluster: Cluster, gitops_operator: OperatorThread, namespace: str, tmp_path: Path
) -> None:
    """main is what staging runs; production is a branch that receives the tagged snapshot of what
    staging ran (a merge of the tag), and a rollback returns the path to the previous tag."""
    prod = f"{namespace}-prod"
    origin = branch_per_environment(tmp_path, m.workloads("unused"))
    for workload in m.workloads(namespace) + m.workloads(prod):
        cluster.apply(workload)
    pipeline = m.production_branch_pipeline(namespace, prod, str(origin))
    audit = bare(tmp_path, "audit")  # the ledger in git: an empty repository of its own
    pipeline["spec"]["git"] = {"ledger": {"repository": str(audit)}}
    cluster.apply(pipeline)
    staging_tool = Syncer(cluster, origin, "shop", namespace=namespace)
    production_tool = Syncer(cluster, origin, "shop", branch="production", namespace=prod)
    with staging_tool, production_tool:
        for name, seed, version in (("shop-v1", "v1", "v1.0.0"), ("shop-v2", "v2", "v1.1.0")):
            body = m.release(namespace, name, seed, version=version)
            del body["spec"]["source"]
            cluster.apply(body)
            released = cluster.wait_for_phase(namespace, name, "Released", "Failed", "Blocked")
            assert released["status"]["phase"] == "Released", released["status"]["message"]
            # The tag is on the commit staging ran; production is a merge of it, the path identical.
            tagged = git(origin, "rev-parse", f"shop/{version}^{{commit}}").strip()
            assert f"Gantry-Release: {namespace}/{name}" in git(origin, "log", "-1", "--format=%B", tagged)
            head = git(origin, "rev-parse", "production").strip()
            assert git(origin, "log", "-1", "--format=%P", head).split()[1] == tagged
            assert git(origin, "rev-parse", f"{head}:shop") == git(origin, "rev-parse", f"{tagged}:shop")
            assert git(origin, "log", "-1", "--format=%s", head) == f"deploy(production): shop {version}\n"
            assert cluster.images("Deployment", prod, "web")["web"] == m.image("web", seed)

        cluster.apply(m.decision(namespace, "shop-v2", "Rollback"))
        rolled = cluster.wait_for_phase(namespace, "shop-v2", "RolledBack", "Failed")
        assert rolled["status"]["phase"] == "RolledBack", rolled["status"]["message"]

    head = git(origin, "rev-parse", "production").strip()
    assert git(origin, "log", "-1", "--format=%s", head) == "revert(production): shop v1.1.0 rolled back\n"
    assert "Decided by: bob" in git(origin, "log", "-1", "--format=%B", head)
    assert git(origin, "rev-parse", f"{head}:shop") == git(origin, "rev-parse", "shop/v1.0.0^{commit}:shop")
    assert cluster.images("Deployment", prod, "web")["web"] == m.image("web", "v1")
    assert cluster.images("Deployment", prod, "worker")["worker"] == m.image("worker", "v1")
    # Every production record and decision is a line in git, which outlives the cluster.
    lines = [json.loads(line) for line in git(audit, "show", "main:ledger/shop.jsonl").splitlines()]
    key = f"{namespace}/shop-v2"
    said = [(r["release"], r.get("result") or r["action"], r["decidedBy"]) for r in lines]
    assert said[:2] == [
        (f"{namespace}/shop-v1", "Deploying", "gantry (automatic promotion)"),
        (f"{namespace}/shop-v1", "Released", "gantry (automatic promotion)"),
    ]
    assert said[-3:] == [
        (key, "Rollback", "bob"),
        (key, "RolledBack", "bob"),
        (f"{namespace}/shop-v1", "Restored", "bob"),
    ]
    assert all(r["application"] == "shop" and r["time"] for r in lines)
    assert len({r["id"] for r in lines}) == len(lines)  # each once, however often an effect ran


def test_a_proposal_branch_is_merged_by_a_person_then_applied(
    cluster: Cluster, gitops_operator: OperatorThread, namespace: str, tmp_path: Path
) -> None:
    token = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gitlab", "namespace": namespace}}
    cluster.apply({**token, "data": {"token": base64.b64encode(b"glpat-test").decode()}})
    branch = f"gantry/{namespace}-shop-p1-staging"
    with GitHost() as gitlab:
        api = {"api": "GitLab", "url": f"{gitlab.url}/api/v4", "project": "team/deploy"}
        merge_request = {**api, "tokenSecretRef": {"name": "gitlab"}}
        origin = staged(
            cluster, tmp_path, namespace, proposal={"timeoutSeconds": 120, "mergeRequest": merge_request}
        )
        syncer = Syncer(cluster, origin, "staging").start()
        cluster.apply(release(namespace, "shop-p1", "p1"))
        says(cluster, namespace, "shop-p1", f"waiting for branch {branch} to be merged into main")
        cluster.wait_for_events(namespace, "shop-p1", "MergeRequestOpened")
    # The merge request was opened on the (stand-in) host, once, as its API expects it.
    [(path, headers, body)] = gitlab.requests
    assert (
        path == "/api/v4/projects/team%2Fdeploy/merge_requests" and headers["PRIVATE-TOKEN"] == "glpat-test"
    )
    assert (body["source_branch"], body["target_branch"]) == (branch, "main")
    assert body["title"].startswith("deploy(staging): shop") and "Gantry-Release" in body["description"]
    try:
        assert cluster.images("Deployment", namespace, "web")["web"] == m.OLD_WEB  # nothing applied yet
        assert git(origin, "log", "-1", "--format=%s", branch).startswith("deploy(staging): shop")
        # A person reviews and merges it, a moment later.
        subprocess.run(["git", "clone", "-q", str(origin), str(tmp_path / "reviewer")], check=True)
        reviewer = Clone(tmp_path / "reviewer")
        person = ("-c", "user.name=Rev", "-c", "user.email=rev@example.com")
        reviewer.git(*person, "merge", "-q", "--no-ff", f"origin/{branch}", "-m", "Merge the proposal")
        reviewer.git("push", "-q", "origin", "main")
        body = cluster.wait_for_phase(namespace, "shop-p1", "Verified", "Failed")
    finally:
        syncer.stop()

    assert body["status"]["phase"] == "Verified", body["status"]["message"]
    record = body["status"]["stages"][0]["git"]
    assert record["proposal"] == branch and record["mergedAt"] and record["branch"] == "main"
    assert cluster.images("Deployment", namespace, "web")["web"] == m.image("web", "p1")


def test_a_proposal_nobody_merges_is_withdrawn_at_its_timeout(
    cluster: Cluster, gitops_operator: OperatorThread, namespace: str, tmp_path: Path
) -> None:
    origin = staged(cluster, tmp_path, namespace, proposal={"timeoutSeconds": 2})
    with Syncer(cluster, origin, "staging"):
        cluster.apply(release(namespace, "shop-p2", "p2"))
        body = cluster.wait_for_phase(namespace, "shop-p2", "Failed", "Verified")
    assert body["status"]["reason"] == "ProposalNotMerged", body["status"]["message"]
    assert "not merged within 2s" in body["status"]["message"]
    # The branch is gone (nobody can merge an unverified version later); main never changed.
    assert not git(origin, "branch", "--list", "gantry/*").strip()
    assert git(origin, "log", "-1", "--format=%s", "main") == "chore: staging as a kustomization\n"
    assert cluster.images("Deployment", namespace, "web")["web"] == m.OLD_WEB


def test_the_stage_waits_until_argo_cd_says_it_applied_the_commit(
    cluster: Cluster, gitops_operator: OperatorThread, namespace: str, tmp_path: Path
) -> None:
    install_application_kind(cluster)
    sync = {"kind": "Application", "namespace": namespace, "name": "shop-staging"}
    origin = staged(cluster, tmp_path, namespace, sync=sync)
    app = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "shop-staging", "namespace": namespace},
        "spec": {"source": {"repoURL": str(origin), "path": "staging"}},
    }
    cluster.apply(app)
    syncer = Syncer(cluster, origin, "staging", application=(namespace, "shop-staging"))
    syncer.paused = True  # Argo CD has not synced yet
    with syncer:
        cluster.apply(release(namespace, "shop-s1", "s1"))
        waiting = says(cluster, namespace, "shop-s1", "waiting for Application")
        message = waiting["status"]["message"]
        assert f"waiting for Application {namespace}/shop-staging to apply" in message, message
        assert "it applied nothing yet" in message
        syncer.paused = False
        body = cluster.wait_for_phase(namespace, "shop-s1", "Verified", "Failed")
    assert body["status"]["phase"] == "Verified", body["status"]["message"]
    record = body["status"]["stages"][0]["git"]
    head = git(origin, "rev-parse", "main").strip()
    assert record == {
        "branch": "main",
        "commit": head,
        "appliedBy": f"Application {namespace}/shop-staging",
        "revision": head,
    }
