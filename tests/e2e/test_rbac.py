"""RBAC as documented in examples/rbac.yaml, enforced by the API server (emulated authorizer):
developers create Releases but cannot approve; on-call approves as themselves; and the operator
does the whole flow with nothing but the permissions the example grants it."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gantry.adapters.kube import ApiError
from tests.conftest import FAST
from tests.e2e import manifests as m
from tests.git.repos import origin_and_clone
from tests.harness import envtest
from tests.harness.cluster import REAL_CLUSTER_ENV, ROOT, Cluster
from tests.harness.operator import OperatorThread, RecordingAlerter
from tests.harness.syncer import Syncer

pytestmark = pytest.mark.e2e
NAMESPACE = "gantry"  # the namespace examples/rbac.yaml binds the team roles in


def envtest_tier() -> bool:
    return envtest.assets() is not None and not os.environ.get(REAL_CLUSTER_ENV)


@pytest.fixture
def rbac_cluster(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    if not cluster.emulated and not envtest_tier():
        pytest.skip("acts as test identities by token: the emulator or envtest (a real cluster has its own)")
    manifests = the_team(cluster)
    monkeypatch.setenv("KUBECONFIG", str(cluster.as_user("operator", tmp_path).kubeconfig))
    operator = OperatorThread(FAST, RecordingAlerter()).start()
    users = {name: cluster.as_user(name, tmp_path) for name in ("alice", "bob", "carol", "dave", "argocd")}
    await_policy(users["bob"], enforced=True)
    await_policy(users["alice"], enforced=True, by="alice")  # Approve needs the on-call role
    yield users
    operator.stop()
    lift_policies(cluster, manifests, users["bob"])


def the_team(cluster: Cluster, *more: dict[str, Any]) -> list[dict[str, Any]]:
    """examples/rbac.yaml (and `more`), the shop's workloads, and its Pipeline with a manual
    production stage; the manifests of rbac.yaml."""
    manifests = list(yaml.safe_load_all((ROOT / "examples" / "rbac.yaml").read_text()))
    for manifest in [*manifests, *more]:
        cluster.apply(manifest)
    for workload in m.workloads(NAMESPACE) + m.workloads("shop-prod"):
        cluster.apply(workload)
    pipeline = m.pipeline(NAMESPACE)
    production = [{"namespace": "shop-prod", "name": "web"}, {"namespace": "shop-prod", "name": "worker"}]
    pipeline["spec"]["stages"][1].update(promotion="Manual", targets=production)
    cluster.apply(pipeline)
    return manifests


def lift_policies(cluster: Cluster, manifests: list[dict[str, Any]], user: Cluster) -> None:
    """The policy is cluster-wide: the tests after this one decide as the admin in others' names."""
    for manifest in reversed(manifests):
        if manifest["kind"].startswith("ValidatingAdmissionPolicy"):
            cluster.delete(manifest["kind"], None, manifest["metadata"]["name"])
    await_policy(user, enforced=False)


def await_policy(
    user: Cluster, enforced: bool, seconds: float = 30, by: str = "carol", action: str = "Approve"
) -> None:
    """A real API server loads an admission policy (and drops one) a moment after the write; ask by
    dry run until the probe (by default: deciding in another's name) is refused (or allowed) so no
    step races it."""
    probe = m.decision(NAMESPACE, "policy-probe", action, by=by)
    path = f"/apis/gantry.dev/v1alpha1/namespaces/{NAMESPACE}/releasedecisions"
    deadline = time.monotonic() + seconds
    while True:
        try:
            user.kube.request("POST", path, body=probe, query={"dryRun": "All"})
            refused = False
        except ApiError as error:
            refused = error.status == 422
        if refused == enforced or time.monotonic() > deadline:
            assert refused == enforced, f"the policy is {'not ' * enforced}in force ({action} by {by})"
            return
        time.sleep(0.2)


