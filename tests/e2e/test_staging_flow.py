"""A Release through staging: deploy under the lock, test, Verified; or fail and roll back exactly."""

from __future__ import annotations

import pytest

from tests.e2e import manifests as m
from tests.harness.cluster import Cluster
from tests.harness.operator import OperatorThread, RecordingAlerter

pytestmark = pytest.mark.e2e


def setup_app(cluster: Cluster, namespace: str, **pipeline_options: object) -> None:
    for workload in m.workloads(namespace):
        cluster.apply(workload)
    cluster.apply(m.pipeline(namespace, **pipeline_options))  # type: ignore[arg-type]


def test_happy_path_deploys_the_digests_once_tests_and_verifies(
    cluster: Cluster, operator: OperatorThread, namespace: str
) -> None:
    setup_app(cluster, namespace)
    generation_before = cluster.must_get("Deployment", namespace, "web")["metadata"]["generation"]

    cluster.apply(m.release(namespace, "shop-v1", "v1"))
    body = cluster.wait_for_phase(namespace, "shop-v1", "Verified", "Failed")

    status = body["status"]
    assert status["phase"] == "Verified", status["message"]
    # Only the named containers were re-pinned, to exactly the Release's digests.
    assert cluster.images("Deployment", namespace, "web") == {
        "web": m.image("web", "v1"),
        "istio-proxy": "istio/proxyv2@" + m.digest("istio"),
    }
    assert cluster.images("Deployment", namespace, "worker") == {"worker": m.image("worker", "v1")}
    assert cluster.must_get("Deployment", namespace, "web")["metadata"]["generation"] == generation_before + 1
    # The previous images are on record for an exact rollback.
    run = status["stages"][0]
    assert {(i["workload"], i["container"], i["before"]) for i in run["images"]} == {
        (f"Deployment/{namespace}/web", "web", m.OLD_WEB),
        (f"Deployment/{namespace}/worker", "worker", m.OLD_WORKER),
    }
    # The integration test ran once, labelled with the Release, and its result is recorded.
    jobs = cluster.list("Job", namespace, "gantry.dev/release=shop-v1")
    assert len(jobs) == 1
    assert run["testJob"] == f"{namespace}/{jobs[0]['metadata']['name']}"
    assert run["testResult"] == "Succeeded"
    env = {e["name"]: e["value"] for e in jobs[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["GANTRY_VERSION"] == "v1.0.0"
    # The lock was taken and given back.
    lock = cluster.must_get("EnvironmentLock", namespace, "staging")
    assert "holder" not in lock["status"]
    assert [(h["release"], h["reason"]) for h in lock["status"]["history"]] == [
        (f"{namespace}/shop-v1", "Passed")
    ]
    # kstatus conditions and Events say what happened.
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {"Ready": "True", "Reconciling": "False", "Stalled": "False"}
    expected = (
        "LockRequested",
        "LockAcquired",
        "Deployed",
        "RolledOut",
        "TestStarted",
        "TestPassed",
        "Verified",
    )
    cluster.wait_for_events(namespace, "shop-v1", *expected)
    assert status["observedGeneration"] == body["metadata"]["generation"]


def test_failed_test_rolls_staging_back_exactly_and_alerts(
    cluster: Cluster, operator: OperatorThread, alerts: RecordingAlerter, namespace: str
) -> None:
    setup_app(cluster, namespace, script="echo checkout broken; exit 1")

    cluster.apply(m.release(namespace, "shop-v2", "v2"))
    body = cluster.wait_for_phase(namespace, "shop-v2", "Failed", "Verified")

    status = body["status"]
    assert status["phase"] == "Failed"
    assert status["reason"] == "TestFailed"
    assert "rolled back" in status["message"]
    # What the Job's Pod says, not only the Job's "backoff limit reached":
    assert "container tests exited with code 1 (Error)" in status["message"], status["message"]
    assert cluster.images("Deployment", namespace, "web")["web"] == m.OLD_WEB
    assert cluster.images("Deployment", namespace, "worker") == {"worker": m.OLD_WORKER}
    assert status["stages"][0]["testResult"] == "Failed"
    lock = cluster.must_get("EnvironmentLock", namespace, "staging")
    assert "holder" not in lock["status"] and lock["status"]["queue"] == []
    assert [a.reason for a, _ in alerts.alerts] == ["TestFailed"]
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conditions["Stalled"] == ("True", "TestFailed")
    assert conditions["Ready"][0] == "False"
    cluster.wait_for_events(namespace, "shop-v2", "TestFailed", "RollingBack", "Failed")


def test_selector_targets_and_statefulsets_are_repinned_together(
    cluster: Cluster, operator: OperatorThread, namespace: str
) -> None:
    for region in ("eu", "us"):
        cluster.apply(m.deployment(namespace, f"web-{region}", {"web": m.OLD_WEB}, labels={"app": "web"}))
    statefulset = m.deployment(namespace, "ledger", {"ledger": m.image("ledger", "old")}, replicas=3)
    statefulset["kind"] = "StatefulSet"
    statefulset["spec"]["serviceName"] = "ledger"
    cluster.apply(statefulset)
    pipeline = m.pipeline(namespace)
    pipeline["spec"]["stages"][0]["targets"] = [
        {"namespace": namespace, "selector": {"matchLabels": {"app": "web"}}},
        {"namespace": namespace, "kind": "StatefulSet", "name": "ledger"},
    ]
    cluster.apply(pipeline)

    artifacts = {"web": m.image("web", "v5"), "ledger": m.image("ledger", "v5")}
    cluster.apply(m.release(namespace, "shop-v5", "v5", artifacts=artifacts))
    body = cluster.wait_for_phase(namespace, "shop-v5", "Verified", "Failed")

    assert body["status"]["phase"] == "Verified", body["status"]["message"]
    assert cluster.images("Deployment", namespace, "web-eu") == {"web": artifacts["web"]}
    assert cluster.images("Deployment", namespace, "web-us") == {"web": artifacts["web"]}
    assert cluster.images("StatefulSet", namespace, "ledger") == {"ledger": artifacts["ledger"]}
    workloads = sorted(i["workload"] for i in body["status"]["stages"][0]["images"])
    assert workloads == [
        f"Deployment/{namespace}/web-eu",
        f"Deployment/{namespace}/web-us",
        f"StatefulSet/{namespace}/ledger",
    ]
