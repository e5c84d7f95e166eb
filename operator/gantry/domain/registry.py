"""Registry promotion at the start of a stage: the seed's "tag existing artifact with new semantic
version" and "copy artifact to production repository", without rebuilding anything.

A stage with `registry` first makes the Release's version tag name each artifact's digest in its
own repository and, with `registry.repository`, in the stage's repository too (copied by digest).
Only when the registry shows every tag on exactly the Release's digest does the stage go on, and
its workloads then get `<stage repository>@<digest>`. No decision here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta

from gantry.domain import stages
from gantry.domain.images import digest_of, parse_pinned
from gantry.domain.model import Draft, Phase, PromoteArtifacts, ReleaseView, StageRun, Step, TagOp
from gantry.domain.problems import Problem
from gantry.domain.timefmt import from_rfc3339, to_rfc3339

BACKOFF_CAP_SECONDS = 60
TAG_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class ObservedRegistry:
    """What each wanted tag names now (None: no such tag), or why the registry could not be read."""

    tags: Mapping[str, str | None] = field(default_factory=dict)  # "<repository>:<tag>" -> digest
    error: str | None = None
    kind: str | None = None  # unavailable | auth | collision | invalid


def version_tag(version: str) -> str:
    """The version as an image tag: semver build metadata's '+' is not allowed in tags."""
    return TAG_CHARS.sub("_", version)[:128]


def target_repository(template: str, source: str) -> str:
    """`{name}` in the stage's repository stands for the last path segment of the artifact's repository."""
    return template.replace("{name}", source.rsplit("/", 1)[-1])


def plan_tags(artifacts: Mapping[str, str], version: str, repository: str | None) -> tuple[TagOp, ...]:
    """The tags a stage needs: version on the source digest, then (with a repository) on the copy."""
    tag = version_tag(version)
    ops: list[TagOp] = []
    for name, image in artifacts.items():
        ref = parse_pinned(image)
        if ref is None:
            continue  # refused earlier (ImageNotPinned); nothing to tag
        ops.append(TagOp(name, ref.repository, ref.digest, ref.repository, tag))
        if repository:
            target = target_repository(repository, ref.repository)
            if target != ref.repository:
                ops.append(TagOp(name, ref.repository, ref.digest, target, tag))
    return tuple(ops)


def promoted(ops: tuple[TagOp, ...]) -> dict[str, str]:
    """Artifact name -> the reference this stage deploys: the last repository its digest went to."""
    return {op.artifact: f"{op.repository}@{op.digest}" for op in ops}


def stage_artifacts(d: Draft) -> dict[str, str]:
    """The Release's artifacts as this stage deploys them: a digest copied to another repository by
    this or an earlier stage is deployed from there; the digest itself never changes."""
    images = dict(d.release.artifacts)
    runs = [StageRun.from_status(r) for r in d.release.status.get("stages") or ()]
    if d.run is not None:
        runs = [r for r in runs if r.index != d.run.index] + [d.run]
    for run in runs:
        for name, image in ((run.registry or {}).get("images") or {}).items():
            if name in images and digest_of(images[name]) == digest_of(image):
                images[name] = image
    return images


def wanted_tags(release: ReleaseView, run: StageRun, version: str = "") -> tuple[TagOp, ...]:
    """The tags a Promoting stage wants; the reconciler observes exactly these, `promote` decides on
    them. The settled version (status.version) wins over the spec's, so both always agree."""
    settled = version or str(release.status.get("version") or "") or release.version
    return plan_tags(release.artifacts, settled, (run.spec.get("registry") or {}).get("repository"))


def retry_due(run: StageRun, now: str) -> bool:
    """Backing off after the registry was unreachable: look again only once retryAt has passed."""
    retry_at = (run.registry or {}).get("retryAt")
    return retry_at is None or from_rfc3339(str(retry_at)) <= from_rfc3339(now)


