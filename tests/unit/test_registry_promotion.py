"""Registry promotion in the stage machine: tag on the digest, copy by digest, deploy the copy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gantry.adapters.registry import parse_dockerconfigjson, parse_repository
from gantry.domain.flow import registry
from gantry.domain.flow.model import (
    EffectFailure,
    Failure,
    PromoteArtifacts,
    ReleaseView,
    StageRun,
)
from gantry.domain.flow.release import decide
from gantry.domain.inputs.pipeline import Pipeline, parse_pipeline
from gantry.domain.inputs.workloads import WorkloadRef
from gantry.domain.vocabulary.timefmt import to_rfc3339
from tests.unit import world

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
DIGEST = "sha256:" + "2" * 64
OTHER = "sha256:" + "9" * 64
DEV = f"reg.io/dev/web@{DIGEST}"
PROD_REF = f"reg.io/prod/web@{DIGEST}"
STAGING = WorkloadRef("Deployment", "shop-staging", "web")
PROD = WorkloadRef("Deployment", "shop-prod", "web")


def pipeline(production_registry: dict[str, Any] | None = None) -> Pipeline:
    parsed = parse_pipeline(
        "shop",
        {
            "application": "shop",
            "requireTag": False,  # these Releases carry no git source
            "stages": [
                {
                    "name": "staging",
                    "lock": True,
                    "registry": {},
                    "targets": [{"namespace": "shop-staging", "name": "web"}],
                },
                {
                    "name": "production",
                    "production": True,
                    "promotion": "Auto",
                    "registry": production_registry
                    if production_registry is not None
                    else {"repository": "reg.io/prod/{name}", "timeoutSeconds": 30},
                    "targets": [{"namespace": "shop-prod", "name": "web"}],
                },
            ],
        },
    )
    assert isinstance(parsed, Pipeline)
    return parsed


class World(world.World):
    """Staging and production Deployments and an in-memory registry; `failure` makes the registry
    misbehave, `error` fails the next effect the way an executor reports it."""

    def __init__(self, pipe: Pipeline) -> None:
        super().__init__(
            pipe,
            {STAGING: "reg.io/dev/web@sha256:" + "0" * 64, PROD: "reg.io/prod/web@sha256:" + "1" * 64},
        )
        self.error: EffectFailure | None = None

    @property
    def failure(self) -> tuple[str, str] | None:
        return self.registry.failure

    @failure.setter
    def failure(self, failure: tuple[str, str] | None) -> None:
        self.registry.failure = failure


def run(world: World, status: dict[str, Any], ticks: int = 20, until: tuple[str, ...] = ()) -> dict[str, Any]:
    for _ in range(ticks):
        world.now += timedelta(seconds=1)
        release = ReleaseView("team", "shop-v2", "uid-v2", 1, "shop", "shop", "v2.0.0", {"web": DEV}, status)
        error, world.error = world.error, None
        plan = decide(release, world.observe(release, error))
        world.error = world.apply(release, plan)
        status = plan.status
        if status["phase"] in (*until, "Released", "Failed"):
            break
    return status


def test_staging_tags_in_place_and_production_deploys_the_copy_by_the_same_digest() -> None:
    world = World(pipeline())
    status = run(world, {})
    assert status["phase"] == "Released", status["message"]
    assert world.tags == {"reg.io/dev/web:v2.0.0": DIGEST, "reg.io/prod/web:v2.0.0": DIGEST}
    assert world.images[STAGING] == DEV  # staging: tagged in place, deployed as built
    assert world.images[PROD] == PROD_REF  # production: the copy, same digest
    staging, production = status["stages"]
    assert staging["registry"]["images"] == {"web": DEV}
    assert production["registry"]["images"] == {"web": PROD_REF}
    assert production["provenance"]["stage"] == "staging"


def test_promotion_happens_before_the_lock_is_requested() -> None:
    world = World(pipeline())
    status = run(world, {}, ticks=1)
    assert (status["phase"], status["stages"][0]["step"]) == ("Promoting", "Promoting")
    assert world.lock.holder is None and not world.lock.queue


def test_a_tag_on_another_digest_fails_the_release_without_deploying_or_moving_the_tag() -> None:
    world = World(pipeline())
    world.tags["reg.io/dev/web:v2.0.0"] = OTHER
    status = run(world, {})
    assert (status["phase"], status["reason"]) == ("Failed", "RegistryTagCollision")
    assert "never overwritten" in status["message"] and OTHER in status["message"]
    assert world.tags["reg.io/dev/web:v2.0.0"] == OTHER and world.promotions == []
    assert world.images[STAGING].endswith("0" * 64)
    assert world.lock.holder is None


def test_a_collision_found_while_copying_fails_the_same_way() -> None:
    world = World(pipeline())
    status = run(world, {}, ticks=1)
    world.error = EffectFailure(
        PromoteArtifacts, Failure.CONFLICT, "reg.io/dev/web:v2.0.0 already points at x"
    )
    world.tags["reg.io/dev/web:v2.0.0"] = OTHER
    status = run(world, status)
    assert status["reason"] == "RegistryTagCollision"


def test_bad_credentials_block_with_the_field_and_fix_then_go_on_once_fixed() -> None:
    world = World(pipeline())
    world.failure = ("auth", "registry reg.io refused access to dev/web (401)")
    status = run(world, {}, ticks=4)
    assert (status["phase"], status["reason"]) == ("Blocked", "RegistryAuthFailed")
    assert (
        "spec.registry.credentialsSecretRef" in status["message"] and "dockerconfigjson" in status["message"]
    )
    blocked_history = len(status["history"])
    status = run(world, status, ticks=3)
    assert len(status["history"]) == blocked_history  # no flapping while still blocked
    world.failure = None
    status = run(world, status)
    assert status["phase"] == "Released"


def test_an_unreachable_registry_is_retried_with_backoff_then_fails_clearly() -> None:
    world = World(pipeline())
    world.failure = ("unavailable", "registry reg.io unreachable: connection refused")
    status = run(world, {}, ticks=2)
    first = status["stages"][0]["registry"]
    assert first["attempts"] == 1 and status["reason"] == "RegistryUnavailable"
    status = run(world, status, ticks=1)
    assert status["stages"][0]["registry"]["attempts"] == 1  # backing off: not looked at yet
    status = run(world, status, ticks=700)
    assert (status["phase"], status["reason"]) == ("Failed", "RegistryUnavailable")
    assert "gave up after 600s" in status["message"] and "nothing was deployed" in status["message"]
    assert world.images[STAGING].endswith("0" * 64)


def test_a_registry_that_comes_back_lets_the_release_go_on() -> None:
    world = World(pipeline())
    world.failure = ("unavailable", "registry reg.io answered 503")
    status = run(world, {}, ticks=5)
    world.failure = None
    status = run(world, status, ticks=120)
    assert status["phase"] == "Released" and world.images[PROD] == PROD_REF


def test_a_rerun_after_a_crash_half_way_asks_only_for_what_is_missing() -> None:
    world = World(pipeline())
    world.tags["reg.io/dev/web:v2.0.0"] = DIGEST  # the source tag was made before the crash
    run(world, {})
    asked = [op.key for p in world.promotions for op in p.tags]
    assert "reg.io/dev/web:v2.0.0" not in asked and "reg.io/prod/web:v2.0.0" in asked


def test_plan_tags_copies_only_to_a_different_repository() -> None:
    ops = registry.plan_tags(
        {"web": DEV, "api": f"reg.io/dev/api@{OTHER}"}, "v1.2.3+build.7", "reg.io/prod/{name}"
    )
    assert [(op.artifact, op.key) for op in ops] == [
        ("web", "reg.io/dev/web:v1.2.3_build.7"),
        ("web", "reg.io/prod/web:v1.2.3_build.7"),
        ("api", "reg.io/dev/api:v1.2.3_build.7"),
        ("api", "reg.io/prod/api:v1.2.3_build.7"),
    ]
    assert registry.promoted(ops) == {"web": PROD_REF, "api": f"reg.io/prod/api@{OTHER}"}
    assert len(registry.plan_tags({"web": DEV}, "v1", "reg.io/dev/{name}")) == 1


def test_the_tags_observed_and_decided_on_use_the_settled_version_even_after_a_spec_edit() -> None:
    run = StageRun.from_status(
        {
            "index": 1,
            "name": "production",
            "environment": "production",
            "step": "Promoting",
            "startedAt": to_rfc3339(T0),
            "spec": {"registry": {"repository": "reg.io/prod/{name}"}},
        }
    )
    edited = ReleaseView.from_body(
        {
            "metadata": {"namespace": "shop", "name": "shop-v2", "uid": "uid-v2"},
            "spec": {"pipeline": "shop", "version": "v2.1.0", "artifacts": [{"name": "web", "image": DEV}]},
            "status": {"version": "v2.0.0"},
        }
    )
    keys = [op.key for op in registry.wanted_tags(edited, run)]
    assert keys == ["reg.io/dev/web:v2.0.0", "reg.io/prod/web:v2.0.0"]
    assert registry.wanted_tags(edited, run, "v2.0.0") == registry.wanted_tags(edited, run)


@given(
    st.from_regex(
        r"v[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(-[0-9A-Za-z.-]{1,20})?(\+[0-9A-Za-z.-]{1,20})?", fullmatch=True
    )
)
def test_every_semver_becomes_a_valid_image_tag(version: str) -> None:
    tag = registry.version_tag(version)
    assert len(tag) <= 128 and tag[0] not in ".-"
    assert all(c.isalnum() or c in "_.-" for c in tag)


@pytest.mark.parametrize(
    ("name", "host", "path"),
    [
        ("reg.io/prod/web", "reg.io", "prod/web"),
        ("127.0.0.1:5000/dev/web", "127.0.0.1:5000", "dev/web"),
        ("localhost/web", "localhost", "web"),
        ("nginx", "docker.io", "library/nginx"),
        ("team/web", "docker.io", "team/web"),
    ],
)
def test_repositories_split_like_docker_does(name: str, host: str, path: str) -> None:
    repo = parse_repository(name)
    assert (repo.host, repo.path) == (host, path)


def test_dockerconfigjson_credentials_in_both_spellings() -> None:
    raw = (
        '{"auths": {"https://index.docker.io/v1/": {"auth": "dXNlcjpwYTpzcw=="},'
        ' "reg.io:5000": {"username": "ci", "password": "s3cret"}, "empty.io": {}}}'
    )
    assert parse_dockerconfigjson(raw) == {"docker.io": ("user", "pa:ss"), "reg.io:5000": ("ci", "s3cret")}
