"""The imperative shell around `domain.inputs.release_sources`: read the branch and the registry, decide,
create the Releases, record what was seen.

Idempotent and restart-safe: the status says which commit was released last, a Release's name
is derived from its commit (a second look, or a second operator, gets 409 and creates nothing
twice), and a look that cannot read git or the registry says so in the status and tries again
at the next interval.
"""

from __future__ import annotations

import base64
import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from gantry.adapters.git import GitError, Mirrors, Repository
from gantry.adapters.git_effects import git_credentials
from gantry.adapters.kube import custom_path
from gantry.adapters.registry import REQUEST_TIMEOUT, RegistryError, parse_repository
from gantry.adapters.registry_effects import registry_client
from gantry.adapters.resources import Resources
from gantry.domain.flow.model import FOLLOWS, SUPERSEDED_BY, SUPERSEDES
from gantry.domain.inputs import approvals, release_sources
from gantry.domain.inputs.pipeline import Pipeline
from gantry.domain.inputs.testjob import label_value
from gantry.domain.vocabulary.phases import FINAL, FINISHED_LABEL
from gantry.domain.vocabulary.problems import Problem
from gantry.domain.vocabulary.reasons import Reason
from gantry.ephemeral_environments import EphemeralEnvironments
from gantry.versioning import next_release

MAX_COMMITS = 20  # a look at most resolves this many commits (EveryCommit after a long outage)


