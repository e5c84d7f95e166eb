"""The operator and git: a Release without a version is tagged with the next one and pushed; a
version tag is verified against the revision before anything is deployed; tags never move."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FAST
from tests.e2e import manifests as m
from tests.git.repos import Clone, origin_and_clone
from tests.harness.cluster import Cluster
from tests.harness.operator import OperatorThread, RecordingAlerter

pytestmark = pytest.mark.e2e


@pytest.fixture
def origin(tmp_path: Path) -> tuple[Path, Clone]:
    return origin_and_clone(tmp_path, "shop")


@pytest.fixture
def git_operator(cluster: Cluster, tmp_path: Path) -> Iterator[OperatorThread]:
    running = OperatorThread(replace(FAST, git_cache=str(tmp_path / "git-cache")), RecordingAlerter()).start()
    yield running
    running.stop()


def release(
    namespace: str, name: str, repository: Path, revision: str, version: str | None
) -> dict[str, Any]:
    body = m.release(namespace, name, name)
    body["spec"]["source"] = {"repository": str(repository), "revision": revision}
    if version is None:
        del body["spec"]["version"]
    else:
        body["spec"]["version"] = version
    return body


def setup_app(cluster: Cluster, namespace: str, **pipeline: Any) -> None:
    for workload in m.workloads(namespace):
        cluster.apply(workload)
    cluster.apply(m.pipeline(namespace, **pipeline))


def feature_after_v1_4_0(work: Clone, message: str) -> str:
    """main: a first feature tagged v1.4.0, then `message` (its next version: v1.5.0), pushed."""
    work.commit("feat(JIRA-1): first")
    work.git("tag", "v1.4.0")
    revision = work.commit(message)
    work.git("push", "-q", "origin", "main", "--tags")
    return revision


def tags(bare: Path) -> dict[str, str]:
    """Each tag and the commit it names (an annotated tag peeled to its commit)."""
    out = subprocess.run(
        [
            "git",
            "for-each-ref",
            "--format=%(refname:short) %(objectname) %(*objectname)",
            "refs/tags",
        ],
        cwd=bare,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = {}
    for line in out.splitlines():
        name, target, peeled = (line + " ").split(" ")[:3]
        found[name] = peeled or target
    return found


def test_a_release_without_a_version_is_tagged_with_the_next_one_on_its_revision(
    cluster: Cluster, git_operator: OperatorThread, namespace: str, origin: tuple[Path, Clone]
) -> None:
    bare, work = origin
    revision = feature_after_v1_4_0(work, "feat(JIRA-2): checkout by invoice")
    setup_app(cluster, namespace)

    cluster.apply(release(namespace, "shop-next", bare, revision, None))
    body = cluster.wait_for_phase(namespace, "shop-next", "Verified", "Failed", "Blocked")

    assert body["status"]["phase"] == "Verified", body["status"]["message"]
    assert body["status"]["version"] == "v1.5.0"
    pointed = subprocess.run(
        ["git", "rev-parse", "v1.5.0^{commit}"], cwd=bare, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert pointed == revision
    kind = subprocess.run(
        ["git", "cat-file", "-t", "v1.5.0"], cwd=bare, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert kind == "tag"  # annotated
    job = cluster.list("Job", namespace, "gantry.dev/release=shop-next")[0]
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["GANTRY_VERSION"] == "v1.5.0"
    cluster.wait_for_events(namespace, "shop-next", "Tagged")


def test_a_version_tag_on_another_commit_blocks_before_anything_is_deployed(
    cluster: Cluster, git_operator: OperatorThread, namespace: str, origin: tuple[Path, Clone]
) -> None:
    bare, work = origin
    tagged = work.commit("feat(JIRA-1): first")
    work.git("tag", "-a", "v1.4.0", "-m", "v1.4.0")
    revision = work.commit("fix(JIRA-2): later")
    work.git("push", "-q", "origin", "main", "--tags")
    setup_app(cluster, namespace)

    cluster.apply(release(namespace, "shop-moved", bare, revision, "v1.4.0"))
    blocked = cluster.wait_for_phase(namespace, "shop-moved", "Blocked", "Verified")
    assert blocked["status"]["reason"] == "TagMismatch"
    assert f"already points at {tagged[:12]}" in blocked["status"]["message"]
    assert cluster.images("Deployment", namespace, "web")["web"] == m.OLD_WEB

    cluster.apply(release(namespace, "shop-same", bare, tagged, "v1.4.0"))  # the tagged commit: reused
    assert cluster.wait_for_phase(namespace, "shop-same", "Verified")["status"]["phase"] == "Verified"
    assert tags(bare)["v1.4.0"] == tagged


def test_a_rejected_push_blocks_with_a_clear_reason_and_leaves_no_tag(
    cluster: Cluster, git_operator: OperatorThread, namespace: str, origin: tuple[Path, Clone]
) -> None:
    bare, work = origin
    revision = work.commit("feat(JIRA-1): first")
    work.git("push", "-q", "origin", "main")
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'tags are created by the release bot only' >&2\nexit 1\n")
    hook.chmod(0o755)
    setup_app(cluster, namespace)

    cluster.apply(release(namespace, "shop-refused", bare, revision, None))
    blocked = cluster.wait_for_phase(namespace, "shop-refused", "Blocked", "Verified")

    assert blocked["status"]["reason"] == "TagPushRejected"
    assert "tags are created by the release bot only" in blocked["status"]["message"]
    assert blocked["status"]["tag"] == {"name": "v0.1.0", "revision": revision, "pushed": False}
    assert tags(bare) == {}
    # The stage passed (its tests earned the tag) and gave its lock back; nothing goes further untagged.
    assert cluster.images("Deployment", namespace, "web")["web"] == m.image("web", "shop-refused")
    assert not (cluster.must_get("EnvironmentLock", namespace, "staging").get("status") or {}).get("holder")


def test_the_tag_is_pushed_only_once_the_first_stage_passed_its_tests(
    cluster: Cluster, git_operator: OperatorThread, namespace: str, origin: tuple[Path, Clone]
) -> None:
    bare, work = origin
    failing = feature_after_v1_4_0(work, "feat(JIRA-2): breaks the integration tests")
    setup_app(cluster, namespace, script="echo broken; exit 1")

    cluster.apply(release(namespace, "shop-broken", bare, failing, None))
    failed = cluster.wait_for_phase(namespace, "shop-broken", "Failed", "Verified", "Blocked")
    assert (failed["status"]["phase"], failed["status"]["reason"]) == ("Failed", "TestFailed")
    assert failed["status"]["version"] == "v1.5.0"  # computed at once, for the test Job and people
    assert "v1.5.0" not in tags(bare)  # ON FAIL halt: a version that failed its tests is never tagged


def test_with_tag_after_staging_a_pass_in_dev_earns_no_tag_and_a_failure_in_staging_leaves_none(
    cluster: Cluster, git_operator: OperatorThread, namespace: str, origin: tuple[Path, Clone]
) -> None:
    bare, work = origin
    failing = feature_after_v1_4_0(work, "feat(JIRA-3): passes dev, fails staging")
    for workload in m.workloads(namespace) + m.workloads(f"{namespace}-dev"):
        cluster.apply(workload)
    pipeline = m.pipeline(namespace, script="exit 1")  # staging's tests fail
    staging = pipeline["spec"]["stages"][0]
    dev = {
        "name": "dev",
        "targets": [{"namespace": f"{namespace}-dev", "name": n} for n in ("web", "worker")],
        "test": {"jobTemplate": m.test_job_template("exit 0"), "timeoutSeconds": 30, "namespace": namespace},
    }
    pipeline["spec"].update(tagAfter="staging", stages=[dev, staging, pipeline["spec"]["stages"][1]])
    cluster.apply(pipeline)

    cluster.apply(release(namespace, "shop-late", bare, failing, None))
    failed = cluster.wait_for_phase(namespace, "shop-late", "Failed", "Verified", "Blocked", timeout=60)
    assert (failed["status"]["phase"], failed["status"]["reason"]) == ("Failed", "TestFailed")
    assert [(r["name"], r.get("testResult")) for r in failed["status"]["stages"]] == [
        ("dev", "Succeeded"),
        ("staging", "Failed"),
    ]
    assert failed["status"]["tag"] == {"name": "v1.5.0", "revision": failing, "pushed": False}
    assert "v1.5.0" not in tags(bare)  # dev's pass was not the tagging point; staging's failure halts


def test_a_commit_that_main_does_not_contain_is_never_released_nor_tagged(
    cluster: Cluster, git_operator: OperatorThread, namespace: str, origin: tuple[Path, Clone]
) -> None:
    bare, work = origin
    work.commit("feat(JIRA-1): first")
    work.git("push", "-q", "origin", "main")
    work.git("checkout", "-q", "-b", "uid/SHOP-2")
    unmerged = work.commit("feat(SHOP-2): on a feature branch")
    work.git("push", "-q", "origin", "uid/SHOP-2")
    setup_app(cluster, namespace)

    cluster.apply(release(namespace, "shop-branch", bare, unmerged, None))
    blocked = cluster.wait_for_phase(namespace, "shop-branch", "Blocked", "Verified")
    assert blocked["status"]["reason"] == "NotOnReleaseBranch"
    assert "only merged commits are released and tagged" in blocked["status"]["message"]
    assert tags(bare) == {}
    assert cluster.images("Deployment", namespace, "web")["web"] == m.OLD_WEB


def test_an_unknown_revision_is_a_clear_problem(
    cluster: Cluster, git_operator: OperatorThread, namespace: str, origin: tuple[Path, Clone]
) -> None:
    bare, work = origin
    work.commit("feat(JIRA-1): first")
    work.git("push", "-q", "origin", "main")
    setup_app(cluster, namespace)
    cluster.apply(release(namespace, "shop-typo", bare, "0123456789abcdef0123456789abcdef01234567", None))
    blocked = cluster.wait_for_phase(namespace, "shop-typo", "Blocked", "Verified")
    assert blocked["status"]["reason"] == "GitSourceUnavailable"
    assert "unknown revision" in blocked["status"]["message"]


def test_the_changelog_since_the_previous_release_is_in_the_status(
    cluster: Cluster, git_operator: OperatorThread, namespace: str, origin: tuple[Path, Clone]
) -> None:
    bare, work = origin
    work.commit("feat(JIRA-1): first")
    work.git("tag", "v1.4.0")
    work.commit("feat(JIRA-2): invoices")
    work.commit("docs(JIRA-3): readme")
    revision = work.commit("fix(JIRA-4)!: totals in cents\n\nBREAKING CHANGE: amounts are integers")
    work.git("push", "-q", "origin", "main", "--tags")
    setup_app(cluster, namespace)

    cluster.apply(release(namespace, "shop-log", bare, revision, None))
    body = cluster.wait_for_phase(namespace, "shop-log", "Verified", "Blocked")

    assert body["status"]["version"] == "v2.0.0"
    assert [(c["type"], c["scope"], c["description"]) for c in body["status"]["changelog"]] == [
        ("breaking", "JIRA-4", "totals in cents"),
        ("feat", "JIRA-2", "invoices"),
    ]


def test_a_hotfix_patches_the_version_it_branches_from_and_must_come_from_a_hot_branch(
    cluster: Cluster, git_operator: OperatorThread, namespace: str, origin: tuple[Path, Clone]
) -> None:
    bare, work = origin
    work.commit("feat(JIRA-1): first")
    work.git("tag", "v1.4.0")
    work.git("checkout", "-q", "-b", "HOT-7")
    hot = work.commit("feat(HOT-7): emergency switch")  # even a feat: a hotfix patches
    work.git("checkout", "-q", "main")
    not_hot = work.commit("fix(JIRA-2): ordinary fix")
    work.git("push", "-q", "origin", "main", "HOT-7", "--tags")
    setup_app(cluster, namespace)

    fixed = release(namespace, "shop-hot", bare, hot, None)
    fixed["spec"]["hotfix"] = True
    cluster.apply(fixed)
    assert (
        cluster.wait_for_phase(namespace, "shop-hot", "Verified", "Blocked")["status"]["version"] == "v1.4.1"
    )

    wrong = release(namespace, "shop-not-hot", bare, not_hot, None)
    wrong["spec"]["hotfix"] = True
    cluster.apply(wrong)
    blocked = cluster.wait_for_phase(namespace, "shop-not-hot", "Blocked", "Verified")
    assert blocked["status"]["reason"] == "NotAHotfixBranch" and "spec.hotfix" in blocked["status"]["message"]


def test_an_unreachable_origin_blocks_visibly_and_the_release_goes_on_when_it_is_back(
    cluster: Cluster, git_operator: OperatorThread, namespace: str, origin: tuple[Path, Clone]
) -> None:
    bare, work = origin
    revision = work.commit("feat(JIRA-1): first")
    work.git("push", "-q", "origin", "main")
    setup_app(cluster, namespace)
    away = bare.with_name("away.git")
    bare.rename(away)  # origin down: the path answers nothing, like a host that is gone
    cluster.apply(release(namespace, "shop-offline", bare, revision, None))
    blocked = cluster.wait_for_phase(namespace, "shop-offline", "Blocked", "Verified")
    assert blocked["status"]["reason"] == "GitSourceUnavailable"
    assert str(bare) in blocked["status"]["message"] or "does not appear" in blocked["status"]["message"]
    assert cluster.images("Deployment", namespace, "web")["web"] == m.OLD_WEB
    away.rename(bare)
    verified = cluster.wait_for_phase(namespace, "shop-offline", "Verified", "Failed", timeout=60)
    assert verified["status"]["version"] == "v0.1.0"
    assert tags(bare) == {"v0.1.0": revision}


def test_after_a_hotfix_tagged_on_its_branch_main_releases_above_it(
    cluster: Cluster, git_operator: OperatorThread, namespace: str, origin: tuple[Path, Clone]
) -> None:
    bare, work = origin
    work.commit("feat(JIRA-1): first")
    work.git("tag", "v1.4.0")
    work.git("checkout", "-q", "-b", "HOT-7")
    work.commit("fix(HOT-7): stop the data loss")
    work.git("tag", "v1.4.1")  # the hotfix, tagged on its branch (the seed's infrastructure workflow)
    work.git("checkout", "-q", "main")
    fix = work.commit("fix(JIRA-2): an ordinary fix on main")
    work.git("push", "-q", "origin", "main", "HOT-7", "--tags")
    setup_app(cluster, namespace)

    cluster.apply(release(namespace, "shop-fix", bare, fix, None))
    body = cluster.wait_for_phase(namespace, "shop-fix", "Verified", "Failed", "Blocked")
    assert body["status"]["phase"] == "Verified", body["status"]["message"]  # before: TagMismatch for ever
    assert body["status"]["version"] == "v1.4.2"
    assert tags(bare)["v1.4.2"] == fix and tags(bare)["v1.4.1"] != fix


def test_two_releases_in_flight_never_carry_the_same_version(
    cluster: Cluster, git_operator: OperatorThread, namespace: str, origin: tuple[Path, Clone]
) -> None:
    bare, work = origin
    first = feature_after_v1_4_0(work, "feat(JIRA-2): checkout by invoice")
    second = work.commit("fix(JIRA-3): rounding")
    docs = work.commit("docs(JIRA-4): the invoice page")
    work.git("push", "-q", "origin", "main")
    setup_app(cluster, namespace, script="sleep 3")  # the first is still testing when the next start

    cluster.apply(release(namespace, "shop-a", bare, first, None))
    cluster.wait_for_phase(namespace, "shop-a", "Testing", timeout=60)
    cluster.apply(release(namespace, "shop-b", bare, second, None))
    cluster.apply(release(namespace, "shop-c", bare, docs, None))

    blocked = cluster.wait_for_phase(namespace, "shop-c", "Blocked", "Queued", "Verified", timeout=60)
    assert blocked["status"]["reason"] == "NothingToRelease", blocked["status"]["message"]
    # Said, not a collision: counted from shop-b's v1.5.1, in flight or (on a slow machine, where
    # shop-c looked again only after shop-b was tagged) already a tag.
    assert "since v1.5.1" in blocked["status"]["message"], blocked["status"]["message"]
    a = cluster.wait_for_phase(namespace, "shop-a", "Verified", "Failed", "Blocked", timeout=60)
    b = cluster.wait_for_phase(namespace, "shop-b", "Verified", "Failed", "Blocked", timeout=60)
    assert (a["status"]["phase"], b["status"]["phase"]) == ("Verified", "Verified"), b["status"]["message"]
    assert (a["status"]["version"], b["status"]["version"]) == ("v1.5.0", "v1.5.1")
    assert tags(bare)["v1.5.0"] == first and tags(bare)["v1.5.1"] == second


def test_a_released_hotfix_says_how_to_bring_it_back_to_main_and_main_keeps_releasing(
    cluster: Cluster, git_operator: OperatorThread, namespace: str, origin: tuple[Path, Clone]
) -> None:
    bare, work = origin
    work.commit("feat(JIRA-1): first")
    work.git("tag", "v1.4.0")
    work.git("checkout", "-q", "-b", "HOT-7")
    hot = work.commit("fix(HOT-7): stop the data loss")
    work.git("checkout", "-q", "main")
    fix = work.commit("fix(JIRA-2): an ordinary fix on main")
    work.git("push", "-q", "origin", "main", "HOT-7", "--tags")
    for workload in m.workloads(namespace):
        cluster.apply(workload)
    pipeline = m.pipeline(namespace)
    pipeline["spec"]["stages"][1]["targets"].append({"namespace": namespace, "name": "worker"})
    cluster.apply(pipeline)

    hotfix = release(namespace, "shop-hot", bare, hot, None)
    hotfix["spec"]["hotfix"] = True
    cluster.apply(hotfix)
    cluster.wait_for_phase(namespace, "shop-hot", "Verified", timeout=60)
    cluster.apply(m.decision(namespace, "shop-hot", "Approve"))
    body = cluster.wait_for_phase(namespace, "shop-hot", "Released", "Failed", "Blocked", timeout=60)
    assert body["status"]["phase"] == "Released", body["status"]["message"]
    assert body["status"]["version"] == "v1.4.1" and tags(bare)["v1.4.1"] == hot  # tagged on HOT-7
    command = (
        "git fetch origin && git checkout main && git merge --no-ff origin/HOT-7 && git push origin main"
    )
    assert command in body["status"]["message"], body["status"].get("tag")
    cluster.wait_for_events(namespace, "shop-hot", "HotfixMergeBack")
    assert work.git("rev-parse", "main") == work.git("rev-parse", "origin/main")  # main untouched by Gantry

    cluster.apply(release(namespace, "shop-fix", bare, fix, None))  # before anyone merged it back
    after = cluster.wait_for_phase(namespace, "shop-fix", "Verified", "Blocked", "Failed", timeout=60)
    assert (after["status"]["phase"], after["status"]["version"]) == ("Verified", "v1.4.2")

    work.git("fetch", "-q", "origin")  # what the message says to do
    work.git("merge", "-q", "--no-ff", "-m", "Merge HOT-7", "origin/HOT-7")
    work.git("push", "-q", "origin", "main")
    assert "v1.4.1" in work.git("tag", "--merged", "main").split()
