"""Trust at the edges: what people and real API servers do to Gantry's objects mid-flight."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tests.conftest import FAST
from tests.e2e import manifests as m
from tests.e2e.test_staging_flow import setup_app
from tests.harness.cluster import Cluster
from tests.harness.operator import OperatorThread, RecordingAlerter

pytestmark = pytest.mark.e2e


def v1_held_mid_rollout(cluster: Cluster, namespace: str, workload: str = "web") -> None:
    """The app set up and shop-v1 deployed to `workload`, whose rollout the stand-in controller
    holds open until the test releases it: the Release is in flight under the staging lock."""
    setup_app(cluster, namespace)
    cluster.hold_rollouts(namespace, workload)
    cluster.apply(m.release(namespace, "shop-v1", "v1"))
    cluster.wait_for(
        f"v1 rolling out to {workload}",
        lambda: cluster.images("Deployment", namespace, workload)[workload] == m.image(workload, "v1"),
        timeout=30,
    )


def v1_testing(cluster: Cluster, namespace: str, test_timeout: int) -> None:
    """The app set up and shop-v1 deployed, its test Job running until it times out."""
    setup_app(cluster, namespace, script="sleep infinity", test_timeout=test_timeout)
    cluster.apply(m.release(namespace, "shop-v1", "v1"))
    cluster.wait_for_phase(namespace, "shop-v1", "Testing", timeout=30)


def test_a_test_job_that_times_out_is_stopped_and_the_stage_rolled_back(
    cluster: Cluster, operator: OperatorThread, namespace: str
) -> None:
    setup_app(cluster, namespace, script="sleep infinity", test_timeout=2)
    cluster.apply(m.release(namespace, "shop-v1", "v1"))
    body = cluster.wait_for_phase(namespace, "shop-v1", "Failed", "Verified", timeout=60)
    assert (body["status"]["phase"], body["status"]["reason"]) == ("Failed", "TestTimeout")
    assert cluster.images("Deployment", namespace, "web")["web"] == m.OLD_WEB
    cluster.wait_for(
        "the timed-out test Job to be deleted",
        lambda: not cluster.list("Job", namespace, "gantry.dev/release=shop-v1"),
        timeout=30,
    )


def test_a_test_job_stops_itself_at_the_stage_timeout_and_is_owned_by_its_release(
    cluster: Cluster, operator: OperatorThread, namespace: str
) -> None:
    setup_app(cluster, namespace, test_timeout=45)
    release = cluster.apply(m.release(namespace, "shop-v1", "v1"))
    cluster.wait_for_phase(namespace, "shop-v1", "Verified", "Failed", timeout=60)
    (job,) = cluster.list("Job", namespace, "gantry.dev/release=shop-v1")
    assert job["spec"]["activeDeadlineSeconds"] == 45
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    (owner,) = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"]) == ("Release", release["metadata"]["uid"])


def test_a_test_job_deleted_by_someone_fails_the_stage_instead_of_running_again(
    cluster: Cluster, operator: OperatorThread, namespace: str
) -> None:
    setup_app(cluster, namespace, script="sleep infinity", test_timeout=120)
    cluster.apply(m.release(namespace, "shop-v1", "v1"))
    jobs = cluster.wait_for(
        "the test Job to run",
        lambda: cluster.list("Job", namespace, "gantry.dev/release=shop-v1"),
        timeout=30,
    )
    cluster.delete("Job", namespace, jobs[0]["metadata"]["name"])
    body = cluster.wait_for_phase(namespace, "shop-v1", "Failed", "Verified", timeout=60)
    assert (body["status"]["phase"], body["status"]["reason"]) == ("Failed", "TestJobDeleted")
    assert "was deleted before it finished" in body["status"]["message"]
    assert cluster.images("Deployment", namespace, "web")["web"] == m.OLD_WEB
    # Not re-created. (A real server keeps the deleted one, marked for deletion, until its garbage
    # collector has orphaned the Pods: an API DELETE of a Job defaults to the `orphan` policy.)
    jobs = cluster.list("Job", namespace, "gantry.dev/release=shop-v1")
    assert not [job for job in jobs if not job["metadata"].get("deletionTimestamp")]


def test_a_release_with_a_long_name_gets_test_jobs_a_real_server_accepts(
    cluster: Cluster, operator: OperatorThread, namespace: str
) -> None:
    setup_app(cluster, namespace)
    name = "shop-" + "v1-" * 30 + "candidate"  # 104 characters: fine for a Release, not for a label
    cluster.apply(m.release(namespace, name, "v1"))
    body = cluster.wait_for_phase(namespace, name, "Verified", "Failed", timeout=60)
    assert body["status"]["phase"] == "Verified", body["status"]["message"]
    job_namespace, job_name = body["status"]["stages"][0]["testJob"].split("/", 1)
    labels = cluster.must_get("Job", job_namespace, job_name)["metadata"]["labels"]
    assert all(len(value) <= 63 for value in labels.values())


# --- a Release runs on the Pipeline it started with -----------------------------------------------


@pytest.mark.emulator_only("holds a rollout open with the stand-in deployment controller")
def test_renaming_the_environment_while_a_release_queues_does_not_deadlock_it(
    cluster: Cluster, operator: OperatorThread, namespace: str
) -> None:
    v1_held_mid_rollout(cluster, namespace)
    cluster.apply(m.release(namespace, "shop-v2", "v2", version="v1.1.0"))
    cluster.wait_for_phase(namespace, "shop-v2", "Queued", timeout=30)
    cluster.apply(m.pipeline(namespace, lease_env="staging-eu"))  # edited while v2 waits
    cluster.release_rollouts(namespace, "web")
    for name in ("shop-v1", "shop-v2"):
        body = cluster.wait_for_phase(namespace, name, "Verified", "Failed", timeout=60)
        assert body["status"]["phase"] == "Verified", (name, body["status"]["message"])
    assert "holder" not in cluster.must_get("EnvironmentLock", namespace, "staging")["status"]
    # A Release created after the edit runs on the edited Pipeline.
    cluster.apply(m.release(namespace, "shop-v3", "v3", version="v1.2.0"))
    body = cluster.wait_for_phase(namespace, "shop-v3", "Verified", "Failed", timeout=60)
    assert body["status"]["stages"][0]["environment"] == "staging-eu"


def test_a_stage_removed_after_a_release_passed_it_does_not_strand_its_approval(
    cluster: Cluster, operator: OperatorThread, namespace: str
) -> None:
    prod = setup_production(cluster, namespace)
    cluster.apply(m.release(namespace, "shop-v1", "v1"))
    cluster.wait_for_phase(namespace, "shop-v1", "Verified", timeout=60)
    edited = two_namespace_pipeline(namespace, prod)
    edited["spec"]["stages"] = edited["spec"]["stages"][1:]  # staging removed: production only
    cluster.apply(edited)
    cluster.apply(m.decision(namespace, "shop-v1", "Approve"))
    body = cluster.wait_for_phase(namespace, "shop-v1", "Released", "Failed", "Blocked", timeout=60)
    assert body["status"]["phase"] == "Released", body["status"]["message"]
    assert [s["name"] for s in body["status"]["stages"]] == ["staging", "production"]
    assert cluster.images("Deployment", prod, "web")["web"] == m.image("web", "v1")


@pytest.mark.emulator_only("holds a rollout open with the stand-in deployment controller")
def test_a_stage_inserted_before_the_current_one_neither_reruns_nor_skips_anything(
    cluster: Cluster, operator: OperatorThread, namespace: str
) -> None:
    v1_held_mid_rollout(cluster, namespace)
    edited = m.pipeline(namespace)
    dev = {"name": "dev", "targets": [{"namespace": namespace, "name": "worker"}]}
    edited["spec"]["stages"].insert(0, dev)
    cluster.apply(edited)
    cluster.release_rollouts(namespace, "web")
    body = cluster.wait_for_phase(namespace, "shop-v1", "Verified", "Failed", timeout=60)
    assert body["status"]["phase"] == "Verified", body["status"]["message"]
    assert [s["name"] for s in body["status"]["stages"]] == ["staging"]  # as pinned when it started
    assert len(cluster.list("Job", namespace, "gantry.dev/release=shop-v1")) == 1
    tenures = cluster.must_get("EnvironmentLock", namespace, "staging")["status"]["history"]
    assert [t["release"] for t in tenures] == [f"{namespace}/shop-v1"]  # one tenure, not two
    conditions = {c["type"]: c for c in body["status"]["conditions"]}
    assert conditions["PipelineChanged"]["status"] == "True"
    assert "status.pipeline" in conditions["PipelineChanged"]["message"]


# --- production moves forward only, one Release at a time ----------------------------------------


def setup_production(cluster: Cluster, namespace: str) -> str:
    """The shop's workloads in `namespace` (staging) and `<namespace>-prod`, and its Pipeline."""
    prod = f"{namespace}-prod"
    for workload in m.workloads(namespace) + m.workloads(prod):
        cluster.apply(workload)
    cluster.apply(two_namespace_pipeline(namespace, prod))
    return prod


