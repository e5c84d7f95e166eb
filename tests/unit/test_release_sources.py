"""Which commits become Releases (domain.inputs.release_sources)."""

from __future__ import annotations

from datetime import UTC, datetime

from gantry.domain.inputs import release_sources as rs

NOW = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
A, B, C = ("a" * 40), ("b" * 40), ("c" * 40)
DIGEST = "sha256:" + "1" * 64


def source(policy: str = "NewestOnly") -> rs.SourceSpec:
    spec = rs.parse(
        "shop",
        "team",
        {
            "application": "shop",
            "git": {"repository": "https://git.example.com/shop.git"},
            "artifacts": [{"name": "web", "repository": "reg.io/shop/web", "tag": "{shortCommit}"}],
            "policy": policy,
        },
    )
    assert isinstance(spec, rs.SourceSpec)
    return spec


def test_the_newest_commit_becomes_a_release_by_digest_and_older_ones_are_recorded_as_skipped() -> None:
    plan = rs.plan(source(), {"releasedCommit": A}, C, [B, C], {C: {"web": DIGEST}}, NOW)
    (release,) = plan.creates
    assert release["metadata"]["name"] == f"shop-{C[:12]}" and release["metadata"]["labels"] == {
        rs.LABEL_SOURCE: "shop"
    }
    assert release["spec"]["artifacts"] == [{"name": "web", "image": f"reg.io/shop/web@{DIGEST}"}]
    assert release["spec"]["source"] == {"repository": "https://git.example.com/shop.git", "revision": C}
    assert plan.status["releasedCommit"] == C and plan.status["lastRelease"] == f"shop-{C[:12]}"
    assert {"commit": B, "skipped": "a newer commit on main was released first"} in plan.status["releases"]


def test_a_commit_whose_images_are_missing_waits_and_says_which_tag() -> None:
    plan = rs.plan(source(), {"releasedCommit": A}, B, [B], {B: {"web": None}}, NOW)
    assert plan.creates == () and plan.status["releasedCommit"] == A
    assert (
        plan.status["message"] == f"commit {B[:12]} on main: waiting for CI to push reg.io/shop/web:{B[:7]}"
    )


def test_every_commit_releases_each_ready_one_oldest_first_and_gives_up_on_older_missing_ones() -> None:
    resolved = {A: {"web": None}, B: {"web": DIGEST}, C: {"web": None}}
    plan = rs.plan(source("EveryCommit"), {"releasedCommit": "0" * 40}, C, [A, B, C], resolved, NOW)
    assert [r["spec"]["source"]["revision"] for r in plan.creates] == [B]
    assert plan.status["releasedCommit"] == B  # C still waits for its images; A is given up on, on record
    assert any(r.get("commit") == A and r.get("skipped") for r in plan.status["releases"])
    assert "waiting for CI" in plan.status["message"] and C[:12] in plan.status["message"]


def test_nothing_new_is_said_and_a_look_is_due_only_after_the_interval() -> None:
    plan = rs.plan(source(), {"releasedCommit": A, "lastRelease": "shop-x"}, A, [], {}, NOW)
    assert (
        plan.creates == ()
        and plan.status["message"] == f"main at {A[:12]}: nothing new since the last Release"
    )
    assert not rs.due(source(), plan.status, NOW) and rs.due(source(), {}, NOW)


def test_a_long_source_name_still_makes_a_valid_label_value() -> None:
    spec = rs.parse(
        "s" * 200,
        "team",
        {
            "application": "shop",
            "git": {"repository": "r"},
            "artifacts": [{"name": "web", "repository": "reg.io/w"}],
        },
    )
    assert isinstance(spec, rs.SourceSpec)
    (release,) = rs.plan(spec, {}, A, [A], {A: {"web": DIGEST}}, NOW).creates
    assert len(release["metadata"]["labels"][rs.LABEL_SOURCE]) <= 63  # a real API server refuses more


