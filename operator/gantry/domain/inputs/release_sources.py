"""ReleaseSources: a merge on main becomes a Release, without anyone writing YAML.

Pure: given the source's spec and status, the branch's new commits (oldest first) and, per
commit, the digest each artifact's commit-hash tag resolves to (None: not pushed yet), decide
which Releases to create and what the status records. Images are always pinned by the digest
the registry returned, never by the tag. One Release per commit (its name is derived from the
commit, so a second look, or a second operator, creates nothing twice).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gantry.domain.inputs import ephemeral
from gantry.domain.inputs.ephemeral import EphemeralSpec
from gantry.domain.inputs.testjob import label_value
from gantry.domain.vocabulary.problems import Problem
from gantry.domain.vocabulary.reasons import Reason
from gantry.domain.vocabulary.timefmt import from_rfc3339, to_rfc3339

HISTORY_LIMIT = 20  # Releases (and skipped commits) a status remembers
LABEL_SOURCE = "gantry.dev/source"


@dataclass(frozen=True)
class Artifact:
    name: str
    repository: str
    tag: str = "{commit}"

    def tag_for(self, commit: str) -> str:
        return self.tag.replace("{commit}", commit).replace("{shortCommit}", commit[:7])

    def pushed_as(self, target: Mapping[str, Any]) -> bool:
        """Is a registry event's target this artifact under a commit-hash tag? The repository is
        compared by path: the registry knows itself by a host name the source may not use."""
        first, _, rest = self.repository.partition("/")
        host = rest and ("." in first or ":" in first or first == "localhost")
        path = rest if host else self.repository
        pattern = re.escape(self.tag).replace(re.escape("{commit}"), "[0-9a-f]{40}")
        pattern = pattern.replace(re.escape("{shortCommit}"), "[0-9a-f]{7}")
        tag = str(target.get("tag") or "")
        return str(target.get("repository")) == path and re.fullmatch(pattern, tag) is not None


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
    webhook_secret: tuple[str, str] | None = None  # (Secret name, key) holding the webhook's token
    ephemeral: EphemeralSpec | None = None  # feature branches into environments of their own


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
        webhook_secret=webhook_secret(spec),
        ephemeral=ephemeral.parse(spec.get("ephemeral")),
    )


def webhook_secret(spec: Mapping[str, Any]) -> tuple[str, str] | None:
    ref = (spec.get("webhook") or {}).get("secretRef") or {}
    return (str(ref["name"]), str(ref.get("key") or "token")) if ref.get("name") else None


def due(spec: SourceSpec, status: Mapping[str, Any], now: datetime) -> bool:
    """At its interval, or at once after a webhook (which clears lastCheckedAt)."""
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
            "labels": {LABEL_SOURCE: label_value(spec.name)},  # a name may be 253 long, a label value 63
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


def pushed(spec: SourceSpec, digests: Mapping[str, str | None]) -> dict[str, str] | None:
    """Each artifact's digest, once CI has pushed every one of them for the commit; else None."""
    if not all(digests.get(a.name) for a in spec.artifacts):
        return None
    return {a.name: str(digests[a.name]) for a in spec.artifacts}


LABEL_HOTFIX_OF = "gantry.dev/hotfix-of"  # a hotfix Release the source made from a HOT-<n> branch
HOTFIX_BRANCHES = "HOT-*"


def hotfix_manifest(spec: SourceSpec, branch: str, commit: str, digests: Mapping[str, str]) -> dict[str, Any]:
    """A hotfix Release of a HOT-<n> branch's head, made while an emergency freezes the Pipeline.
    Labelled apart from the source's own Releases: a newer commit on main never supersedes it."""
    manifest = release_manifest(spec, commit, digests)
    manifest["metadata"]["labels"] = {LABEL_HOTFIX_OF: label_value(spec.name)}
    manifest["metadata"]["annotations"] = {"gantry.dev/branch": branch}
    manifest["spec"]["hotfix"] = True
    return manifest


@dataclass(frozen=True)
class Plan:
    creates: tuple[dict[str, Any], ...] = ()
    status: Mapping[str, Any] = field(default_factory=dict)


NOTHING_TO_RELEASE = "nothing to release (no feat, fix, perf or breaking commit since the last release tag)"


def candidates_of(spec: SourceSpec, commits: Sequence[str]) -> list[str]:
    """The commits that may become Releases by the source's policy (whose images are to be asked for)."""
    return list(commits) if spec.every_commit else list(commits[-1:])