def two_namespace_pipeline(namespace: str, prod: str) -> dict[str, Any]:
    """staging in `namespace`, production (web and worker) in `prod`."""
    pipeline = m.pipeline(namespace)
    pipeline["spec"]["stages"][1]["targets"] = [
        {"namespace": prod, "name": "web"},
        {"namespace": prod, "name": "worker"},
    ]
    return pipeline


@pytest.mark.emulator_only("holds a rollout open with the stand-in deployment controller")
def test_approving_an_older_version_while_a_newer_one_rolls_out_never_moves_production_back(
    cluster: Cluster, operator: OperatorThread, namespace: str
) -> None:
    prod = setup_production(cluster, namespace)
    for name, seed, version in (("shop-new", "new", "v1.2.0"), ("shop-old", "old1", "v1.1.0")):
        cluster.apply(m.release(namespace, name, seed, version=version))
        cluster.wait_for_phase(namespace, name, "Verified", timeout=60)
    cluster.hold_rollouts(prod, "web")
    cluster.apply(m.decision(namespace, "shop-new", "Approve"))
    cluster.wait_for(
        "the newer version to be rolling out in production",
        lambda: cluster.images("Deployment", prod, "web")["web"] == m.image("web", "new"),
        timeout=30,
    )
    cluster.apply(m.decision(namespace, "shop-old", "Approve"))
    cluster.wait_for(
        "the older Release to be refused or held back",
        lambda: (
            (cluster.must_get("ReleaseDecision", namespace, "shop-old-approve").get("status") or {}).get(
                "phase"
            )
            in ("Rejected", "Ignored")
            or (cluster.release(namespace, "shop-old").get("status") or {}).get("phase") == "Blocked"
        ),
        timeout=30,
    )
    assert cluster.images("Deployment", prod, "web")["web"] == m.image("web", "new")
    cluster.release_rollouts(prod, "web")
    body = cluster.wait_for_phase(namespace, "shop-new", "Released", "Failed", timeout=60)
    assert body["status"]["phase"] == "Released", body["status"]["message"]
    assert cluster.images("Deployment", prod, "web")["web"] == m.image("web", "new")
    old = cluster.release(namespace, "shop-old")["status"]
    assert old["phase"] != "Released" and old.get("reason") in (
        "VersionNotNewer",
        "Verified",
        "ProductionBusy",
    )


