"""The bad-input catalogue (docs/bad-input.md): every case is refused at admission with the field
named, and nothing that is deployed changes. (Cases caught later, as a Blocked Release with a
condition, are in test_bad_input.py, test_production.py and tests/git.)"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from gantry.adapters.kube import ApiError
from tests.e2e import manifests as m
from tests.harness.cluster import Cluster

pytestmark = pytest.mark.e2e

Edit = Callable[[dict[str, Any]], None]


def artifact_image(image: str) -> Edit:
    def edit(body: dict[str, Any]) -> None:
        body["spec"]["artifacts"][0]["image"] = image

    return edit


def spec_field(path: str, value: Any) -> Edit:
    def edit(body: dict[str, Any]) -> None:
        target = body["spec"]
        *parents, last = path.split(".")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is DELETE:
            del target[int(last) if last.isdigit() else last]
        else:
            target[int(last) if last.isdigit() else last] = value

    return edit


DELETE = object()


def without(*fields: str) -> Edit:
    def edit(body: dict[str, Any]) -> None:
        for field in fields:
            body["spec"].pop(field)

    return edit


DIGEST = m.digest("x")
REPO = "registry.example.com/shop/web"

RELEASE_CASES: list[tuple[str, Edit, str]] = [
    ("mutable tag :latest", artifact_image(f"{REPO}:latest"), "spec.artifacts[0].image"),
    ("version tag instead of a digest", artifact_image(f"{REPO}:v1.2.3"), "spec.artifacts[0].image"),
    ("no tag and no digest", artifact_image(REPO), "spec.artifacts[0].image"),
    ("tag and digest together", artifact_image(f"{REPO}:v1@{DIGEST}"), "spec.artifacts[0].image"),
    ("short digest", artifact_image(f"{REPO}@sha256:abc123"), "spec.artifacts[0].image"),
    ("uppercase digest", artifact_image(f"{REPO}@sha256:{'A' * 64}"), "spec.artifacts[0].image"),
    ("digest that is not sha256", artifact_image(f"{REPO}@md5:{'a' * 32}"), "spec.artifacts[0].image"),
    ("digest with a space", artifact_image(f"{REPO} @{DIGEST}"), "spec.artifacts[0].image"),
    ("version not semver", spec_field("version", "1.2"), "spec.version"),
    ("version with a pre-release", spec_field("version", "v1.2.3-rc.1"), "spec.version"),
    ("version without the v", spec_field("version", "1.2.3"), "spec.version"),
    (
        "duplicate container names",
        lambda b: b["spec"]["artifacts"].append(copy.deepcopy(b["spec"]["artifacts"][0])),
        "spec.artifacts[2]",
    ),
    ("no artifacts", spec_field("artifacts", []), "spec.artifacts"),
    ("no application", spec_field("application", DELETE), "spec.application"),
    ("application not a DNS label", spec_field("application", "Shop_App"), "spec.application"),
    ("container name not a DNS label", spec_field("artifacts.0.name", "Web"), "spec.artifacts[0].name"),
    ("source without a revision", spec_field("source.revision", DELETE), "spec.source.revision"),
    (
        "neither version nor source",
        without("version", "source"),
        "spec.version or spec.source is required",
    ),
    ("hotfix not a boolean", spec_field("hotfix", "yes"), "spec.hotfix"),
]


def stage(index: int, field: str, value: Any) -> Edit:
    return spec_field(f"stages.{index}.{field}", value)


def analysis(field: str, value: Any) -> Edit:
    def edit(body: dict[str, Any]) -> None:
        body["spec"]["stages"][1].setdefault("analysis", {})[field] = value

    return edit


GIT = {"repository": "https://git.example.com/deploy.git", "branch": "main", "path": "staging"}

PIPELINE_CASES: list[tuple[str, Edit, str]] = [
    ("empty stage list", spec_field("stages", []), "spec.stages"),
    (
        "git path climbing out",
        stage(0, "git", {**GIT, "path": "../secrets"}),
        "git.path must be a relative path",
    ),
    ("git path absolute", stage(0, "git", {**GIT, "path": "/etc"}), "git.path must be a relative path"),
    ("unknown git format", stage(0, "git", {**GIT, "format": "Jsonnet"}), "spec.stages[0].git.format"),
    ("unknown git rollback", stage(0, "git", {**GIT, "rollback": "Never"}), "spec.stages[0].git.rollback"),
    (
        "git target without a branch",
        stage(0, "git", {"repository": "r", "path": "p"}),
        "spec.stages[0].git.branch",
    ),
    (
        "unknown sync kind",
        stage(0, "git", {**GIT, "sync": {"kind": "Fleet", "name": "x"}}),
        "spec.stages[0].git.sync.kind",
    ),
    ("cluster without a Secret", stage(0, "cluster", {}), "spec.stages[0].cluster.kubeconfigSecretRef"),
    (
        "target with both name and selector",
        stage(0, "targets.0.selector", {"matchLabels": {"app": "web"}}),
        "exactly one of name",
    ),
    ("target with neither name nor selector", stage(0, "targets.0.name", DELETE), "exactly one of name"),
    (
        "production stage not last",
        lambda b: b["spec"]["stages"].reverse(),
        "production stage must be the last",
    ),
    ("two production stages", stage(0, "production", True), "at most one stage may set production"),
    ("duplicate stage names", stage(1, "name", "staging"), "spec.stages[1]"),
    ("unknown workload kind", stage(0, "targets.0.kind", "DaemonSet"), "spec.stages[0].targets[0].kind"),
    ("zero rollout timeout", stage(0, "rolloutTimeoutSeconds", 0), "spec.stages[0].rolloutTimeoutSeconds"),
    ("negative error-rate threshold", analysis("threshold", -0.1), "spec.stages[1].analysis.threshold"),
    ("error-rate threshold above 1", analysis("threshold", 5), "spec.stages[1].analysis.threshold"),
    (
        "negative minimum request rate",
        analysis("minRequestRate", -1),
        "spec.stages[1].analysis.minRequestRate",
    ),
    ("rate window not a duration", analysis("window", "5 minutes"), "spec.stages[1].analysis.window"),
    ("rate window of zero", analysis("window", "0s"), "analysis.window must be longer than 0"),
    ("error-rate threshold of 1", analysis("threshold", 1), "analysis.threshold is an error ratio above 0"),
    ("error-rate threshold of 0", analysis("threshold", 0), "analysis.threshold is an error ratio above 0"),
    ("application not a DNS label", spec_field("application", "Shop_App"), "spec.application must be a DNS"),
    (
        "bake shorter than one evaluation",
        lambda b: (analysis("bakeSeconds", 10)(b), analysis("intervalSeconds", 60)(b)),
        "bakeSeconds must be at least",
    ),
    ("unknown breach policy", analysis("onBreach", "Ignore"), "spec.stages[1].analysis.onBreach"),
    ("unknown promotion", stage(1, "promotion", "Sometimes"), "spec.stages[1].promotion"),
    (
        "soak on production",
        stage(1, "soakSeconds", 60),
        "stages[].soakSeconds is for stages before production",
    ),
    (
        "guard before production",
        stage(0, "guard", {"intervalSeconds": 30}),
        "stages[].guard watches production after its release",
    ),
    (
        "guard threshold of 1",
        stage(1, "guard", {"threshold": 1}),
        "guard.threshold is an error ratio above 0",
    ),
    ("tag after no such stage", spec_field("tagAfter", "qa"), "spec.tagAfter must name a stage before"),
    ("tag after production", spec_field("tagAfter", "production"), "spec.tagAfter must name a stage before"),
    (
        "test without a Job template",
        stage(0, "test", {"timeoutSeconds": 5}),
        "spec.stages[0].test.jobTemplate",
    ),
    (
        "registry repository with a tag",
        stage(1, "registry", {"repository": "registry.example.com/prod/web:v1"}),
        "registry.repository must be HOST",
    ),
    (
        "registry repository in upper case",
        stage(1, "registry", {"repository": "registry.example.com/Prod/{name}"}),
        "registry.repository must be HOST",
    ),
    ("registry retry timeout of zero", stage(1, "registry", {"timeoutSeconds": 0}), "timeoutSeconds"),
    (
        "unknown registry TLS mode",
        spec_field("registry", {"hosts": [{"host": "registry.local:5000", "tls": "Off"}]}),
        "spec.registry.hosts[0].tls",
    ),
    (
        "approval policy on a stage that promotes on its own",
        stage(0, "approval", {"approvals": 2}),
        "stages[].approval: only a stage with promotion Manual",
    ),
    ("approval policy of no approvals", stage(1, "approval", {"approvals": 0}), "approval.approvals"),
]

DECISION_CASES: list[tuple[str, Edit, str]] = [
    ("unknown decision", spec_field("action", "Retry"), "spec.action"),
    ("decision without a reason", spec_field("reason", ""), "spec.reason"),
    ("digest on an Approve", spec_field("digest", DIGEST), "spec.digest only applies"),
    ("more than 32 groups claimed", spec_field("groups", [f"g{i}" for i in range(33)]), "spec.groups"),
]

WINDOW = {"name": "weekend", "start": "2026-01-02T18:00", "rrule": "FREQ=WEEKLY;BYDAY=FR", "duration": "60h"}

LOCK_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("freeze window every minute", {**WINDOW, "rrule": "FREQ=MINUTELY"}, "spec.freezeWindows[0].rrule"),
    (
        "freeze window start with an offset",
        {**WINDOW, "start": "2026-01-02T18:00+01:00"},
        "freezeWindows[0].start",
    ),
    ("freeze window of no length", {**WINDOW, "duration": ""}, "freezeWindows[].duration: give a length"),
    ("freeze window duration in weeks", {**WINDOW, "duration": "1w"}, "freezeWindows[0].duration"),
]


def refused(cluster: Cluster, body: dict[str, Any]) -> str:
    with pytest.raises(ApiError) as caught:
        cluster.apply(body)
    assert caught.value.status == 422
    return caught.value.message


@pytest.fixture
def deployed(cluster: Cluster, namespace: str) -> dict[str, Any]:
    for workload in m.workloads(namespace):
        cluster.apply(workload)
    return cluster.must_get("Deployment", namespace, "web")


def unchanged(cluster: Cluster, namespace: str, before: dict[str, Any]) -> bool:
    after = cluster.must_get("Deployment", namespace, "web")
    return (
        after["spec"] == before["spec"]
        and after["metadata"]["generation"] == before["metadata"]["generation"]
    )


@pytest.mark.parametrize(("case", "edit", "names"), RELEASE_CASES, ids=[c[0] for c in RELEASE_CASES])
def test_bad_releases_are_refused(
    cluster: Cluster, namespace: str, deployed: dict[str, Any], case: str, edit: Edit, names: str
) -> None:
    body = m.release(namespace, "bad", "bad")
    edit(body)
    assert names in refused(cluster, body)
    assert cluster.get("Release", namespace, "bad") is None
    assert unchanged(cluster, namespace, deployed)


@pytest.mark.parametrize(("case", "edit", "names"), PIPELINE_CASES, ids=[c[0] for c in PIPELINE_CASES])
def test_bad_pipelines_are_refused(
    cluster: Cluster, namespace: str, deployed: dict[str, Any], case: str, edit: Edit, names: str
) -> None:
    body = m.production_pipeline(namespace, "prod", "http://127.0.0.1:9")
    body["spec"]["stages"][0]["test"] = {"jobTemplate": m.test_job_template(), "timeoutSeconds": 30}
    edit(body)
    assert names in refused(cluster, body)
    assert unchanged(cluster, namespace, deployed)


@pytest.mark.parametrize(("case", "edit", "names"), DECISION_CASES, ids=[c[0] for c in DECISION_CASES])
def test_bad_decisions_are_refused(
    cluster: Cluster, namespace: str, case: str, edit: Edit, names: str
) -> None:
    body = m.decision(namespace, "shop-v1", "Approve")
    edit(body)
    assert names in refused(cluster, body)


@pytest.mark.parametrize(("case", "window", "names"), LOCK_CASES, ids=[c[0] for c in LOCK_CASES])
def test_bad_freeze_windows_are_refused(
    cluster: Cluster, namespace: str, case: str, window: dict[str, Any], names: str
) -> None:
    body = m.environment_lock(namespace, 300, name="production")
    body["spec"]["freezeWindows"] = [window]
    assert names in refused(cluster, body)
    assert cluster.get("EnvironmentLock", namespace, "production") is None


def test_two_freeze_windows_of_one_name_are_refused(cluster: Cluster, namespace: str) -> None:
    body = m.environment_lock(namespace, 300, name="production")
    body["spec"]["freezeWindows"] = [WINDOW, {**WINDOW, "rrule": "FREQ=DAILY"}]
    assert "each window needs its own name" in refused(cluster, body)


def test_the_catalogue_has_at_least_thirty_cases() -> None:
    assert len(RELEASE_CASES) + len(PIPELINE_CASES) + len(DECISION_CASES) >= 30
