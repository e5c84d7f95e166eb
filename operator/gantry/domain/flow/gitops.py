"""Where a stage deploys: the live workloads, or a place in git that a GitOps tool applies.

Chosen once per stage (its `git`), so the steps never branch on it: every step asks `set_images`
for the effect, and the executor beside the adapter either patches the workloads or commits the
digests (and, for a rollback with `rollback: LiveFirst`, does both, the live re-pin first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gantry.domain.flow.model import GitSnapshot, SetImages, StageRun
from gantry.domain.inputs.pipeline import GitTarget, Stage
from gantry.domain.inputs.workloads import ImageChange, WorkloadRef
from gantry.domain.vocabulary.problems import Problem
from gantry.domain.vocabulary.reasons import Reason

# Trailers on every commit Gantry makes, so `git log --grep` finds a Release's commits.
RELEASE_TRAILER = "Gantry-Release"
STAGE_TRAILER = "Gantry-Stage"


@dataclass(frozen=True)
class Commit:
    """What a commit says: the seed's `type(scope): description`, then who and why, then trailers."""

    release: str  # namespace/name
    application: str
    version: str
    stage: str
    decided_by: str
    why: str = ""  # a rollback's cause

    def message(self, images: Sequence[tuple[str, str]], restore: bool) -> str:
        kind = "revert" if restore else "deploy"
        title = f"{self.application} {self.version}" + (" rolled back" if restore else "")
        what = "re-applies the images it ran before" if restore else "deploys by digest"
        lines = [
            f"{kind}({self.stage}): {title}",
            "",
            f"Release {self.release} ({self.version}) {what} in stage {self.stage}.",
            f"Decided by: {self.decided_by}",
            *([f"Why: {self.why}"] if self.why else []),
            "",
            *(f"{container}: {image}" for container, image in images),
            "",
            f"{RELEASE_TRAILER}: {self.release}",
            f"{STAGE_TRAILER}: {self.stage}",
        ]
        return "\n".join(lines) + "\n"


def set_images(
    run: StageRun,
    images: tuple[tuple[WorkloadRef, str, str], ...],
    commit: Commit,
    restore: bool = False,
    restores: str | None = None,
) -> SetImages:
    """The effect that puts `images` where `run`'s stage deploys. `restores`: the version a
    rollback returns to, when known (a production branch then takes that version's tag)."""
    target = run.stage.git
    if target is None:
        return SetImages(images, restore=restore)
    message = commit.message(by_container(images), restore)
    # A proposal's branch: pushed to when deploying; deleted by a rollback (never merged later),
    # which itself goes to the branch at once, waiting for no review.
    proposal = proposal_branch(commit.release, commit.stage) if target.proposal_seconds else None
    taken = snapshot(target, commit, restore, restores)
    return SetImages(images, restore, target, message, taken, proposal, commit.stage)


def proposal_branch(release: str, stage: str) -> str:
    """The branch a proposal is pushed to, one per Release and stage: gantry/NAMESPACE-NAME-STAGE."""
    return "gantry/" + release.replace("/", "-") + f"-{stage}"


def tag_name(application: str, version: str) -> str:
    """The tag a promoted snapshot gets in the deploy repository (not the application's own
    vX.Y.Z, which may live in the same repository)."""
    return f"{application}/{version}"


def snapshot(target: GitTarget, commit: Commit, restore: bool, restores: str | None) -> GitSnapshot | None:
    """A production branch deploys the tag of the source stage's commit, and rolls back to the
    previous version's tag; a restore without a known version writes the images instead."""
    if target.source is None:
        return None
    if not restore:
        return GitSnapshot(tag_name(commit.application, commit.version), commit.release, target.promote_from)
    return GitSnapshot(tag_name(commit.application, restores)) if restores else None


def image_key(image: str) -> str:
    """What a file holds of an image however it is written (a kustomization splits name and
    digest): its digest, or its tag."""
    return image.rsplit("@", 1)[1] if "@" in image else image.rsplit(":", 1)[-1]


def by_container(images: tuple[tuple[WorkloadRef, str, str], ...]) -> list[tuple[str, str]]:
    """One image per container name (a git target names images, not workloads), in order."""
    return sorted({container: image for _, container, image in images}.items())


def missing_keys(stage: Stage, changes: tuple[ImageChange, ...]) -> Problem | None:
    """A YAML git target must say where each re-pinned container's image is written."""
    target = stage.git
    if target is None or target.format == "Kustomize":
        return None
    for container in sorted({c.container for c in changes}):
        image = target.image(container)
        if image is None or not image.key:
            return Problem(
                Reason.INVALID_PIPELINE,
                f"{stage.field}.git.images",
                f"no key for container {container!r}: a {target.format} target writes each image at "
                "a key path",
                f"add {{container: {container}, key: <path, e.g. {container}.image>}} to git.images",
            )
    return None


def describe(target: GitTarget | None) -> str:
    return f"a commit to {target.describe()}" if target is not None else "the live workloads"
