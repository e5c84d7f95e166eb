"""Ephemeral environments: the seed's "changes which are not ready for staging remain in feature
branches, and are tested in ephemeral environments".

A ReleaseSource with `spec.ephemeral` follows the feature branches whose names match its patterns.
Each such branch gets its own environment: a namespace named from a template (labelled as this
source's, so Gantry never touches one it did not make), copies of one Pipeline stage's workloads
(dev by default), and a one-stage Pipeline of its own whose Releases deploy the branch's head by
digest and run that stage's tests there. It never reaches dev, staging or production: another
application name, no lock, no production stage, no version tag, no ledger. The environment is
deleted when its branch is merged into the release branch, deleted, or has had no new commit for
`ttlSeconds`.

Pure: names, manifests, and which environments should go, from what the source saw.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gantry.domain.inputs.pipeline import Pipeline, Stage
from gantry.domain.inputs.testjob import label_value
from gantry.domain.vocabulary.phases import FINAL, Phase
from gantry.domain.vocabulary.problems import Problem
from gantry.domain.vocabulary.reasons import Reason
from gantry.domain.vocabulary.timefmt import from_rfc3339

LABEL_OF = "gantry.dev/ephemeral-of"  # on the namespace, Pipeline and Releases: the ReleaseSource
LABEL_BRANCH = "gantry.dev/branch"  # the branch, as a label value
BRANCH_ANNOTATION = "gantry.dev/branch"  # the branch's full name
DEFAULT_NAMESPACE = "{application}-{branch}"
DEFAULT_TTL = 7 * 24 * 3600
DNS_LABEL = 63
HISTORY_LIMIT = 20
NEVER = ("HOT-*",)  # hotfix branches follow the emergency's flow, never an ephemeral one
# An environment's Pipeline has no production stage: Verified (its tests passed) is where its
# Releases end, like Failed. Blocked ones wait on a person's fix and do not hold the next commit.
ENDED = FINAL | {Phase.VERIFIED}
NOT_GOING = ENDED | {Phase.BLOCKED}


@dataclass(frozen=True)
class EphemeralSpec:
    branches: tuple[str, ...]
    stage: str | None = None  # the Pipeline stage whose workloads and tests it copies; default: the first
    namespace: str = DEFAULT_NAMESPACE
    ttl_seconds: int = DEFAULT_TTL


def parse(raw: Mapping[str, Any] | None) -> EphemeralSpec | None:
    if not raw or not raw.get("branches"):
        return None
    return EphemeralSpec(
        branches=tuple(str(b) for b in raw["branches"]),
        stage=raw.get("stage") or None,
        namespace=str(raw.get("namespace") or DEFAULT_NAMESPACE),
        ttl_seconds=int(raw.get("ttlSeconds") or DEFAULT_TTL),
    )


def follows(spec: EphemeralSpec, branch: str, release_branch: str) -> bool:
    """Is `branch` a feature branch this source gives an environment?"""
    if branch == release_branch or any(fnmatch.fnmatchcase(branch, p) for p in NEVER):
        return False
    return any(fnmatch.fnmatchcase(branch, pattern) for pattern in spec.branches)


def slug(text: str, room: int) -> str:
    """`text` as at most `room` characters of a DNS label; a cut one ends in a hash of the whole,
    so two long branch names never share an environment."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "branch"
    if len(cleaned) <= room:
        return cleaned
    digest = hashlib.sha256(text.encode()).hexdigest()[:6]
    return cleaned[: max(1, room - 7)].rstrip("-") + "-" + digest


def namespace_of(spec: EphemeralSpec, application: str, branch: str) -> str:
    """The environment's namespace: the template with {application} and {branch} (a DNS label)."""
    fixed = spec.namespace.replace("{branch}", "")
    room = DNS_LABEL - len(fixed.replace("{application}", application))
    name = spec.namespace.replace("{application}", application).replace("{branch}", slug(branch, room))
    return slug(name, DNS_LABEL)


