"""The Release's git source: its version tag is settled (found, or made) before anything deploys."""

from __future__ import annotations

from gantry.domain.draft import Draft
from gantry.domain.model import CreateTag, Source
from gantry.domain.problems import Problem
from gantry.domain.reasons import Reason


def version_settled(d: Draft) -> bool:
    """Before anything is deployed: the version tag exists on the Release's revision (or is made so)."""
    source = d.obs.source
    if d.version or d.release.repository is None or source is None:
        d.version = d.version or d.release.version  # as given: no git source to check it against
        return True
    problem = source_problem(d, source)
    if problem is not None:
        d.block(problem)
        return False
    wanted = d.release.version or source.tag
    assert wanted is not None and source.revision is not None
    if source.tag_commit is None:
        d.effects.append(CreateTag(wanted, source.revision, f"{wanted} ({d.release.key})"))
    d.version, d.changelog = wanted, source.changelog
    return True


def source_problem(d: Draft, source: Source) -> Problem | None:
    refusal = d.rejected(CreateTag)
    if refusal is not None:
        return Problem(
            Reason.TAG_PUSH_REJECTED,
            "spec.source.repository",
            f"pushing the tag failed: {refusal.message}",
            "check the credentials Secret and that origin accepts tags",
        )
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
    wanted = d.release.version or source.tag
    if not wanted or source.revision is None:
        since = source.base or "the first commit"
        return Problem(
            Reason.NOTHING_TO_RELEASE,
            "spec.version",
            f"no feat, fix, perf or breaking commit since {since} up to spec.source.revision",
            "set spec.version, or release a revision with a release-worthy commit",
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