def test_developers_release_on_call_approves_and_the_operator_needs_nothing_more(
    cluster: Cluster, rbac_cluster: dict[str, Any]
) -> None:
    alice, bob = rbac_cluster["alice"], rbac_cluster["bob"]
    alice.apply(m.release(NAMESPACE, "shop-v1", "v1"))
    verified = cluster.wait_for_phase(NAMESPACE, "shop-v1", "Verified", "Failed", "Blocked")
    assert verified["status"]["phase"] == "Verified"  # done by the operator's own ServiceAccount

    with pytest.raises(ApiError) as denied:  # a developer presses buttons, but approves nothing
        alice.apply(m.decision(NAMESPACE, "shop-v1", "Approve", by="alice"))
    assert denied.value.status == 422
    assert "Approve, LiftQuarantine and OverrideFreeze need the approve verb" in denied.value.message

    with pytest.raises(ApiError) as impersonation:
        bob.apply(m.decision(NAMESPACE, "shop-v1", "Approve", by="carol", name="as-carol"))
    assert (
        impersonation.value.status == 422
        and "spec.decidedBy must be your own user name" in impersonation.value.message
    )

    bob.apply(m.decision(NAMESPACE, "shop-v1", "Approve", by="bob"))
    released = cluster.wait_for_phase(NAMESPACE, "shop-v1", "Released", "Failed", "Blocked")
    assert released["status"]["phase"] == "Released", released["status"]["message"]
    assert cluster.images("Deployment", "shop-prod", "web")["web"] == m.image("web", "v1")
    assert [(d["action"], d["decidedBy"]) for d in released["status"]["decisions"]] == [("Approve", "bob")]

    # The team's button: alice may press Rollback (refused by Gantry, not by the API server, as
    # nothing stood in production before shop-v1) and is recorded as the one who pressed it.
    pressed = alice.apply(m.decision(NAMESPACE, "shop-v1", "Rollback", by="alice"))
    assert pressed["spec"]["decidedBy"] == "alice"
    decided = cluster.wait_for(
        "the Rollback decided",
        lambda: (
            (cluster.get("ReleaseDecision", NAMESPACE, "shop-v1-rollback") or {})
            .get("status", {})
            .get("phase")
        ),
    )
    assert decided in ("Rejected", "Ignored"), decided

    with pytest.raises(ApiError) as no_write:
        alice.kube.merge_patch(
            f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/web", {"spec": {"replicas": 9}}
        )
    assert no_write.value.status == 403


def test_a_decision_committed_to_git_names_the_person_and_the_commit(
    cluster: Cluster, rbac_cluster: dict[str, Any], tmp_path: Path
) -> None:
    """carol merges a ReleaseDecision into the team's git repository; Argo CD (the harness's syncer,
    acting as its ServiceAccount) applies it: it may name carol, and the record keeps the commit
    that carried it. A person still decides only in their own name."""
    alice, argocd = rbac_cluster["alice"], rbac_cluster["argocd"]
    alice.apply(m.release(NAMESPACE, "shop-v7", "v7"))
    verified = cluster.wait_for_phase(NAMESPACE, "shop-v7", "Verified", "Failed", "Blocked")
    assert verified["status"]["phase"] == "Verified"
    with pytest.raises(ApiError) as impersonation:
        alice.apply(m.decision(NAMESPACE, "shop-v7", "Rollback", by="carol", name="alice-as-carol"))
    assert impersonation.value.status == 422

    origin, work = origin_and_clone(tmp_path, "team")
    (work.path / "decisions").mkdir()
    decision = m.decision(NAMESPACE, "shop-v7", "Approve", by="carol", reason="reviewed in MR !42")
    (work.path / "decisions" / "shop-v7-approve.yaml").write_text(yaml.safe_dump(decision))
    work.git("add", "-A")
    work.git("commit", "-q", "-m", "release(shop): approve v7")
    work.git("push", "-q", "origin", "main")
    commit = work.git("rev-parse", "HEAD")
    with Syncer(argocd, origin, "decisions"):
        released = cluster.wait_for_phase(NAMESPACE, "shop-v7", "Released", "Failed", "Blocked")
    assert released["status"]["phase"] == "Released", released["status"]["message"]
    [record] = released["status"]["decisions"]
    assert (record["action"], record["decidedBy"], record["commit"]) == ("Approve", "carol", commit)
    assert record["via"] == "argocd-controller"  # the field manager that created it