def application_of(application: str, branch: str) -> str:
    """Its own application name (a DNS label): its Releases never take the real one's versions,
    locks, ledger or quarantine."""
    return slug(f"{application}-{slug(branch, DNS_LABEL)}", DNS_LABEL)


def source_stage(spec: EphemeralSpec, pipeline: Pipeline) -> Stage | Problem:
    """The stage an environment copies, or a Problem naming the field."""
    if spec.stage is None:
        return pipeline.stages[0]
    found = next((s for s in pipeline.stages if s.name == spec.stage), None)
    if found is None or found.production:
        return Problem(
            Reason.INVALID_RELEASE_SOURCE,
            "spec.ephemeral.stage",
            f"{spec.stage!r} is not a stage of Pipeline {pipeline.name} before production",
            f"name one of: {', '.join(s.name for s in pipeline.stages if not s.production)}",
        )
    return found


def pipeline_manifest(
    stage: Stage, env: Environment, application: str, home: str, labels: Mapping[str, str]
) -> dict[str, Any]:
    """The environment's one-stage Pipeline (in `home`, the source's namespace): the copied stage,
    its targets and tests moved to the environment's namespace."""
    namespace = env.namespace
    raw = stage.to_spec()
    raw["targets"] = [{**t, "namespace": namespace} for t in raw["targets"]]
    if "test" in raw and raw["test"].get("namespace"):
        raw["test"] = {**raw["test"], "namespace": namespace}
    raw.update(name=stage.name, environment=namespace, lock=False)
    for key in ("registry", "promotion", "soakSeconds", "analysis", "guard"):
        raw.pop(key, None)  # no gates, no registry promotion: a place to try a branch
    return {
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": env.pipeline, "namespace": home, "labels": dict(labels)},
        "spec": {"application": application, "requireTag": False, "stages": [raw]},
    }


def labels_of(source: str, branch: str) -> dict[str, str]:
    return {LABEL_OF: label_value(source), LABEL_BRANCH: label_value(slug(branch, DNS_LABEL))}


@dataclass(frozen=True)
class Environment:
    """One branch's environment, as the source's status records it."""

    branch: str
    namespace: str
    pipeline: str
    commit: str = ""  # the head last deployed (or waiting for its images)
    release: str = ""
    updated_at: str = ""  # when the branch last moved, as the source saw it

    def to_status(self) -> dict[str, Any]:
        return {
            "branch": self.branch,
            "namespace": self.namespace,
            "pipeline": self.pipeline,
            "commit": self.commit,
            "release": self.release,
            "updatedAt": self.updated_at,
        }

    @classmethod
    def from_status(cls, raw: Mapping[str, Any]) -> Environment:
        return cls(
            branch=str(raw["branch"]),
            namespace=str(raw["namespace"]),
            pipeline=str(raw["pipeline"]),
            commit=str(raw.get("commit") or ""),
            release=str(raw.get("release") or ""),
            updated_at=str(raw.get("updatedAt") or ""),
        )


def why_it_goes(
    env: Environment, heads: Mapping[str, str], merged: bool, now: datetime, spec: EphemeralSpec
) -> str | None:
    """Why an environment should be deleted now, or None while its branch still wants it."""
    if env.branch not in heads:
        return f"branch {env.branch} was deleted"
    if merged:
        return f"branch {env.branch} was merged"
    if not follows(spec, env.branch, ""):
        return f"branch {env.branch} no longer matches spec.ephemeral.branches"
    if env.updated_at and now - from_rfc3339(env.updated_at) >= timedelta(seconds=spec.ttl_seconds):
        return f"no new commit on {env.branch} for {spec.ttl_seconds}s (spec.ephemeral.ttlSeconds)"
    return None


def removed_entry(env: Environment, why: str, at: str) -> dict[str, Any]:
    return {"branch": env.branch, "namespace": env.namespace, "removedAt": at, "why": why}


def bounded(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [dict(e) for e in entries][-HISTORY_LIMIT:]