def promote(d: Draft) -> None:
    assert d.run is not None
    run = d.run
    ops = wanted_tags(d.release, run, d.version)
    seen = d.obs.registry
    refusal = d.obs.error if d.obs.error is not None and d.obs.error.effect == "PromoteArtifacts" else None
    if refusal is not None and not d.error_handled:
        d.error_handled = True
        seen = ObservedRegistry(error=refusal.message, kind=refusal.kind or "invalid")
    if seen is None:
        return  # backing off: nothing looked at this tick
    if seen.kind != "auth" and d.phase == Phase.BLOCKED:
        d.phase = Phase.PROMOTING  # the credentials were fixed
    if seen.error is not None:
        _registry_error(d, seen)
        return
    wrong = [op for op in ops if seen.tags.get(op.key) not in (None, op.digest)]
    if wrong:
        op = wrong[0]
        _collision(
            d,
            f"stage {run.name}: {op.key} already points at {seen.tags.get(op.key)}, not at artifact "
            f"{op.artifact}'s {op.digest}; tags are never overwritten",
        )
        return
    missing = [op for op in ops if seen.tags.get(op.key) != op.digest]
    if missing:
        d.effects.append(PromoteArtifacts(tuple(missing)))
        d.message = (
            f"stage {run.name}: tagging and copying {len(missing)} artifact reference(s) in the registry"
        )
        return
    images = promoted(ops)
    d.run = replace(
        run, registry={"images": images, "tags": sorted(op.key for op in ops), "promotedAt": d.now}
    )
    tags = ", ".join(sorted(op.key for op in ops))
    d.event(
        "Normal", "Promoted", f"stage {run.name}: registry tags verified on the Release's digests: {tags}"
    )
    stages.enter_stage(d)


def _collision(d: Draft, message: str) -> None:
    """A version tag already names another digest: fail, never overwrite it."""
    d.event("Warning", "RegistryTagCollision", message)
    d.move(Step.FAILED, "RegistryTagCollision", message + "; release under a new version", finished_at=d.now)


def _registry_error(d: Draft, seen: ObservedRegistry) -> None:
    assert d.run is not None and seen.error is not None
    run = d.run
    field_ = "Pipeline spec.registry"
    if seen.kind == "collision":
        _collision(d, f"stage {run.name}: {seen.error}")
        return
    if seen.kind == "auth":
        stages.block(
            d,
            Problem(
                "RegistryAuthFailed",
                f"{field_}.credentialsSecretRef",
                seen.error,
                "put credentials for this registry in the kubernetes.io/dockerconfigjson Secret the Pipeline "
                "names (spec.registry.credentialsSecretRef), with push access to the target repositories",
            ),
        )
        return
    timeout = int((run.spec.get("registry") or {}).get("timeoutSeconds", 600))
    waited = d.obs.now - from_rfc3339(run.started_at)
    if seen.kind != "unavailable" or waited > timedelta(seconds=timeout):
        why = "RegistryUnavailable" if seen.kind == "unavailable" else "RegistryError"
        after = f" (gave up after {timeout}s of retries)" if seen.kind == "unavailable" else ""
        message = f"stage {run.name}: {seen.error}{after}; nothing was deployed"
        d.event("Warning", why, message)
        d.move(Step.FAILED, why, message, finished_at=d.now)
        return
    attempts = int((run.registry or {}).get("attempts", 0)) + 1
    delay = min(2**attempts, BACKOFF_CAP_SECONDS)
    retry_at = to_rfc3339(d.obs.now + timedelta(seconds=delay))
    d.run = replace(run, registry={"attempts": attempts, "retryAt": retry_at, "lastError": seen.error})
    d.reason = "RegistryUnavailable"
    d.message = (
        f"stage {run.name}: {seen.error}; retry {attempts} at {retry_at} "
        f"(gives up {timeout}s after the stage began)"
    )
    if attempts == 1:
        d.event("Warning", "RegistryUnavailable", d.message)