def refused_by_admission(user: Cluster, path: str, body: dict[str, Any], seconds: float = 30) -> str:
    """Create by dry run until the API server refuses it (an admission policy loads a moment
    after it is written); the refusal's message."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            user.kube.request("POST", path, body=body, query={"dryRun": "All"})
        except ApiError as error:
            if error.status == 422:
                return error.message
        assert time.monotonic() < deadline, f"{path}: not refused by an admission policy"
        time.sleep(0.2)


def test_production_takes_two_on_call_approvals_neither_by_the_author(
    cluster: Cluster, rbac_cluster: dict[str, Any]
) -> None:
    """The seed's production approval, as a policy: two people of the on-call group, and not the
    one who wrote the Release. carol (developer and on-call) creates it; her own approval does not
    count; bob's does; bob cannot claim a group he is not in; dave's second approval releases."""
    alice, bob, carol, dave = (rbac_cluster[n] for n in ("alice", "bob", "carol", "dave"))
    pipeline = m.pipeline(NAMESPACE)
    production = [{"namespace": "shop-prod", "name": "web"}, {"namespace": "shop-prod", "name": "worker"}]
    policy = {"approvals": 2, "from": {"groups": ["shop-oncall"]}, "notAuthor": True}
    pipeline["spec"]["stages"][1].update(promotion="Manual", targets=production, approval=policy)
    cluster.apply(pipeline)

    forged = m.release(NAMESPACE, "shop-v8-forged", "v8f")
    forged["metadata"]["annotations"] = {"gantry.dev/created-by": "carol"}
    said = refused_by_admission(alice, f"/apis/gantry.dev/v1alpha1/namespaces/{NAMESPACE}/releases", forged)
    assert "gantry.dev/created-by] must be your own user name" in said

    written = m.release(NAMESPACE, "shop-v8", "v8")
    written["metadata"]["annotations"] = {"gantry.dev/created-by": "carol"}
    carol.apply(written)
    verified = cluster.wait_for_phase(NAMESPACE, "shop-v8", "Verified", "Failed", "Blocked")
    assert (
        "0 of 2 approvals; waiting for 2 more: 2 approvals from group shop-oncall"
        in verified["status"]["message"]
    )

    def approve(user: Cluster, by: str, groups: list[str]) -> dict[str, Any]:
        decision = m.decision(NAMESPACE, "shop-v8", "Approve", by=by, name=f"shop-v8-{by}-{len(groups)}")
        decision["spec"]["groups"] = groups
        user.apply(decision)
        return cluster.wait_for(
            f"{by}'s approval handled",
            lambda: (cluster.get("ReleaseDecision", NAMESPACE, decision["metadata"]["name"]) or {}).get(
                "status"
            ),
        )

    own = approve(carol, "carol", ["shop-oncall"])
    assert own["phase"] == "Ignored" and "carol is an author of this Release" in own["message"]
    with pytest.raises(ApiError) as claimed:
        approve(bob, "bob", ["shop-leads", "shop-oncall"])
    assert (
        claimed.value.status == 422 and "spec.groups may name only your own groups" in claimed.value.message
    )
    counted = approve(bob, "bob", ["shop-oncall"])
    assert counted["phase"] == "Applied", counted
    waiting = cluster.release(NAMESPACE, "shop-v8")["status"]
    assert (
        waiting["phase"] == "Verified" and "1 of 2 approvals (bob); waiting for 1 more" in waiting["message"]
    )
    assert cluster.images("Deployment", "shop-prod", "web")["web"] != m.image("web", "v8")

    approve(dave, "dave", ["shop-oncall"])
    released = cluster.wait_for_phase(NAMESPACE, "shop-v8", "Released", "Failed", "Blocked")
    assert released["status"]["phase"] == "Released", released["status"]["message"]
    assert cluster.images("Deployment", "shop-prod", "web")["web"] == m.image("web", "v8")
    assert [(a["by"], a["stage"]) for a in released["status"]["approvals"]] == [
        ("bob", "production"),
        ("dave", "production"),
    ]
    production_run = released["status"]["stages"][-1]
    assert production_run["decidedBy"] == "bob, dave"
