"""Ephemeral environments: names, which branches get one, when one goes, and the shell that makes
and removes them (over an in-memory API server and a scripted repository)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gantry.adapters.kube import custom_path, workload_path
from gantry.adapters.resources import Resources
from gantry.domain.inputs import ephemeral, release_sources
from gantry.domain.inputs.ephemeral import Environment, EphemeralSpec
from gantry.domain.inputs.pipeline import Pipeline, parse_pipeline
from gantry.domain.vocabulary.timefmt import to_rfc3339
from gantry.ephemeral_environments import EphemeralEnvironments
from tests.unit.world import MemoryKube

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SPEC = EphemeralSpec(branches=("*/JIRA-*",), ttl_seconds=3600)
DIGEST = "sha256:" + "a" * 64


def test_only_matching_feature_branches_get_an_environment() -> None:
    assert ephemeral.follows(SPEC, "alice/JIRA-7-login", "main")
    assert not ephemeral.follows(SPEC, "alice/SHOP-7", "main")
    assert not ephemeral.follows(EphemeralSpec(branches=("*",)), "main", "main")  # the release branch
    assert not ephemeral.follows(EphemeralSpec(branches=("*",)), "HOT-3", "main")  # a hotfix's own flow


def test_names_are_dns_labels_and_long_branches_stay_distinct() -> None:
    assert ephemeral.namespace_of(SPEC, "shop", "alice/JIRA-7_Login") == "shop-alice-jira-7-login"
    long_a = ephemeral.namespace_of(SPEC, "shop", "alice/JIRA-7-" + "x" * 80 + "a")
    long_b = ephemeral.namespace_of(SPEC, "shop", "alice/JIRA-7-" + "x" * 80 + "b")
    assert len(long_a) <= 63 and len(long_b) <= 63 and long_a != long_b
    assert ephemeral.application_of("shop", "alice/JIRA-7") == "shop-alice-jira-7"


def test_an_environment_goes_when_its_branch_is_merged_deleted_or_idle_past_its_ttl() -> None:
    env = Environment("alice/JIRA-7", "shop-alice-jira-7", "shop-alice-jira-7", "c1", "", to_rfc3339(T0))
    heads = {"alice/JIRA-7": "c1"}
    assert ephemeral.why_it_goes(env, heads, False, T0 + timedelta(minutes=59), SPEC) is None
    assert "merged" in str(ephemeral.why_it_goes(env, heads, True, T0, SPEC))
    assert "deleted" in str(ephemeral.why_it_goes(env, {}, False, T0, SPEC))
    idle = ephemeral.why_it_goes(env, heads, False, T0 + timedelta(hours=1), SPEC)
    assert idle is not None and "spec.ephemeral.ttlSeconds" in idle


class Repository:
    def __init__(self, heads: dict[str, str], merged: set[str] | None = None) -> None:
        self._heads, self.merged = heads, merged or set()

    def heads(self) -> dict[str, str]:
        return dict(self._heads)

    def is_ancestor(self, ancestor: str, rev: str) -> bool:
        return ancestor in self.merged


def pipeline() -> Pipeline:
    parsed = parse_pipeline(
        "shop",
        {
            "application": "shop",
            "stages": [
                {"name": "dev", "targets": [{"namespace": "shop-dev", "name": "web"}]},
                {
                    "name": "production",
                    "production": True,
                    "targets": [{"namespace": "shop-prod", "name": "web"}],
                },
            ],
        },
    )
    assert isinstance(parsed, Pipeline)
    return parsed


def world() -> tuple[MemoryKube, EphemeralEnvironments, release_sources.SourceSpec]:
    kube = MemoryKube()
    kube.put(
        {
            "metadata": {"name": "web", "namespace": "shop-dev"},
            "spec": {"template": {"spec": {"containers": []}}},
        },
        workload_path("Deployment", "shop-dev", "web"),
    )
    source = release_sources.parse(
        "shop",
        "team",
        {
            "application": "shop",
            "git": {"repository": "https://git.example.com/shop.git"},
            "artifacts": [{"name": "web", "repository": "reg.example.com/ci/web"}],
            "ephemeral": {"branches": ["*/JIRA-*"], "ttlSeconds": 3600},
        },
    )
    assert isinstance(source, release_sources.SourceSpec)
    return kube, EphemeralEnvironments(Resources(kube)), source  # type: ignore[arg-type]


def look(
    shell: EphemeralEnvironments, source: Any, status: dict[str, Any], repo: Repository, now: datetime
) -> dict[str, Any]:
    assert source.ephemeral is not None
    out = shell.look(source, source.ephemeral, status, repo, lambda c: {"web": DIGEST}, pipeline(), now)  # type: ignore[arg-type]
    return {"ephemeral": out}


def test_an_idle_environment_is_removed_once_and_not_made_again_until_a_new_commit() -> None:
    kube, shell, source = world()
    repo = Repository({"main": "m1", "alice/JIRA-7": "c1"})
    status = look(shell, source, {}, repo, T0)
    assert "/api/v1/namespaces/shop-alice-jira-7" in kube.objects
    assert custom_path("releases", "team", "shop-alice-jira-7-c1") in kube.objects
    kube.objects[custom_path("releases", "team", "shop-alice-jira-7-c1")]["status"] = {"phase": "Verified"}

    status = look(shell, source, status, repo, T0 + timedelta(hours=2))
    assert "/api/v1/namespaces/shop-alice-jira-7" not in kube.objects
    assert status["ephemeral"]["environments"] == []
    (removed,) = status["ephemeral"]["removed"]
    assert "ttlSeconds" in removed["why"] and removed["commit"] == "c1"
    status = look(shell, source, status, repo, T0 + timedelta(hours=3))
    assert "/api/v1/namespaces/shop-alice-jira-7" not in kube.objects  # same commit: stays gone

    repo._heads["alice/JIRA-7"] = "c2"
    look(shell, source, status, repo, T0 + timedelta(hours=4))
    assert custom_path("releases", "team", "shop-alice-jira-7-c2") in kube.objects


def test_a_new_commit_waits_for_the_environments_release_in_flight() -> None:
    kube, shell, source = world()
    repo = Repository({"main": "m1", "alice/JIRA-7": "c1"})
    status = look(shell, source, {}, repo, T0)
    kube.objects[custom_path("releases", "team", "shop-alice-jira-7-c1")]["status"] = {"phase": "Testing"}
    repo._heads["alice/JIRA-7"] = "c2"
    status = look(shell, source, status, repo, T0 + timedelta(minutes=1))
    assert custom_path("releases", "team", "shop-alice-jira-7-c2") not in kube.objects
    assert status["ephemeral"]["environments"][0]["commit"] == "c2"  # seen, waiting its turn
    kube.objects[custom_path("releases", "team", "shop-alice-jira-7-c1")]["status"] = {"phase": "Failed"}
    look(shell, source, status, repo, T0 + timedelta(minutes=2))
    assert custom_path("releases", "team", "shop-alice-jira-7-c2") in kube.objects


def test_a_namespace_that_is_not_the_sources_is_never_used_nor_deleted() -> None:
    kube, shell, source = world()
    kube.put(
        {"metadata": {"name": "shop-alice-jira-7", "labels": {}}}, "/api/v1/namespaces/shop-alice-jira-7"
    )
    repo = Repository({"main": "m1", "alice/JIRA-7": "c1"})
    status = look(shell, source, {}, repo, T0)
    assert "is not this ReleaseSource's environment" in status["ephemeral"]["message"]
    assert not any(k.startswith(custom_path("releases", "team") + "/") for k in kube.objects)
    assert workload_path("Deployment", "shop-alice-jira-7", "web") not in kube.objects
    repo._heads.pop("alice/JIRA-7")
    look(shell, source, status, repo, T0 + timedelta(minutes=1))
    assert "/api/v1/namespaces/shop-alice-jira-7" in kube.objects  # someone else's: left alone


def test_the_environments_pipeline_copies_the_stage_into_its_namespace_with_no_gates() -> None:
    stage = pipeline().stages[0]
    env = Environment("alice/JIRA-7", "shop-alice-jira-7", "shop-alice-jira-7")
    manifest = ephemeral.pipeline_manifest(stage, env, "shop-alice-jira-7", "team", {"a": "b"})
    (copied,) = manifest["spec"]["stages"]
    assert copied["targets"][0]["namespace"] == "shop-alice-jira-7" and copied["lock"] is False
    assert manifest["spec"]["application"] == "shop-alice-jira-7" and manifest["spec"]["requireTag"] is False
    assert parse_pipeline("shop-alice-jira-7", manifest["spec"]).stages[0].production is False  # type: ignore[union-attr]
