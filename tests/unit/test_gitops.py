"""Where a stage deploys, as plain data: the git target's spec, its commits' words, and what a
GitOps tool says it applied."""

from __future__ import annotations

from typing import Any

import pytest

from gantry.adapters.gitops_tools import read_sync
from gantry.domain.flow import gitops
from gantry.domain.inputs.git_target import GitSync
from gantry.domain.inputs.pipeline import Pipeline, parse_pipeline
from gantry.domain.vocabulary.problems import Problem


def stages(**git: Any) -> list[dict[str, Any]]:
    target = {"namespace": "shop", "name": "web"}
    return [
        {
            "name": "staging",
            "targets": [target],
            "git": {"repository": "r", "branch": "main", "path": "shop"},
        },
        {"name": "production", "production": True, "targets": [target], "git": git},
    ]


def test_a_production_branch_is_resolved_from_the_stage_it_promotes_and_pinned_whole() -> None:
    pipeline = parse_pipeline(
        "shop", {"stages": stages(repository="r", branch="production", path="shop", promoteFrom="staging")}
    )
    assert isinstance(pipeline, Pipeline)
    production = pipeline.stages[1]
    assert production.git is not None and production.git.source is not None
    assert production.git.source.branch == "main"
    # A Release pins the stage as data; read back, the source is still there.
    again = type(production).from_spec(1, "production", production.to_spec())
    assert again.git == production.git


@pytest.mark.parametrize(
    ("git", "field", "said"),
    [
        (
            {"repository": "r", "branch": "production", "path": "shop", "promoteFrom": "nope"},
            "git.promoteFrom",
            "no earlier stage",
        ),
        (
            {"repository": "r", "branch": "production", "path": "other", "promoteFrom": "staging"},
            "git.promoteFrom",
            "same path",
        ),
        (
            {"repository": "r", "branch": "main", "path": "shop", "promoteFrom": "staging"},
            "git.promoteFrom",
            "another branch",
        ),
        ({"repository": "r", "branch": "main", "path": "../up"}, "git.path", "relative path"),
        ({"repository": "r", "branch": "main", "path": "p", "format": "Jsonnet"}, "git.format", "Kustomize"),
        (
            {"repository": "r", "branch": "main", "path": "p", "sync": {"kind": "Fleet", "name": "x"}},
            "git.sync",
            "Argo CD",
        ),
    ],
)
def test_a_wrong_git_target_names_its_field_and_the_fix(git: dict[str, Any], field: str, said: str) -> None:
    problem = parse_pipeline("shop", {"stages": stages(**git)})
    assert isinstance(problem, Problem)
    assert problem.field == f"spec.stages[1].{field}"
    assert said in problem.describe()


def test_a_commit_says_what_who_and_why_with_trailers() -> None:
    commit = gitops.Commit("team/shop-v2", "shop", "v1.2.0", "staging", "bob", "test failed")
    deploy = commit.message([("web", "reg/web@sha256:1")], restore=False)
    assert deploy.splitlines()[0] == "deploy(staging): shop v1.2.0"
    assert "Decided by: bob" in deploy and "web: reg/web@sha256:1" in deploy
    assert deploy.rstrip().splitlines()[-2:] == ["Gantry-Release: team/shop-v2", "Gantry-Stage: staging"]
    revert = commit.message([("web", "reg/web@sha256:0")], restore=True)
    assert revert.splitlines()[0] == "revert(staging): shop v1.2.0 rolled back"
    assert "Why: test failed" in revert
    assert gitops.proposal_branch("team/shop-v2", "staging") == "gantry/team-shop-v2-staging"
    assert gitops.tag_name("shop", "v1.2.0") == "shop/v1.2.0"


class FakeKube:
    def __init__(self, body: dict[str, Any] | None) -> None:
        self.body = body

    def get(self, path: str) -> dict[str, Any] | None:
        return self.body


def test_argo_cd_and_flux_say_what_they_applied_in_one_shape() -> None:
    argo = {"status": {"sync": {"status": "Synced", "revision": "abc"}, "health": {"status": "Healthy"}}}
    assert read_sync(FakeKube(argo), GitSync("Application", "argocd", "shop")) == (
        "abc",
        "sync Synced, health Healthy",
    )  # type: ignore[arg-type]
    ready = {"type": "Ready", "status": "True", "message": "Applied revision: main@sha1:def"}
    flux = {"status": {"lastAppliedRevision": "main@sha1:def", "conditions": [ready]}}
    revision, said = read_sync(FakeKube(flux), GitSync("Kustomization", "flux-system", "shop"))  # type: ignore[arg-type]
    assert revision == "def" and said.startswith("Ready True")
    old_flux = {"status": {"lastAppliedRevision": "main/0123"}}
    assert read_sync(FakeKube(old_flux), GitSync("Kustomization", "flux-system", "shop"))[0] == "0123"  # type: ignore[arg-type]
    assert (
        read_sync(FakeKube(None), GitSync("Application", "argocd", "gone"))[1]
        == "Application argocd/gone does not exist"
    )  # type: ignore[arg-type]