# --- rollbacks that keep going, and locks that go missing ----------------------------------------


def test_a_rollback_restores_every_workload_it_can_and_names_the_one_it_cannot(
    cluster: Cluster, operator: OperatorThread, namespace: str
) -> None:
    v1_testing(cluster, namespace, test_timeout=3)
    cluster.delete("Deployment", namespace, "web")  # someone deletes one target mid-test
    body = cluster.wait_for_phase(namespace, "shop-v1", "Failed", "Verified", timeout=60)
    assert body["status"]["reason"] == "TestTimeout"
    assert cluster.images("Deployment", namespace, "worker")["worker"] == m.OLD_WORKER  # restored anyway
    assert f"could not restore: Deployment {namespace}/web: not found" in body["status"]["message"]


@pytest.mark.emulator_only("holds a rollout open with the stand-in deployment controller")
def test_a_deleted_lock_rolls_the_stage_back_and_says_so(
    cluster: Cluster, operator: OperatorThread, namespace: str
) -> None:
    v1_held_mid_rollout(cluster, namespace)
    cluster.delete("EnvironmentLock", namespace, "staging")
    cluster.release_rollouts(namespace, "web")
    body = cluster.wait_for_phase(namespace, "shop-v1", "Failed", "Verified", timeout=60)
    assert (body["status"]["phase"], body["status"]["reason"]) == ("Failed", "LockLost")
    assert "the EnvironmentLock object was deleted" in body["status"]["message"]
    assert "another Release now owns it" not in body["status"]["message"]
    assert cluster.images("Deployment", namespace, "web")["web"] == m.OLD_WEB
    assert cluster.images("Deployment", namespace, "worker")["worker"] == m.OLD_WORKER


