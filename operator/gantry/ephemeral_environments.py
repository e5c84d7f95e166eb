"""The imperative shell around `domain.inputs.ephemeral`: per feature branch, make its environment (a
namespace labelled as the source's, copies of one stage's workloads, a one-stage Pipeline), a
Release of its head once CI pushed the images, and delete the environment when the branch is
merged, deleted or idle past its TTL.

Idempotent: every object is created if absent (409: made by an earlier look or another
operator); a namespace that exists without this source's label is never used nor deleted; what
was made and removed is recorded in the ReleaseSource's status.ephemeral.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from gantry.adapters.git import Repository
from gantry.adapters.kube import custom_path, label_selector, segment, workload_path
from gantry.adapters.resources import Resources
from gantry.domain.inputs import ephemeral, release_sources
from gantry.domain.inputs.ephemeral import Environment, EphemeralSpec
from gantry.domain.inputs.pipeline import Pipeline, Stage
from gantry.domain.inputs.release_sources import SourceSpec
from gantry.domain.vocabulary.problems import Problem
from gantry.domain.vocabulary.timefmt import to_rfc3339

COPIED_METADATA = ("labels", "annotations")


class NotOurs(Exception):
    """A namespace of that name exists and is not this source's environment."""


class EphemeralEnvironments:
    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        self.kube = resources.kube

    def look(
        self,
        source: SourceSpec,
        spec: EphemeralSpec,
        status: Mapping[str, Any],
        repository: Repository,
        resolve: Callable[[str], Mapping[str, str | None]],
        pipeline: Pipeline | Problem,
        now: datetime,
    ) -> dict[str, Any]:
        """One look at the branches: what status.ephemeral becomes. `resolve(commit)` is the digest
        CI pushed for each artifact of that commit (None where none yet)."""
        at = to_rfc3339(now)
        heads = repository.heads()
        main = heads.get(source.branch)
        recorded = [
            Environment.from_status(e) for e in (status.get("ephemeral") or {}).get("environments") or ()
        ]
        removed = list((status.get("ephemeral") or {}).get("removed") or ())
        problems: list[str] = []
        kept: dict[str, Environment] = {}
        for env in recorded:
            merged = (
                env.branch in heads and main is not None and repository.is_ancestor(heads[env.branch], main)
            )
            why = ephemeral.why_it_goes(env, heads, merged, now, spec)
            if why is None:
                kept[env.branch] = env
                continue
            self.remove(source, env)
            removed.append(
                {**ephemeral.removed_entry(env, why, at), "commit": heads.get(env.branch, env.commit)}
            )
        stage = ephemeral.source_stage(spec, pipeline) if isinstance(pipeline, Pipeline) else pipeline
        for branch, head in sorted(heads.items()):
            if not ephemeral.follows(spec, branch, source.branch) or (
                branch in kept and kept[branch].release.endswith(head[:12])
            ):
                continue
            if branch not in kept and (
                (main is not None and repository.is_ancestor(head, main))
                or any(r.get("branch") == branch and r.get("commit") == head for r in removed)
            ):
                continue  # merged already, or removed at this very commit: nothing new to try
            if isinstance(stage, Problem):
                problems.append(stage.describe())
                break
            env = kept.get(branch) or self.new_environment(source, spec, branch, at)
            if env.commit != head:
                env = replace(env, commit=head, updated_at=at, release="")
            kept[branch] = env
            digests = release_sources.pushed(source, resolve(head))
            if digests is None or self.busy(source, env):
                continue  # CI has not pushed this commit's images yet; or its last Release is still going
            try:
                self.provision(source, env, stage)
            except NotOurs as error:
                problems.append(str(error))
                continue
            kept[branch] = replace(env, release=self.release(source, env, head, digests))
        out: dict[str, Any] = {
            "environments": [e.to_status() for e in kept.values()],
            "removed": ephemeral.bounded(removed),
        }
        out["message"] = "; ".join(problems) if problems else None
        return out

    def new_environment(self, source: SourceSpec, spec: EphemeralSpec, branch: str, at: str) -> Environment:
        application = ephemeral.application_of(source.application, branch)
        namespace = ephemeral.namespace_of(spec, source.application, branch)
        return Environment(branch=branch, namespace=namespace, pipeline=application, updated_at=at)

    def labels(self, source: SourceSpec, env: Environment) -> dict[str, str]:
        return ephemeral.labels_of(source.name, env.branch)

    # --- making it ------------------------------------------------------------------------------

    def provision(self, source: SourceSpec, env: Environment, stage: Stage) -> None:
        labels = self.labels(source, env)
        self.namespace(source, env, labels)
        for target in stage.targets:
            self.copy_workloads(target.kind, target.namespace, target.name, target.match_labels, env, labels)
        manifest = ephemeral.pipeline_manifest(
            stage, env, ephemeral.application_of(source.application, env.branch), source.namespace, labels
        )
        self.kube.create_unless_exists(custom_path("pipelines", source.namespace), manifest)

    def namespace(self, source: SourceSpec, env: Environment, labels: Mapping[str, str]) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": env.namespace,
                "labels": dict(labels),
                "annotations": {ephemeral.BRANCH_ANNOTATION: env.branch},
            },
        }
        self.kube.create_unless_exists("/api/v1/namespaces", body)
        found = self.kube.get(f"/api/v1/namespaces/{segment(env.namespace)}") or {}
        if (found.get("metadata") or {}).get("labels", {}).get(ephemeral.LABEL_OF) != labels[
            ephemeral.LABEL_OF
        ]:
            raise NotOurs(
                f"namespace {env.namespace} exists and is not this ReleaseSource's environment for "
                f"{env.branch}: Gantry leaves it alone; set spec.ephemeral.namespace to a free name"
            )

    def copy_workloads(
        self,
        kind: str,
        namespace: str,
        name: str | None,
        match_labels: Mapping[str, str],
        env: Environment,
        labels: Mapping[str, str],
    ) -> None:
        """The stage's workloads, as they are, into the environment (created once; the Release then
        pins its digests)."""
        if name:
            found = [self.kube.get(workload_path(kind, namespace, name))]
        else:
            found = list(self.kube.list_items(workload_path(kind, namespace), label_selector(match_labels)))
        for body in found:
            if body is None:
                continue
            meta = body.get("metadata") or {}
            copied = {
                k: {n: v for n, v in (meta.get(k) or {}).items() if not n.startswith("gantry.dev/")}
                for k in COPIED_METADATA
            }
            copied["labels"].update(labels)
            manifest = {
                "apiVersion": "apps/v1",
                "kind": kind,
                "metadata": {"name": meta["name"], "namespace": env.namespace, **copied},
                "spec": body.get("spec") or {},
            }
            self.kube.create_unless_exists(workload_path(kind, env.namespace), manifest)

    def release(self, source: SourceSpec, env: Environment, head: str, digests: Mapping[str, str]) -> str:
        application = ephemeral.application_of(source.application, env.branch)
        # A Release as the source makes one, of the environment's application and Pipeline.
        mine = replace(source, application=application, pipeline=env.pipeline)
        manifest = release_sources.release_manifest(mine, head, digests)
        manifest["metadata"]["labels"] = self.labels(source, env)
        manifest["spec"]["ephemeral"] = {"branch": env.branch, "namespace": env.namespace}
        self.kube.create_unless_exists(custom_path("releases", source.namespace), manifest)
        return str(manifest["metadata"]["name"])

    def busy(self, source: SourceSpec, env: Environment) -> bool:
        """Is a Release of this environment still going? The next one waits for it (one at a time)."""
        return any(
            (r.get("status") or {}).get("phase") not in ephemeral.NOT_GOING
            for r in self.releases_of(source, env)
        )

    def releases_of(self, source: SourceSpec, env: Environment) -> list[dict[str, Any]]:
        labels = self.labels(source, env)
        return list(self.kube.list_items(custom_path("releases", source.namespace), label_selector(labels)))

    # --- taking it away -------------------------------------------------------------------------

    def remove(self, source: SourceSpec, env: Environment) -> None:
        """Its Releases still going are deleted (their records of finished ones stay), then its
        Pipeline and its namespace, if the namespace is still this source's."""
        for body in self.releases_of(source, env):
            if (body.get("status") or {}).get("phase") not in ephemeral.ENDED:
                self.kube.delete(custom_path("releases", source.namespace, body["metadata"]["name"]))
        self.kube.delete(custom_path("pipelines", source.namespace, env.pipeline))
        path = f"/api/v1/namespaces/{segment(env.namespace)}"
        found = self.kube.get(path) or {}
        labels = (found.get("metadata") or {}).get("labels") or {}
        if labels.get(ephemeral.LABEL_OF) == self.labels(source, env)[ephemeral.LABEL_OF]:
            self.kube.delete(path)