def plan(
    spec: SourceSpec,
    status: Mapping[str, Any],
    head: str,
    commits: Sequence[str],
    resolved: Mapping[str, Mapping[str, str | None]],
    now: datetime,
    releasable: Mapping[str, bool] | None = None,
) -> Plan:
    """`commits`: the branch's commits since the last Release was made (oldest first, first-parent
    line; on first sight just the head); `resolved`: per commit, artifact name -> digest or None;
    `releasable`: per candidate, whether its version would be new (False: only docs, chores... since
    the last release tag). A commit with nothing to release becomes no Release and supersedes none:
    it is recorded as skipped, so a fix waiting for staging is never given up for it."""
    candidates = candidates_of(spec, commits)
    skipped = [c for c in commits if c not in candidates]
    ready = [c for c in candidates if pushed(spec, resolved.get(c, {})) is not None]
    quiet = [c for c in ready if releasable is not None and not releasable.get(c, True)]
    ready = [c for c in ready if c not in quiet]
    if ready and spec.every_commit:
        skipped += [
            c for c in candidates if c not in ready and candidates.index(c) < candidates.index(ready[-1])
        ]
    creates = tuple(release_manifest(spec, c, pushed(spec, resolved[c]) or {}) for c in ready)
    waiting = [c for c in candidates if c not in ready and c not in skipped and c not in quiet]
    history = list(status.get("releases") or [])
    history += [
        {"commit": c, "release": release_name(spec.application, c), "createdAt": to_rfc3339(now)}
        for c in ready
    ]
    history += [
        {"commit": c, "skipped": f"a newer commit on {spec.branch} was released first"} for c in skipped
    ]
    history += [{"commit": c, "skipped": NOTHING_TO_RELEASE} for c in quiet]
    handled = [c for c in commits if c in ready or c in skipped or c in quiet]
    out: dict[str, Any] = {
        "lastCommit": head,
        "lastCheckedAt": to_rfc3339(now),
        "lastRelease": release_name(spec.application, ready[-1]) if ready else status.get("lastRelease"),
        # The commit every later look counts from: the last one released (or given up on).
        "releasedCommit": handled[-1] if handled else status.get("releasedCommit"),
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
    elif quiet:
        out["message"] = f"commit {quiet[-1][:12]} on {spec.branch}: {NOTHING_TO_RELEASE}; no Release made"
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


# --- webhooks: a push reaches the source in seconds, not at its next interval ---------------------


@dataclass(frozen=True)
class Hook:
    """What a webhook request means for a source: an HTTP status, and whether to look now."""

    status: int
    message: str
    look_now: bool = False


# One answer for every path that names no source, valid or not: the endpoint is no oracle.
NO_SUCH_SOURCE = Hook(404, "no ReleaseSource takes webhooks at this path")


def authentic(headers: Mapping[str, str], body: bytes, secret: str) -> bool:
    """GitHub signs the body (X-Hub-Signature-256: sha256=HMAC); GitLab sends the token
    (X-Gitlab-Token); anything else may send it as a bearer token."""
    given = {k.lower(): v for k, v in headers.items()}
    if "x-hub-signature-256" in given:
        wanted = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(given["x-hub-signature-256"], wanted)
    token = given.get("x-gitlab-token") or given.get("authorization", "").removeprefix("Bearer ")
    return bool(token) and hmac.compare_digest(token, secret)


def unauthenticated(
    ref: tuple[str, str] | None, secret: str | None, headers: Mapping[str, str], body: bytes
) -> Hook | None:
    """Why a request may not act on a source (None: it may). Decided before anything else about
    the source is said, so that an unsigned request learns nothing but that it was refused."""
    if ref is None:
        return Hook(403, "this ReleaseSource takes no webhooks: set spec.webhook.secretRef")
    if secret is None:
        return Hook(
            403,
            f"this ReleaseSource's spec.webhook.secretRef names key {ref[1]!r} of Secret {ref[0]!r}, "
            "which its namespace does not have: create it with the secret the sender signs with",
        )
    if not authentic(headers, body, secret):
        return Hook(401, "not signed with the ReleaseSource's webhook secret")
    return None


def hook(spec: SourceSpec, headers: Mapping[str, str], body: bytes) -> Hook:
    """A git host's push event (GitHub, GitLab) or a registry's notification (Distribution's
    envelope of events), already authenticated by the source's secret: looked at now if it may
    concern the source (a push to its branch, a push of an artifact's commit-hash tag)."""
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        return Hook(400, "the body is not JSON (a GitHub or GitLab push event, or a registry notification)")
    if not isinstance(payload, dict):
        return Hook(400, "the body is not a push event object")
    if "events" in payload:
        return registry_notification(spec, payload["events"])
    ref = str(payload.get("ref") or "")
    if ref and ref != f"refs/heads/{spec.branch}":
        return Hook(202, f"ignored: a push to {ref}, not to {spec.branch}")
    return Hook(202, f"looking at {spec.branch} now", look_now=True)


def registry_notification(spec: SourceSpec, events: Any) -> Hook:
    """Distribution's notifications: the last image of a commit pushed is when its Release can
    be made (a git push often comes before CI has pushed the images)."""
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        return Hook(400, "events must be a list of registry events (Distribution's notification envelope)")
    for event in events:
        target = event.get("target") or {}
        if event.get("action") != "push" or not isinstance(target, dict) or not target.get("tag"):
            continue  # pulls, blob uploads, deletes, pushes by digest: no commit's image yet
        artifact = next((a for a in spec.artifacts if a.pushed_as(target)), None)
        if artifact is not None:
            return Hook(202, f"{artifact.name} pushed as {target['tag']}: looking now", look_now=True)
    return Hook(202, "ignored: no push of an artifact's commit-hash tag")