# --- records that tell the truth -----------------------------------------------------------------


def released(cluster: Cluster, namespace: str, name: str, seed: str, version: str, by: str = "bob") -> None:
    cluster.apply(m.release(namespace, name, seed, version=version))
    cluster.wait_for_phase(namespace, name, "Verified", timeout=60)
    cluster.apply(m.decision(namespace, name, "Approve", by=by))
    body = cluster.wait_for_phase(namespace, name, "Released", "Failed", "Blocked", timeout=60)
    assert body["status"]["phase"] == "Released", body["status"]["message"]


def test_the_ledger_names_the_approver_and_a_rollback_of_an_older_release_is_ignored_not_accepted(
    cluster: Cluster, operator: OperatorThread, namespace: str
) -> None:
    prod = setup_production(cluster, namespace)
    released(cluster, namespace, "shop-v1", "v1", "v1.0.0", by="alice")
    released(cluster, namespace, "shop-v2", "v2", "v1.1.0", by="bob")
    ledger = cluster.must_get("Pipeline", namespace, "shop")["status"]["production"]["history"]
    assert [(e["release"], e["result"], e["decidedBy"]) for e in ledger] == [
        (f"{namespace}/shop-v1", "Released", "alice"),
        (f"{namespace}/shop-v2", "Released", "bob"),
    ]
    cluster.apply(m.decision(namespace, "shop-v1", "Rollback", name="late-rollback"))

    def handled() -> str | None:
        status = cluster.must_get("ReleaseDecision", namespace, "late-rollback").get("status") or {}
        return status.get("phase")

    assert cluster.wait_for("the late rollback to be handled", handled) == "Ignored"
    status = cluster.must_get("ReleaseDecision", namespace, "late-rollback")["status"]
    assert "not what production runs now" in status["message"]
    assert cluster.images("Deployment", prod, "web")["web"] == m.image("web", "v2")


def test_rolling_back_a_release_with_the_same_digests_quarantines_nothing_production_keeps(
    cluster: Cluster, operator: OperatorThread, namespace: str
) -> None:
    setup_production(cluster, namespace)
    released(cluster, namespace, "shop-v1", "same", "v1.0.0")
    released(cluster, namespace, "shop-v2", "same", "v1.1.0")  # a rebuild with identical digests
    cluster.apply(m.decision(namespace, "shop-v2", "Rollback"))
    body = cluster.wait_for_phase(namespace, "shop-v2", "RolledBack", "Failed", timeout=60)
    assert body["status"]["phase"] == "RolledBack"
    status = cluster.must_get("Pipeline", namespace, "shop")["status"]
    assert not status.get("quarantine"), status.get("quarantine")  # production runs those digests