class SourcePoller:
    def __init__(
        self,
        resources: Resources,
        mirrors: Mirrors | None,
        clock: Callable[[], datetime],
        registry_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self.resources, self.mirrors, self.clock = resources, mirrors, clock
        self.registry_timeout = registry_timeout

    def poll(self, namespace: str, name: str) -> None:
        path = custom_path("releasesources", namespace, name)
        body = self.resources.kube.get(path)
        if body is None:
            return
        now, status = self.clock(), body.get("status") or {}
        spec = release_sources.parse(name, namespace, body.get("spec") or {})
        if isinstance(spec, Problem):
            self.record(path, release_sources.failed(status, spec.reason, spec.describe(), now))
            return
        if not release_sources.due(spec, status, now):
            return
        if self.mirrors is None:
            why = (
                "Gantry runs without a git cache (GANTRY_GIT_CACHE), so it cannot read spec.git.repository; "
                "set it (the chart's operator.gitCache)"
            )
            self.record(path, release_sources.failed(status, Reason.GIT_CACHE_OFF, why, now))
            return
        try:
            plan = self.look(spec, status, now)
        except GitError as error:
            message = f"cannot read {spec.branch} of {spec.repository} (spec.git): {error}"
            self.record(path, release_sources.failed(status, Reason.GIT_SOURCE_UNAVAILABLE, message, now))
            return
        except RegistryError as error:
            message = f"cannot ask the registry for this commit's images (spec.artifacts): {error}"
            self.record(path, release_sources.failed(status, Reason.REGISTRY_UNAVAILABLE, message, now))
            return
        older = self.in_flight(spec) if plan.creates else []
        in_flight = [str(body["metadata"]["name"]) for body in older]
        for manifest in plan.creates:
            if in_flight:  # the new Release enters no stage one of these is in (domain.flow.steps)
                manifest["metadata"].setdefault("annotations", {})[FOLLOWS] = ",".join(in_flight)
                if not spec.every_commit:  # and takes the first one's place in a lock's queue
                    manifest["metadata"]["annotations"][SUPERSEDES] = ",".join(in_flight)
            self.resources.kube.create_unless_exists(custom_path("releases", namespace), manifest)
            in_flight.append(str(manifest["metadata"]["name"]))  # EveryCommit: the next follows it
        if plan.creates and not spec.every_commit:
            self.supersede(spec, older, str(plan.creates[-1]["metadata"]["name"]))
        self.record(path, plan.status)

    def supersede(self, spec: release_sources.SourceSpec, older: list[dict[str, Any]], newest: str) -> None:
        """NewestOnly: the source's older unfinished Releases (as listed before the newest was made)
        are told which one is newer; each gives way if it has not begun its stage (its own
        decision, on its next look)."""
        for body in older:
            meta = body["metadata"]
            if meta["name"] == newest or (meta.get("annotations") or {}).get(SUPERSEDED_BY) == newest:
                continue
            path = custom_path("releases", spec.namespace, meta["name"])
            self.resources.kube.merge_patch(path, {"metadata": {"annotations": {SUPERSEDED_BY: newest}}})

    def look(
        self, spec: release_sources.SourceSpec, status: Mapping[str, Any], now: datetime
    ) -> release_sources.Plan:
        assert self.mirrors is not None
        pipeline, _ = self.resources.get_pipeline_state(spec.namespace, spec.pipeline, with_ledger=False)
        repository = self.mirrors.open(
            spec.repository, git_credentials(self.resources, spec.namespace, pipeline)
        )
        head = repository.resolve(spec.branch)
        since = status.get("releasedCommit")
        commits = [] if since == head else repository.first_parents(head, since)[-MAX_COMMITS:]
        client = registry_client(self.resources, spec.namespace, pipeline, self.registry_timeout)
        candidates = release_sources.candidates_of(spec, commits)
        resolved = {commit: digests(spec, client, commit) for commit in candidates}
        # Only where a new Release would supersede one in flight does a commit with nothing to
        # release stand aside (else it is a Release as always, which says NothingToRelease).
        releasable = (
            {commit: self.releasable(repository, commit) for commit in candidates}
            if self.in_flight(spec)
            else None
        )
        plan = release_sources.plan(spec, status, head, commits, resolved, now, releasable)
        for manifest in plan.creates:  # who wrote it, for an approval policy's "not the author"
            author = repository.author_email(manifest["spec"]["source"]["revision"])
            if author:
                manifest["metadata"].setdefault("annotations", {})[approvals.COMMIT_AUTHOR] = author
        plan = replace(
            plan,
            status={**plan.status, "hotfixes": self.hotfixes(spec, status, repository, client, pipeline)},
        )
        if spec.ephemeral is None:
            return plan
        environments = EphemeralEnvironments(self.resources).look(
            spec,
            spec.ephemeral,
            status,
            repository,
            lambda commit: digests(spec, client, commit),
            pipeline,
            now,
        )
        return replace(plan, status={**plan.status, "ephemeral": environments})

    def hotfixes(
        self,
        spec: release_sources.SourceSpec,
        status: Mapping[str, Any],
        repository: Repository,
        client: Any,
        pipeline: Pipeline | Problem,
    ) -> list[dict[str, Any]]:
        """While an emergency (or a person) freezes the Pipeline's locked environments, each HOT-<n>
        branch's new head becomes a hotfix Release once CI pushed its images: the seed's hotfix
        flow with no YAML to write. Not after the freeze lifts, and not for a branch already merged
        back into the release branch."""
        made = list(status.get("hotfixes") or [])
        if isinstance(pipeline, Problem) or not any(
            self.resources.freeze_of(spec.namespace, e, self.clock()) for e in pipeline.locked_environments()
        ):
            return made
        heads = repository.heads()
        main = heads.get(spec.branch)
        for branch, commit in sorted(heads.items()):
            if not fnmatch.fnmatchcase(branch, release_sources.HOTFIX_BRANCHES):
                continue
            if any(h.get("commit") == commit for h in made) or (
                main and repository.is_ancestor(commit, main)
            ):
                continue
            images = release_sources.pushed(spec, digests(spec, client, commit))
            if images is None:
                continue  # CI has not pushed this commit's images yet
            manifest = release_sources.hotfix_manifest(spec, branch, commit, images)
            self.resources.kube.create_unless_exists(custom_path("releases", spec.namespace), manifest)
            made.append({"branch": branch, "commit": commit, "release": manifest["metadata"]["name"]})
        return made[-release_sources.HISTORY_LIMIT :]

    def in_flight(self, spec: release_sources.SourceSpec) -> list[dict[str, Any]]:
        """The source's Releases that have not finished (a newer one would supersede them)."""
        selector = f"{release_sources.LABEL_SOURCE}={label_value(spec.name)},!{FINISHED_LABEL}"
        return [
            older
            for older in self.resources.kube.list_items(custom_path("releases", spec.namespace), selector)
            if (older.get("status") or {}).get("phase") not in FINAL
        ]

    def releasable(self, repository: Repository, commit: str) -> bool:
        """Would a Release of this commit have a version? (New commits worth one since the last
        release tag, or a release tag on this very commit.)"""
        assert self.mirrors is not None
        result = next_release(repository, commit)
        return result.tag is not None or (
            result.base is not None and self.mirrors.tag_commit(repository, result.base) == commit
        )

    def hook(
        self, namespace: str, name: str, headers: Mapping[str, str], body: bytes
    ) -> release_sources.Hook:
        """A push webhook for this source: checked against its secret, then the next look is now.

        `namespace` and `name` are valid names (adapters.webhooks checks them); the secret is read
        in the namespace of the object found, and only that object is acted on."""
        path = custom_path("releasesources", namespace, name)
        source = self.resources.kube.get(path)
        if source is None:
            return release_sources.NO_SUCH_SOURCE
        raw_spec = source.get("spec") or {}
        ref = release_sources.webhook_secret(raw_spec)
        secret = self.webhook_token(source["metadata"]["namespace"], ref) if ref else None
        refused = release_sources.unauthenticated(ref, secret, headers, body)
        if refused is not None:
            return refused
        spec = release_sources.parse(name, namespace, raw_spec)
        if isinstance(spec, Problem):
            # The sender did its part; the source's own status names the problem for its owner.
            return release_sources.Hook(
                202, f"received, but this ReleaseSource cannot look: {spec.describe()}"
            )
        answer = release_sources.hook(spec, headers, body)
        if answer.look_now:
            self.record(path, {"lastCheckedAt": None})  # due at once: the next tick looks
        return answer

    def webhook_token(self, namespace: str, ref: tuple[str, str]) -> str | None:
        data = self.resources.read_secret(namespace, ref[0]) or {}
        encoded = data.get(ref[1])
        return base64.b64decode(encoded).decode() if encoded else None

    def record(self, path: str, status: Mapping[str, Any]) -> None:
        self.resources.kube.merge_patch(f"{path}/status", {"status": dict(status)})


def digests(spec: release_sources.SourceSpec, client: Any, commit: str) -> dict[str, str | None]:
    """The digest CI pushed for each artifact of `commit` (its commit-hash tag), None where none."""
    return {a.name: client.resolve(parse_repository(a.repository), a.tag_for(commit)) for a in spec.artifacts}
