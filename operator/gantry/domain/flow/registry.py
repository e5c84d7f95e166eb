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
from dataclasses import replace
from datetime import timedelta

from gantry.domain.flow import steps
from gantry.domain.flow.draft import Draft
from gantry.domain.flow.model import Failure, ObservedRegistry, PromoteArtifacts, ReleaseView, StageRun, TagOp
from gantry.domain.vocabulary.images import parse_pinned
from gantry.domain.vocabulary.phases import Phase, Step
from gantry.domain.vocabulary.problems import Problem
from gantry.domain.vocabulary.reasons import Reason
from gantry.domain.vocabulary.timefmt import from_rfc3339, to_rfc3339

BACKOFF_CAP_SECONDS = 60
TAG_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


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
    failed = d.rejected(PromoteArtifacts)
    if failed is not None:
        seen = ObservedRegistry(error=failed.message, failure=failed.failure)
    if seen is None:
        return  # backing off: nothing looked at this tick
    if seen.failure != Failure.UNAUTHORIZED and d.phase == Phase.BLOCKED:
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
        "Normal",
        Reason.PROMOTED,
        f"stage {run.name}: registry tags verified on the Release's digests: {tags}",
    )
    steps.enter_stage(d)


def _collision(d: Draft, message: str) -> None:
    """A version tag already names another digest: fail, never overwrite it."""
    d.event("Warning", Reason.REGISTRY_TAG_COLLISION, message)
    d.move(
        Step.FAILED,
        Reason.REGISTRY_TAG_COLLISION,
        message + "; release under a new version",
        finished_at=d.now,
    )


def _registry_error(d: Draft, seen: ObservedRegistry) -> None:
    assert d.run is not None and seen.error is not None
    run = d.run
    field_ = "Pipeline spec.registry"
    if seen.failure == Failure.CONFLICT:
        _collision(d, f"stage {run.name}: {seen.error}")
        return
    if seen.failure == Failure.UNAUTHORIZED:
        d.block(
            Problem(
                Reason.REGISTRY_AUTH_FAILED,
                f"{field_}.credentialsSecretRef",
                seen.error,
                "put credentials for this registry in the kubernetes.io/dockerconfigjson Secret the Pipeline "
                "names (spec.registry.credentialsSecretRef), with push access to the target repositories",
            ),
        )
        return
    timeout = int((run.spec.get("registry") or {}).get("timeoutSeconds", 600))
    waited = d.obs.now - from_rfc3339(run.started_at)
    unavailable = seen.failure == Failure.UNAVAILABLE
    if not unavailable or waited > timedelta(seconds=timeout):
        why = Reason.REGISTRY_UNAVAILABLE if unavailable else Reason.REGISTRY_ERROR
        after = f" (gave up after {timeout}s of retries)" if unavailable else ""
        message = f"stage {run.name}: {seen.error}{after}; nothing was deployed"
        d.event("Warning", why, message)
        d.move(Step.FAILED, why, message, finished_at=d.now)
        return
    attempts = int((run.registry or {}).get("attempts", 0)) + 1
    delay = min(2**attempts, BACKOFF_CAP_SECONDS)
    retry_at = to_rfc3339(d.obs.now + timedelta(seconds=delay))
    d.run = replace(run, registry={"attempts": attempts, "retryAt": retry_at, "lastError": seen.error})
    d.reason = Reason.REGISTRY_UNAVAILABLE
    d.message = (
        f"stage {run.name}: {seen.error}; retry {attempts} at {retry_at} "
        f"(gives up {timeout}s after the stage began)"
    )
    if attempts == 1:
        d.event("Warning", Reason.REGISTRY_UNAVAILABLE, d.message)