@pytest.mark.emulator_only("holds a rollout open with the stand-in deployment controller")
def test_a_container_renamed_mid_stage_supersedes_the_release_instead_of_verifying_it(
    cluster: Cluster, operator: OperatorThread, namespace: str
) -> None:
    v1_held_mid_rollout(cluster, namespace, "worker")
    renamed = m.deployment(namespace, "worker", {"jobs": m.image("worker", "v1")}, replicas=1)
    cluster.apply(renamed)  # someone renames the container
    cluster.release_rollouts(namespace, "worker")
    body = cluster.wait_for_phase(namespace, "shop-v1", "Failed", "Verified", timeout=60)
    assert (body["status"]["phase"], body["status"]["reason"]) == ("Failed", "Superseded")
    assert "has no container worker any more" in body["status"]["message"]
    # Reported: the Release's other workloads stayed on the failed images. The one still on ours
    # goes back to what it ran before; the renamed one is someone else's and left alone.
    assert f"put back the images of Deployment {namespace}/web" in body["status"]["message"]
    cluster.wait_for(
        "web back on its previous image",
        lambda: cluster.images("Deployment", namespace, "web")["web"] == m.OLD_WEB,
        timeout=30,
    )
    assert cluster.images("Deployment", namespace, "worker") == {"jobs": m.image("worker", "v1")}


def test_a_workload_scaled_to_zero_passes_with_a_warning_that_nothing_runs_it(
    cluster: Cluster, operator: OperatorThread, namespace: str
) -> None:
    setup_app(cluster, namespace)
    cluster.apply(m.deployment(namespace, "worker", {"worker": m.OLD_WORKER}, replicas=0))
    cluster.apply(m.release(namespace, "shop-v1", "v1"))
    cluster.wait_for_phase(namespace, "shop-v1", "Verified", "Failed", timeout=60)
    events = cluster.wait_for_events(namespace, "shop-v1", "ZeroReplicas")
    assert any("scaled to 0 replicas" in e["message"] and "worker" in e["message"] for e in events)


# --- deleting a Release gives back what it held --------------------------------------------------


@pytest.mark.emulator_only("holds a rollout open with the stand-in deployment controller")
def test_deleting_the_lock_holder_mid_flight_frees_the_lock_for_the_next_release_at_once(
    cluster: Cluster, operator: OperatorThread, namespace: str
) -> None:
    v1_held_mid_rollout(cluster, namespace)
    cluster.apply(m.release(namespace, "shop-v2", "v2", version="v1.1.0"))
    cluster.wait_for_phase(namespace, "shop-v2", "Queued", timeout=30)
    cluster.delete("Release", namespace, "shop-v1")  # in flight, holding the lock (lease: 300 s)

    def holder() -> str | None:
        status = cluster.must_get("EnvironmentLock", namespace, "staging").get("status") or {}
        return (status.get("holder") or {}).get("release")

    assert cluster.wait_for("shop-v2 to get the lock", lambda: holder() == f"{namespace}/shop-v2", timeout=10)
    cluster.release_rollouts(namespace, "web")
    body = cluster.wait_for_phase(namespace, "shop-v2", "Verified", "Failed", timeout=30)
    assert body["status"]["phase"] == "Verified", body["status"]["message"]
    tenures = cluster.must_get("EnvironmentLock", namespace, "staging")["status"]["history"]
    assert tenures[0]["release"] == f"{namespace}/shop-v1" and tenures[0]["reason"] == "ReleaseDeleted"


def test_a_release_deleted_while_testing_puts_its_stage_back_and_stops_its_job(
    cluster: Cluster, operator: OperatorThread, namespace: str
) -> None:
    v1_testing(cluster, namespace, test_timeout=600)
    assert cluster.images("Deployment", namespace, "web")["web"] == m.image("web", "v1")
    cluster.delete("Release", namespace, "shop-v1")  # by hand, or a GitOps prune

    def put_back() -> bool:
        images = {
            **cluster.images("Deployment", namespace, "web"),
            **cluster.images("Deployment", namespace, "worker"),
        }
        return images["web"] == m.OLD_WEB and images["worker"] == m.OLD_WORKER

    cluster.wait_for("staging back on the images it ran before", put_back, timeout=30)
    cluster.wait_for(
        "the test Job stopped",
        lambda: not cluster.list("Job", namespace, "gantry.dev/release=shop-v1"),
        timeout=30,
    )
    cluster.wait_for(  # given back as the Release goes (a moment after its images, on a real server)
        "the lock given back",
        lambda: not cluster.must_get("EnvironmentLock", namespace, "staging")["status"].get("holder"),
        timeout=30,
    )
    events = cluster.wait_for_events(namespace, "shop-v1", "ReleaseDeleted")
    (said,) = [e["message"] for e in events if e["reason"] == "ReleaseDeleted"]
    assert "re-applied the images" in said and "stopped test Job" in said, said


