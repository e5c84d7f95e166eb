"""ReleaseSources: a merge on main becomes a Release, without anyone writing YAML.

Pure: given the source's spec and status, the branch's new commits (oldest first) and, per
commit, the digest each artifact's commit-hash tag resolves to (None: not pushed yet), decide
which Releases to create and what the status records. Images are always pinned by the digest
the registry returned, never by the tag. One Release per commit (its name is derived from the
commit, so a second look, or a second operator, creates nothing twice).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gantry.domain.problems import Problem
from gantry.domain.reasons import Reason
from gantry.domain.timefmt import from_rfc3339, to_rfc3339

HISTORY_LIMIT = 20  # Releases (and skipped commits) a status remembers
LABEL_SOURCE = "gantry.dev/source"


@dataclass(frozen=True)
class Artifact:
    name: str
    repository: str
    tag: str = "{commit}"

    def tag_for(self, commit: str) -> str:
        return self.tag.replace("{commit}", commit).replace("{shortCommit}", commit[:7])


@dataclass(frozen=True)
class SourceSpec:
    name: str
    namespace: str
    application: str
    pipeline: str
    repository: str
    branch: str
    artifacts: tuple[Artifact, ...]
    interval_seconds: int = 60
    every_commit: bool = False


def parse(name: str, namespace: str, spec: Mapping[str, Any]) -> SourceSpec | Problem:
    git = spec.get("git") or {}
    artifacts = tuple(
        Artifact(str(a["name"]), str(a["repository"]), str(a.get("tag") or "{commit}"))
        for a in spec.get("artifacts") or ()
    )
    if not git.get("repository") or not artifacts or not spec.get("application"):
        return Problem(
            Reason.INVALID_RELEASE_SOURCE,
            "spec",
            "a ReleaseSource needs spec.application, spec.git.repository and spec.artifacts",
            "apply it again with the CRD installed (admission checks these)",
        )
    return SourceSpec(
        name=name,
        namespace=namespace,
        application=str(spec["application"]),
        pipeline=str(spec.get("pipeline") or spec["application"]),
        repository=str(git["repository"]),
        branch=str(git.get("branch") or "main"),
        artifacts=artifacts,
        interval_seconds=int(spec.get("intervalSeconds") or 60),
        every_commit=spec.get("policy") == "EveryCommit",
    )


def due(spec: SourceSpec, status: Mapping[str, Any], now: datetime) -> bool:
    checked = status.get("lastCheckedAt")
    return not checked or now - from_rfc3339(str(checked)) >= timedelta(seconds=spec.interval_seconds)


def release_name(application: str, commit: str) -> str:
    return f"{application}-{commit[:12]}"


def release_manifest(spec: SourceSpec, commit: str, digests: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "Release",
        "metadata": {
            "name": release_name(spec.application, commit),
            "namespace": spec.namespace,
            "labels": {LABEL_SOURCE: spec.name},
        },
        "spec": {
            "application": spec.application,
            "pipeline": spec.pipeline,
            "source": {"repository": spec.repository, "revision": commit},
            "artifacts": [
                {"name": a.name, "image": f"{a.repository}@{digests[a.name]}"} for a in spec.artifacts
            ],
        },
    }


@dataclass(frozen=True)
class Plan:
    creates: tuple[dict[str, Any], ...] = ()
    status: Mapping[str, Any] = field(default_factory=dict)


def plan(
    spec: SourceSpec,
    status: Mapping[str, Any],
    head: str,
    commits: Sequence[str],
    resolved: Mapping[str, Mapping[str, str | None]],
    now: datetime,
) -> Plan:
    """`commits`: the branch's commits since the last Release was made (oldest first, first-parent
    line; on first sight just the head); `resolved`: per commit, artifact name -> digest or None."""
    candidates = list(commits) if spec.every_commit else list(commits[-1:])
    skipped = [c for c in commits if c not in candidates]
    ready = [c for c in candidates if all(resolved.get(c, {}).get(a.name) for a in spec.artifacts)]
    if ready and spec.every_commit:
        skipped += [
            c for c in candidates if c not in ready and candidates.index(c) < candidates.index(ready[-1])
        ]
    creates = tuple(release_manifest(spec, c, {k: str(v) for k, v in resolved[c].items()}) for c in ready)
    waiting = [c for c in candidates if c not in ready and c not in skipped]
    history = list(status.get("releases") or [])
    history += [
        {"commit": c, "release": release_name(spec.application, c), "createdAt": to_rfc3339(now)}
        for c in ready
    ]
    history += [
        {"commit": c, "skipped": f"a newer commit on {spec.branch} was released first"} for c in skipped
    ]
    out: dict[str, Any] = {
        "lastCommit": head,
        "lastCheckedAt": to_rfc3339(now),
        "lastRelease": release_name(spec.application, ready[-1]) if ready else status.get("lastRelease"),
        # The commit every later look counts from: the last one released (or given up on).
        "releasedCommit": (ready or skipped)[-1] if ready or skipped else status.get("releasedCommit"),
        "releases": history[-HISTORY_LIMIT:],
    }
    if waiting:
        missing = [
            f"{a.repository}:{a.tag_for(c)}"
            for c in waiting[:1]
            for a in spec.artifacts
            if not resolved.get(c, {}).get(a.name)
        ]
        out["message"] = (
            f"commit {waiting[0][:12]} on {spec.branch}: waiting for CI to push {', '.join(missing)}"
        )
    elif ready:
        out["message"] = (
            f"commit {ready[-1][:12]} on {spec.branch} is Release {release_name(spec.application, ready[-1])}"
        )
    else:
        out["message"] = f"{spec.branch} at {head[:12]}: nothing new since the last Release"
    out["conditions"] = [condition(True, "Watching", out["message"], now)]
    return Plan(creates, out)


def failed(status: Mapping[str, Any], reason: str, message: str, now: datetime) -> dict[str, Any]:
    """The status of a look that could not read the branch or the registry: said, not retried blindly."""
    return {
        **status,
        "lastCheckedAt": to_rfc3339(now),
        "message": message,
        "conditions": [condition(False, reason, message, now)],
    }


def condition(ready: bool, reason: str, message: str, now: datetime) -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": "True" if ready else "False",
        "reason": reason,
        "message": message,
        "lastTransitionTime": to_rfc3339(now),
    }
