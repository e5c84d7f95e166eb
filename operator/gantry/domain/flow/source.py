"""The Release's git source: its version is settled before anything deploys; its tag is pushed
only once the tagging stage (the Pipeline's spec.tagAfter; the first, e.g. dev) has passed its tests.

The seed: CI deploys to dev, runs the integration tests, and "ON FAIL alert and halt"; only then
is the commit tagged. So a version that fails dev leaves no tag behind, and only commits merged
into the release branch (main, or a HOT-<n> branch for a hotfix) are ever tagged.
"""

from __future__ import annotations

from gantry.domain.flow.draft import Draft
from gantry.domain.flow.model import CreateTag, Failure, Source
from gantry.domain.vocabulary.problems import Problem
from gantry.domain.vocabulary.reasons import Reason


def version_settled(d: Draft) -> bool:
    """Before anything is deployed: the version tag exists on the Release's revision (or is made so)."""
    source = d.obs.source
    if d.release.ephemeral_branch:  # a feature branch, to its own environment: no version, no tag
        d.version = d.version or f"{d.release.ephemeral_branch}@{(d.release.revision or '')[:12]}"
        return True
    if d.release.repository is not None and source is None and not (d.version or d.release.version):
        d.block(
            Problem(
                Reason.GIT_CACHE_OFF,
                "spec.version",
                "the version is computed from spec.source's commits, but this operator has no git cache "
                "to read them (GANTRY_GIT_CACHE)",
                "run the operator with a git cache (the chart's operator.gitCache), or give spec.version",
            )
        )
        return False
    if d.version or d.release.repository is None or source is None:
        d.version = d.version or d.release.version  # as given: no git source to check it against
        return True
    if source.waiting_for is not None:
        message = (
            f"waiting for {source.waiting_for}, a Release of an older commit, to settle its version: "
            "versions are given in commit order, so no two Releases carry the same one"
        )
        d.wait(Reason.WAITING_FOR_OLDER, message)
        return False
    problem = source_problem(d, source)
    if problem is not None:
        d.block(problem)
        return False
    wanted = d.release.version or source.tag
    assert wanted is not None and source.revision is not None
    # The tag is pushed when the tagging stage passes (push_tag), unless it is there already.
    d.tag = {"name": wanted, "revision": source.revision, "pushed": source.tag_commit is not None}
    if d.release.hotfix and source.hotfix_branch:
        d.tag["branch"] = source.hotfix_branch  # where it was made: the way back to main names it
    d.version, d.changelog = wanted, source.changelog
    return True


RELEASE_BRANCHES = ("main", "master")  # the seeds' "master is always deployable", and today's default


def tagging_stage(d: Draft) -> int:
    """The stage whose pass earns the tag: the Pipeline's spec.tagAfter (as pinned), else the
    first (dev in the seed's flow)."""
    return 0 if isinstance(d.pipeline, Problem) else d.pipeline.tag_stage


def tag_due(d: Draft, index: int) -> bool:
    return bool(d.tag) and not (d.tag or {}).get("pushed") and index == tagging_stage(d)


def push_tag(d: Draft) -> bool:
    """The tagging stage passed: push the version tag (annotated, never moved). False, and
    Blocked, when origin refused it; the next look tries again."""
    refusal = d.rejected(CreateTag)
    if refusal is not None:
        taken = refusal.failure == Failure.CONFLICT
        d.block(
            Problem(
                Reason.TAG_MISMATCH if taken else Reason.TAG_PUSH_REJECTED,
                "spec.version" if taken else "spec.source.repository",
                f"stage passed, but pushing the tag {(d.tag or {}).get('name')} failed: {refusal.message}",
                "the version went to another commit: release this commit again as a new Release (it gets "
                "the next free version)"
                if taken
                else "check the credentials Secret and that origin accepts tags; Gantry tries again at "
                "each look",
            )
        )
        return False
    tag = dict(d.tag or {})
    d.effects.append(CreateTag(str(tag["name"]), str(tag["revision"]), f"{tag['name']} ({d.release.key})"))
    d.tag = {**tag, "pushed": True}  # recorded only if the push went through (else this plan is dropped)
    return True


def untagged_problem(d: Draft) -> Problem | None:
    """A stage after the tagging point needs the tag (only tagged versions go further)."""
    tagging = tagging_stage(d)
    if d.tag and not d.tag.get("pushed") and d.stage_index > tagging:
        pipeline = d.pipeline
        name = pipeline.stages[tagging].name if not isinstance(pipeline, Problem) else f"#{tagging}"
        return Problem(
            Reason.NOT_TAGGED,
            "spec.source.revision",
            f"{d.tag.get('name')} is not tagged yet: the tagging stage {name} (the Pipeline's "
            "spec.tagAfter) has not passed",
            f"let stage {name} pass (its tests push the tag), or release a revision that carries the tag",
        )
    return None


def source_problem(d: Draft, source: Source) -> Problem | None:
    if source.error is not None:
        return Problem(
            Reason.GIT_SOURCE_UNAVAILABLE,
            "spec.source",
            source.error,
            "check spec.source.repository and spec.source.revision, and the credentials Secret",
        )
    if d.release.hotfix and source.hotfix_branch is None:
        return Problem(
            Reason.NOT_A_HOTFIX_BRANCH,
            "spec.hotfix",
            "spec.source.revision is on no HOT-<n> branch",
            "build hotfixes from the HOT-<n> branch of the emergency, or drop spec.hotfix",
        )
    if not d.release.hotfix and source.revision is not None and source.release_branch is None:
        return Problem(
            Reason.NOT_ON_RELEASE_BRANCH,
            "spec.source.revision",
            f"{source.revision[:12]} is on no release branch ({', '.join(RELEASE_BRANCHES)}): "
            "only merged commits are released and tagged",
            "merge it first and release the merge commit (a hotfix: spec.hotfix on its HOT-<n> branch)",
        )
    wanted = d.release.version or source.tag
    if not wanted or source.revision is None:
        since = source.after or source.base or "the first commit"
        return Problem(
            Reason.NOTHING_TO_RELEASE,
            "spec.version",
            f"no feat, fix, perf or breaking commit since {since} up to spec.source.revision",
            "nothing to do: the Release in flight already carries these commits; or set spec.version"
            if source.after
            else "set spec.version, or release a revision with a release-worthy commit",
        )
    if source.taken_by is not None:
        return Problem(
            Reason.VERSION_TAKEN,
            "spec.version",
            f"{wanted} is carried by Release {source.taken_by}, in flight and not tagged yet",
            "drop spec.version (Gantry gives the next free one), or name another version",
        )
    if source.tag_commit is not None and source.tag_commit != source.revision:
        return Problem(
            Reason.TAG_MISMATCH,
            "spec.version",
            f"tag {wanted} already points at {source.tag_commit[:12]}, not at spec.source.revision "
            f"{source.revision[:12]}",
            "tags are never moved: release the tagged commit, or use the next version",
        )
    return None