@pytest.mark.emulator_only("holds a rollout open with the stand-in deployment controller")
def test_a_deleted_waiter_at_the_head_of_the_queue_does_not_block_a_free_lock(
    cluster: Cluster, operator: OperatorThread, namespace: str
) -> None:
    v1_held_mid_rollout(cluster, namespace)
    for name, seed, version in (("shop-v2", "v2", "v1.1.0"), ("shop-v3", "v3", "v1.2.0")):
        cluster.apply(m.release(namespace, name, seed, version=version))
        cluster.wait_for_phase(namespace, name, "Queued", timeout=30)
    cluster.delete("Release", namespace, "shop-v2")  # next in line, gone
    cluster.release_rollouts(namespace, "web")
    cluster.wait_for_phase(namespace, "shop-v1", "Verified", timeout=30)
    body = cluster.wait_for_phase(namespace, "shop-v3", "Verified", "Failed", timeout=20)
    assert body["status"]["phase"] == "Verified", body["status"]["message"]


# --- the production record outlives the Pipeline -------------------------------------------------


def test_deleting_and_reapplying_the_pipeline_keeps_history_and_quarantine(
    cluster: Cluster, operator: OperatorThread, namespace: str
) -> None:
    prod = setup_production(cluster, namespace)
    released(cluster, namespace, "shop-v1", "v1", "v1.0.0")
    released(cluster, namespace, "shop-v2", "v2", "v1.1.0")
    cluster.apply(m.decision(namespace, "shop-v2", "Rollback"))
    cluster.wait_for_phase(namespace, "shop-v2", "RolledBack", timeout=60)

    cluster.delete("Pipeline", namespace, "shop")  # what a GitOps re-sync may do
    cluster.wait_for("the Pipeline to be gone", lambda: cluster.get("Pipeline", namespace, "shop") is None)
    cluster.apply(two_namespace_pipeline(namespace, prod))

    ledger = cluster.must_get("ProductionLedger", namespace, "shop")["status"]
    assert [e["result"] for e in ledger["production"]["history"]] == ["Released", "RolledBack", "Restored"]
    assert {q["digest"] for q in ledger["quarantine"]} == {
        m.image("web", "v2").split("@")[1],
        m.image("worker", "v2").split("@")[1],
    }

    def shown_version() -> str | None:
        status = cluster.must_get("Pipeline", namespace, "shop").get("status") or {}
        return (status.get("production") or {}).get("version")

    cluster.wait_for("the re-applied Pipeline to show the kept history", lambda: shown_version() == "v1.0.0")
    cluster.apply(m.release(namespace, "shop-v2-again", "v2", version="v1.2.0"))  # the bad digests again
    body = cluster.wait_for_phase(namespace, "shop-v2-again", "Blocked", "Verified", timeout=30)
    assert (body["status"]["phase"], body["status"]["reason"]) == ("Blocked", "Quarantined")


def test_a_lease_too_short_for_the_operator_to_renew_is_refused_with_the_field_and_the_fix(
    cluster: Cluster, namespace: str
) -> None:
    setup_app(cluster, namespace)
    cluster.apply(m.environment_lock(namespace, lease_seconds=2))
    slow = replace(FAST, reconcile_interval=1.0)  # looks every second: a lease needs 3 s or more
    running = OperatorThread(slow, RecordingAlerter()).start()
    try:
        cluster.apply(m.release(namespace, "shop-v1", "v1"))
        body = cluster.wait_for_phase(namespace, "shop-v1", "Blocked", "Verified", timeout=30)
    finally:
        running.stop()
    assert (body["status"]["phase"], body["status"]["reason"]) == ("Blocked", "LeaseTooShort")
    assert "EnvironmentLock staging spec.leaseSeconds" in body["status"]["message"]
    assert cluster.images("Deployment", namespace, "web")["web"] == m.OLD_WEB
