"""Bad input: refused at admission with the field named, or a Blocked Release that touches nothing."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from gantry.adapters.kube import ApiError
from tests.e2e import manifests as m
from tests.harness.cluster import Cluster
from tests.harness.operator import OperatorThread

pytestmark = pytest.mark.e2e

Mutation = Callable[[dict[str, Any], dict[str, Any], list[dict[str, Any]]], None]


def _unknown_pipeline(
    release: dict[str, Any], pipeline: dict[str, Any], workloads: list[dict[str, Any]]
) -> None:
    release["spec"]["pipeline"] = "no-such-pipeline"


def _missing_workload(
    release: dict[str, Any], pipeline: dict[str, Any], workloads: list[dict[str, Any]]
) -> None:
    workloads.pop()  # the "worker" Deployment is never created


def _missing_container(
    release: dict[str, Any], pipeline: dict[str, Any], workloads: list[dict[str, Any]]
) -> None:
    pipeline["spec"]["stages"][0]["targets"][0]["containers"] = ["web", "frontend"]


def _malformed_template(
    release: dict[str, Any], pipeline: dict[str, Any], workloads: list[dict[str, Any]]
) -> None:
    pipeline["spec"]["stages"][0]["test"]["jobTemplate"]["spec"]["template"]["spec"] = {
        "restartPolicy": "Never"
    }


def _unmatched_artifact(
    release: dict[str, Any], pipeline: dict[str, Any], workloads: list[dict[str, Any]]
) -> None:
    release["spec"]["artifacts"].append({"name": "cron", "image": m.image("cron", "v9")})


def _other_application(
    release: dict[str, Any], pipeline: dict[str, Any], workloads: list[dict[str, Any]]
) -> None:
    pipeline["spec"]["application"] = "billing"


def _version_from_commits_without_a_git_cache(
    release: dict[str, Any], pipeline: dict[str, Any], workloads: list[dict[str, Any]]
) -> None:
    del release["spec"]["version"]  # to be computed from the commits, by an operator that cannot read git
    release["spec"]["source"] = {"repository": "https://git.example.com/shop.git", "revision": "a" * 40}


CASES: list[tuple[str, Mutation, str, str]] = [
    ("unknown pipeline", _unknown_pipeline, "PipelineNotFound", "spec.pipeline"),
    ("missing workload", _missing_workload, "WorkloadNotFound", "spec.stages[0].targets[1].name"),
    ("missing container", _missing_container, "ContainerNotFound", "spec.stages[0].targets[0].containers[1]"),
    (
        "malformed test template",
        _malformed_template,
        "InvalidTestJobTemplate",
        "spec.template.spec.containers",
    ),
    ("artifact matching no container", _unmatched_artifact, "ArtifactUnmatched", "spec.artifacts[2].name"),
    ("pipeline of another application", _other_application, "PipelineMismatch", "spec.pipeline"),
    (
        "version from commits, no git cache",
        _version_from_commits_without_a_git_cache,
        "GitCacheOff",
        "spec.version",
    ),
]


@pytest.mark.parametrize(("case", "mutate", "reason", "field"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_blocks_the_release_names_the_field_and_touches_nothing(
    cluster: Cluster,
    operator: OperatorThread,
    namespace: str,
    case: str,
    mutate: Mutation,
    reason: str,
    field: str,
) -> None:
    release = m.release(namespace, "shop-bad", "bad")
    pipeline = m.pipeline(namespace)
    workloads = m.workloads(namespace)
    mutate(release, pipeline, workloads)
    for workload in workloads:
        cluster.apply(workload)
    cluster.apply(pipeline)
    before = {
        w["metadata"]["name"]: cluster.must_get("Deployment", namespace, w["metadata"]["name"])
        for w in workloads
    }

    cluster.apply(release)
    body = cluster.wait_for_phase(namespace, "shop-bad", "Blocked", "Verified", "Failed")

    status = body["status"]
    assert status["phase"] == "Blocked"
    assert status["reason"] == reason
    assert field in status["message"] and "fix:" in status["message"], status["message"]
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", reason)
    warning = [e for e in cluster.wait_for_events(namespace, "shop-bad", reason) if e["reason"] == reason]
    assert [e["type"] for e in warning] == ["Warning"]  # announced once, not on every tick
    for name, old in before.items():
        now = cluster.must_get("Deployment", namespace, name)
        assert now["spec"] == old["spec"] and now["metadata"]["generation"] == old["metadata"]["generation"]
    assert cluster.list("Job", namespace) == []
    lock = cluster.get("EnvironmentLock", namespace, "staging")  # made free with the Pipeline
    lock_status = (lock or {}).get("status") or {}  # a real API server stores none until a write
    assert "holder" not in lock_status and not lock_status.get("queue")


def test_a_blocked_release_proceeds_once_the_missing_pipeline_appears(
    cluster: Cluster, operator: OperatorThread, namespace: str
) -> None:
    for workload in m.workloads(namespace):
        cluster.apply(workload)
    cluster.apply(m.release(namespace, "shop-early", "early"))
    cluster.wait_for_phase(namespace, "shop-early", "Blocked")

    cluster.apply(m.pipeline(namespace))
    body = cluster.wait_for_phase(namespace, "shop-early", "Verified", "Failed")
    assert body["status"]["phase"] == "Verified"
    assert cluster.images("Deployment", namespace, "web")["web"] == m.image("web", "early")


def test_rollout_that_never_completes_times_out_and_rolls_back(
    cluster: Cluster, operator: OperatorThread, namespace: str
) -> None:
    for workload in m.workloads(namespace):
        cluster.apply(workload)
    cluster.apply(m.pipeline(namespace, rollout_timeout=1))
    cluster.make_unpullable(m.image("web", "ghost-digest"))  # a real cluster cannot pull it either

    cluster.apply(m.release(namespace, "shop-stuck", "ghost-digest"))
    body = cluster.wait_for_phase(namespace, "shop-stuck", "Failed", "Verified", timeout=30)

    status = body["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "RolloutTimeout")
    assert "Deployment" in status["message"] and "web" in status["message"]
    assert cluster.images("Deployment", namespace, "web")["web"] == m.OLD_WEB
    assert cluster.images("Deployment", namespace, "worker")["worker"] == m.OLD_WORKER
    assert cluster.list("Job", namespace) == []  # tests never ran against a half-rolled-out stage


def _admission_error(cluster: Cluster, manifest: dict[str, Any]) -> str:
    with pytest.raises(ApiError) as caught:
        cluster.apply(manifest)
    assert caught.value.status == 422
    return caught.value.message


@pytest.mark.parametrize(
    ("image", "why"),
    [
        ("registry.example.com/shop/web:latest", "mutable tag"),
        ("registry.example.com/shop/web:v1.2.3", "version tag"),
        ("registry.example.com/shop/web", "no tag, no digest"),
        ("registry.example.com/shop/web:v1@" + m.digest("x"), "tag and digest"),
        ("registry.example.com/shop/web@sha256:abc123", "short digest"),
        ("registry.example.com/shop/web@sha256:" + "A" * 64, "uppercase digest"),
        ("registry.example.com/shop/web@md5:" + "a" * 32, "not sha256"),
    ],
)
def test_images_not_pinned_by_digest_are_refused_at_admission(
    cluster: Cluster, namespace: str, image: str, why: str
) -> None:
    release = m.release(namespace, "shop-tag", "tag", artifacts={"web": image})
    message = _admission_error(cluster, release)
    assert "spec.artifacts[0].image" in message and "pinned by digest" in message, message
    assert cluster.get("Release", namespace, "shop-tag") is None


def test_release_spec_shape_is_enforced_at_admission(cluster: Cluster, namespace: str) -> None:
    bad_version = m.release(namespace, "shop-ver", "ver", version="1.2")
    assert "spec.version" in _admission_error(cluster, bad_version)

    duplicate = m.release(namespace, "shop-dup", "dup")
    duplicate["spec"]["artifacts"].append(copy.deepcopy(duplicate["spec"]["artifacts"][0]))
    assert "spec.artifacts[2]: Duplicate value" in _admission_error(cluster, duplicate)

    no_artifacts = m.release(namespace, "shop-empty", "empty")
    no_artifacts["spec"]["artifacts"] = []
    assert "spec.artifacts" in _admission_error(cluster, no_artifacts)


def test_artifacts_and_version_are_immutable(cluster: Cluster, namespace: str) -> None:
    cluster.apply(m.release(namespace, "shop-fixed", "fixed"))

    swapped = m.release(
        namespace,
        "shop-fixed",
        "fixed",
        artifacts={"web": m.image("web", "other"), "worker": m.image("worker", "fixed")},
    )
    assert "spec.artifacts is immutable" in _admission_error(cluster, swapped)
    bumped = m.release(namespace, "shop-fixed", "fixed", version="v9.9.9")
    assert "spec.version is immutable" in _admission_error(cluster, bumped)
    stored = cluster.release(namespace, "shop-fixed")
    assert stored["spec"]["version"] == "v1.0.0"
    assert stored["spec"]["artifacts"][0]["image"] == m.image("web", "fixed")


def test_pipeline_shape_is_enforced_at_admission(cluster: Cluster, namespace: str) -> None:
    both = m.pipeline(namespace, "both")
    both["spec"]["stages"][0]["targets"][0]["selector"] = {"matchLabels": {"app": "web"}}
    assert "exactly one of name" in _admission_error(cluster, both)

    production_first = m.pipeline(namespace, "prod-first")
    production_first["spec"]["stages"].reverse()
    assert "production stage must be the last" in _admission_error(cluster, production_first)

    no_stages = m.pipeline(namespace, "empty")
    no_stages["spec"]["stages"] = []
    assert "spec.stages" in _admission_error(cluster, no_stages)
