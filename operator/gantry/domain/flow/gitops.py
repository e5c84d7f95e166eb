"""Where a stage deploys: the live workloads, or a place in git that a GitOps tool applies.

Chosen once per stage (its `git`), so the steps never branch on it: every step asks `set_images`
for the effect, and the executor beside the adapter either patches the workloads or commits the
digests (and, for a rollback with `rollback: LiveFirst`, does both, the live re-pin first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta

from gantry.domain.flow.draft import Draft, Rollback
from gantry.domain.flow.model import AUTOMATIC, GitSnapshot, SetImages, StageRun
from gantry.domain.inputs.git_target import GitTarget
from gantry.domain.inputs.pipeline import Stage
from gantry.domain.inputs.workloads import FIELD_MANAGER, ImageChange, WorkloadRef
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


# --- a Draft's git stage: its commit's words, what it waits for in git, and fights ----------


def commit_of(d: Draft, why: str = "", by: str | None = None) -> Commit:
    """What a git stage's commit says about this Release and its current stage run."""
    assert d.run is not None
    return Commit(
        d.release.key,
        d.release.application,
        d.version or d.release.version,
        d.run.name,
        by or d.run.decided_by or AUTOMATIC,
        why,
    )


def set_back(d: Draft) -> list[tuple[ImageChange, str]]:
    """Containers running what they ran before the stage again, set so by another field manager
    than Gantry (managedFields; our own rollback whose record was lost is not someone else's)."""
    assert d.run is not None
    back = []
    for change in d.run.changes or ():
        seen = d.obs.workloads.get(change.workload)
        if seen is None or change.before == change.after:
            continue
        manager = seen.image_managers.get(change.container)
        if seen.containers.get(change.container) == change.before and manager not in (None, FIELD_MANAGER):
            back.append((change, manager))
    return back


def fought(d: Draft, rollback: Rollback) -> bool:
    """A live stage's images set back to what ran before: once may be a person or a race, and the
    images are applied once more; twice is another controller owning the field (a GitOps tool
    re-applying git, Argo CD's self-heal or Flux), and fighting it would flap the workload. The
    stage stops, naming the field manager and the fix. A git stage cannot fight: the tool applies
    what Gantry committed."""
    assert d.run is not None
    run, pairs = d.run, set_back(d)
    if run.stage.git is not None or not pairs:
        return False
    by = ", ".join(sorted({manager for _, manager in pairs}))
    back = [change for change, _ in pairs]
    what = "; ".join(f"{c.workload} container {c.container}" for c in back)
    if run.reverted_by is None:
        again = tuple((c.workload, c.container, c.after) for c in back)
        d.effects.append(set_images(run, again, commit_of(d)))
        d.run = replace(run, reverted_by=by)
        d.event("Warning", Reason.REVERTED, f"stage {run.name}: {what} set back by {by}; applied once more")
        return True
    rollback(
        d,
        Reason.CONTROLLER_FIGHT,
        f"{what} set back again by {by}, which owns the image field (a GitOps tool applying git, "
        f"e.g. Argo CD self-heal or Flux?); fix: deploy this stage through git "
        f"({run.stage.field}.git) so the tool applies Gantry's commit, or stop {by} managing the image",
    )
    return True


def waits_in_git(d: Draft, rollback: Rollback) -> bool:
    """A git stage whose commit is not applied yet: its proposal not merged (within the proposal's
    timeout, counted from the push), or the GitOps tool not synced to it (within the rollout's)."""
    assert d.run is not None
    waiting = git_wait(d, "after")
    if waiting is None:
        return False
    run, target = d.run, d.run.stage.git
    assert target is not None
    unmerged = target.proposal_seconds is not None and "mergedAt" not in (run.git or {})
    if unmerged and d.elapsed(run.deployed_at) > timedelta(seconds=target.proposal_seconds or 0):
        rollback(d, Reason.PROPOSAL_NOT_MERGED, f"{waiting}: not merged within {target.proposal_seconds}s")
    elif not unmerged and d.elapsed((run.git or {}).get("mergedAt") or run.deployed_at) > timedelta(
        seconds=run.stage.rollout_timeout_seconds
    ):
        rollback(d, Reason.ROLLOUT_TIMEOUT, f"{waiting} after {run.stage.rollout_timeout_seconds}s")
    else:
        d.message = f"stage {run.name}: {waiting}"
    return True


def git_wait(d: Draft, want: str) -> str | None:
    """A git stage: record its commit (and who applied it); what it still waits for in git (the
    proposal's merge, the GitOps tool's sync), or None."""
    assert d.run is not None
    target, seen = d.run.stage.git, d.obs.git
    if target is None or seen is None or (want == "before" and target.rollback == "LiveFirst"):
        return None  # a LiveFirst rollback is live already: it waits for no commit and no sync
    if seen.error is not None:
        return f"cannot read {target.describe()} yet: {seen.error}"
    record = dict(d.run.git or {})
    record.update({"branch": target.branch, **({"commit": seen.commit} if seen.commit else {})})
    if want == "after" and target.proposal_seconds:
        record["proposal"] = proposal_branch(d.release.key, d.run.name)
        if seen.holds:
            record.setdefault("mergedAt", d.now)
    if seen.sync is not None and seen.sync.applied:
        record.update(appliedBy=seen.sync.name, revision=seen.sync.revision)
    if record != (d.run.git or {}):
        d.run = replace(d.run, git=record)
    if want == "after" and target.proposal_seconds and not seen.holds:
        return (
            f"waiting for branch {record['proposal']} to be merged into {target.branch} of "
            f"{target.repository} (open a merge request from it)"
        )
    if seen.sync is not None and not seen.sync.applied:
        applied = (seen.sync.revision or "nothing yet")[:12]
        return (
            f"waiting for {seen.sync.name} to apply {(seen.commit or seen.head)[:12]} "
            f"(it applied {applied}; {seen.sync.detail})"
        )
    return None