def notification(*events: dict[str, object]) -> bytes:
    import json

    return json.dumps({"events": list(events)}).encode()


def pushed(repository: str, tag: str | None, action: str = "push") -> dict[str, object]:
    """One event of Distribution's notification envelope (the fields Gantry reads, and some more)."""
    target: dict[str, object] = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "repository": repository,
        "digest": DIGEST,
    }
    if tag is not None:
        target["tag"] = tag
    return {"action": action, "target": target, "request": {"host": "registry.internal:5000"}}


def test_a_registry_push_of_an_artifacts_commit_tag_makes_the_source_look_now() -> None:
    bearer = {"Authorization": "Bearer s3cret"}
    answer = rs.hook(source(), bearer, notification(pushed("shop/web", A[:7])))
    assert (answer.status, answer.look_now) == (202, True)  # by path: the registry's host name differs


def test_registry_events_that_bring_no_commits_image_are_ignored_and_bad_ones_refused() -> None:
    bearer = {"Authorization": "Bearer s3cret"}
    for events in (
        (pushed("shop/web", "latest"),),  # not a commit-hash tag
        (pushed("shop/web", None),),  # a push by digest (or a blob)
        (pushed("shop/web", A[:7], action="pull"),),
        (pushed("shop/cart", A[:7]),),  # another repository
    ):
        answer = rs.hook(source(), bearer, notification(*events))
        assert (answer.status, answer.look_now) == (202, False), events
    assert rs.hook(source(), bearer, b'{"events": {"action": "push"}}').status == 400


def test_a_request_is_authenticated_before_anything_about_the_source_is_said() -> None:
    ref = ("hooks", "token")
    body = notification()
    refused = rs.unauthenticated(ref, "s3cret", {"Authorization": "Bearer nope"}, body)
    assert refused is not None and refused.status == 401
    assert rs.unauthenticated(ref, "s3cret", {"Authorization": "Bearer s3cret"}, body) is None
    no_ref = rs.unauthenticated(None, None, {}, body)
    assert no_ref is not None and (no_ref.status, no_ref.message) == (
        403,
        "this ReleaseSource takes no webhooks: set spec.webhook.secretRef",
    )
    # The field is set; what is missing is the Secret (or its key): say that, and how to fix it.
    missing = rs.unauthenticated(ref, None, {"Authorization": "Bearer s3cret"}, body)
    assert missing is not None and missing.status == 403
    assert "names key 'token' of Secret 'hooks', which its namespace does not have" in missing.message
    assert "set spec.webhook.secretRef" not in missing.message


def test_an_artifact_repository_without_a_host_is_compared_whole() -> None:
    artifact = rs.Artifact("web", "shop/web", "{commit}")
    assert artifact.pushed_as({"repository": "shop/web", "tag": A})
    assert not artifact.pushed_as({"repository": "web", "tag": A})


def test_a_commit_with_nothing_to_release_is_skipped_not_made_a_release() -> None:
    plan = rs.plan(source(), {"releasedCommit": A}, C, [B, C], {C: {"web": DIGEST}}, NOW, {C: False})
    assert plan.creates == ()
    assert plan.status["releasedCommit"] == C  # later looks count from it: it needs nothing more
    skipped = {r["commit"]: r["skipped"] for r in plan.status["releases"]}
    assert skipped[C] == rs.NOTHING_TO_RELEASE and skipped[B].startswith("a newer commit")
    assert plan.status["message"].endswith(
        "nothing to release (no feat, fix, perf or breaking commit since "
        "the last release tag); no Release made"
    )
    every = rs.plan(
        source("EveryCommit"),
        {"releasedCommit": A},
        C,
        [B, C],
        {B: {"web": DIGEST}, C: {"web": DIGEST}},
        NOW,
        {B: True, C: False},
    )
    assert [r["metadata"]["name"] for r in every.creates] == [f"shop-{B[:12]}"]
