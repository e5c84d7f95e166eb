"""Which containers a stage re-pins, and the test Job Gantry creates."""

from __future__ import annotations

import pytest

from gantry.domain.inputs import testjob
from gantry.domain.inputs.pipeline import Stage, Target
from gantry.domain.inputs.workloads import ImageChange, ObservedWorkload, Rollout, WorkloadRef, plan_changes
from gantry.domain.vocabulary.problems import Problem

WEB_V1 = "reg.io/shop/web@sha256:" + "1" * 64
WEB_V2 = "reg.io/shop/web@sha256:" + "2" * 64
SIDE = "reg.io/mesh/proxy@sha256:" + "3" * 64


def workload(name: str, **containers: str) -> ObservedWorkload:
    return ObservedWorkload(WorkloadRef("Deployment", "shop", name), containers, Rollout(True, ""))


def stage(*targets: Target) -> Stage:
    return Stage(index=0, name="staging", environment="staging", targets=targets, lock=True)


def test_only_containers_named_like_artifacts_change_by_default() -> None:
    changes = plan_changes(
        "shop",
        stage(Target(0, "shop", name="web")),
        {"web": WEB_V2},
        {0: (workload("web", web=WEB_V1, proxy=SIDE),)},
    )
    assert changes == (ImageChange(WorkloadRef("Deployment", "shop", "web"), "web", WEB_V1, WEB_V2),)


def test_a_selector_target_covers_every_matching_workload() -> None:
    found = {0: (workload("web-eu", web=WEB_V1), workload("web-us", web=WEB_V1))}
    changes = plan_changes(
        "shop", stage(Target(0, "shop", match_labels={"app": "web"})), {"web": WEB_V2}, found
    )
    assert isinstance(changes, tuple)
    assert [c.workload.name for c in changes] == ["web-eu", "web-us"]


@pytest.mark.parametrize(
    ("target", "artifacts", "found", "reason", "field"),
    [
        (Target(0, "shop", name="web"), {"web": WEB_V2}, {}, "WorkloadNotFound", "targets[0].name"),
        (
            Target(0, "shop", match_labels={"app": "x"}),
            {"web": WEB_V2},
            {},
            "WorkloadNotFound",
            "targets[0].selector",
        ),
        (
            Target(0, "shop", name="web", containers=("api",)),
            {"web": WEB_V2},
            {0: (workload("web", web=WEB_V1),)},
            "ContainerNotFound",
            "targets[0].containers[0]",
        ),
        (
            Target(0, "shop", name="web", containers=("web", "proxy")),
            {"web": WEB_V2},
            {0: (workload("web", web=WEB_V1, proxy=SIDE),)},
            "ArtifactMissing",
            "spec.artifacts",
        ),
        (
            Target(0, "shop", name="web"),
            {"api": WEB_V2},
            {0: (workload("web", web=WEB_V1),)},
            "ContainerNotFound",
            "targets[0].containers",
        ),
        (
            Target(0, "shop", name="web"),
            {"web": WEB_V2, "cron": WEB_V2},
            {0: (workload("web", web=WEB_V1),)},
            "ArtifactUnmatched",
            "spec.artifacts[1].name",
        ),
        (
            Target(0, "shop", name="web"),
            {"web": "reg.io/shop/web:latest"},
            {0: (workload("web", web=WEB_V1),)},
            "ImageNotPinned",
            "spec.artifacts[name=web].image",
        ),
    ],
)
def test_problems(
    target: Target,
    artifacts: dict[str, str],
    found: dict[int, tuple[ObservedWorkload, ...]],
    reason: str,
    field: str,
) -> None:
    problem = plan_changes("shop", stage(target), artifacts, found)
    assert isinstance(problem, Problem)
    assert problem.reason == reason
    assert field in problem.field


def test_job_names_are_deterministic_unique_per_release_and_short() -> None:
    name = testjob.job_name("shop-" + "x" * 80, "staging", "uid-1")
    assert name == testjob.job_name("shop-" + "x" * 80, "staging", "uid-1")
    assert name != testjob.job_name("shop-" + "x" * 80, "staging", "uid-2")
    assert len(name) <= 63


def test_job_manifest_carries_labels_env_and_safe_defaults() -> None:
    template = {
        "metadata": {"labels": {"team": "qa"}},
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "t", "image": "busybox", "env": [{"name": "A", "value": "1"}]}]
                }
            }
        },
    }
    job = testjob.build_job(
        template,
        name="j",
        namespace="shop",
        release="r",
        release_uid="u",
        application="shop",
        version="v1.2.3",
        stage="staging",
        timeout_seconds=120,
    )
    assert job["metadata"]["labels"]["team"] == "qa"
    assert job["metadata"]["labels"][testjob.LABEL_RELEASE] == "r"
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env == {
        "A": "1",
        "GANTRY_RELEASE": "r",
        "GANTRY_APPLICATION": "shop",
        "GANTRY_VERSION": "v1.2.3",
        "GANTRY_STAGE": "staging",
    }
    assert (
        "env" not in template["spec"]["template"]["spec"]["containers"][0]
        or len(template["spec"]["template"]["spec"]["containers"][0]["env"]) == 1
    )  # the template is not mutated


def test_a_test_job_stops_itself_is_cleaned_up_is_owned_and_has_valid_labels() -> None:
    long_name = "shop-" + "x" * 240  # a Release name may have 253 characters, a label value 63
    owner = {
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": long_name, "namespace": "shop", "uid": "u-1"},
    }
    template = {"spec": {"template": {"spec": {"containers": [{"name": "t", "image": "busybox"}]}}}}
    job = testjob.build_job(
        template,
        name="j",
        namespace="shop",
        release=long_name,
        release_uid="u-1",
        application="shop",
        version="v1",
        stage="staging",
        timeout_seconds=120,
        owner=owner,
    )
    labels = job["metadata"]["labels"]
    assert all(len(value) <= 63 for value in labels.values())
    assert labels[testjob.LABEL_RELEASE] != testjob.label_value(long_name[:-1])  # still tells them apart
    assert job["spec"]["activeDeadlineSeconds"] == 120
    assert job["spec"]["ttlSecondsAfterFinished"] == testjob.FINISHED_JOB_TTL_SECONDS
    assert job["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    elsewhere = testjob.build_job(
        template,
        name="j",
        namespace="qa",
        release="r",
        release_uid="u-1",
        application="shop",
        version="v1",
        stage="staging",
        timeout_seconds=120,
        owner=owner,
    )
    assert "ownerReferences" not in elsewhere["metadata"]  # owners never cross namespaces


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"template": {"spec": {"containers": []}}},
        {"template": {"spec": {"containers": [{"name": "t"}]}}},
        {"template": {"spec": {"restartPolicy": "Always", "containers": [{"name": "t", "image": "i"}]}}},
    ],
)
def test_bad_templates_are_problems(spec: dict[str, object]) -> None:
    assert isinstance(testjob.check_template({"spec": spec}, "tpl"), Problem)
