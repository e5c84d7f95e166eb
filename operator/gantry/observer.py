"""What one Release's next decision needs to know, read from the world.

Each source is read only when the current step can use it: the Pipeline and its production
ledger always; the target workloads only while a stage has not recorded its images yet; the
lock only while the stage queues for it or works under it; the test Job only while testing;
Prometheus only when a bake evaluation is due; git only until the version is settled; the
registry only while a stage is promoting (and not backing off).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from gantry.adapters.clusters import ClusterError
from gantry.adapters.effects import Adapters
from gantry.adapters.git import GitError, Repository
from gantry.adapters.git_effects import git_credentials
from gantry.adapters.gitops_tools import read_sync
from gantry.adapters.kube import UNREACHABLE, ApiError, unreachable
from gantry.adapters.objects.pipelines import PipelineReads
from gantry.adapters.prometheus import PrometheusSource
from gantry.adapters.registry import RegistryError, parse_repository
from gantry.adapters.registry_effects import failure_of
from gantry.domain.flow import guard, registry
from gantry.domain.flow.gitops import image_key
from gantry.domain.flow.model import (
    EffectFailure,
    Observation,
    ObservedGit,
    ObservedLock,
    ObservedRegistry,
    ObservedSync,
    Production,
    ReleaseView,
    Source,
    StageRun,
    current_run,
)
from gantry.domain.flow.source import RELEASE_BRANCHES
from gantry.domain.inputs.analysis import Sample, evaluation_due, render
from gantry.domain.inputs.pipeline import Pipeline, Stage, pinned
from gantry.domain.inputs.versions import Reservation, changelog
from gantry.domain.inputs.workloads import ObservedWorkload, WorkloadRef
from gantry.domain.records import ledger, locks
from gantry.domain.vocabulary.phases import FINAL, IN_STAGE, Phase, Step
from gantry.domain.vocabulary.problems import Problem
from gantry.domain.vocabulary.reasons import Reason
from gantry.domain.vocabulary.timefmt import to_rfc3339
from gantry.versioning import next_release, unsettled_before

log = logging.getLogger(__name__)

# Steps that queue for the stage's lock or work under it (and so must see whether they hold it).
LOCKED_STEPS = frozenset(
    {Step.WAITING_FOR_LOCK, Step.DEPLOYING, Step.ROLLING_OUT, Step.TESTING, Step.BAKING, Step.SOAKING}
)


@dataclass
class Observer:
    adapters: Adapters
    clock: Callable[[], datetime]
    prometheus: PrometheusSource
    prometheus_url: str | None = None  # the operator-wide default; a Pipeline may name its own
    min_lease_seconds: float = 0.0  # a lease shorter than this cannot be renewed in time

    def observe(
        self, release: ReleaseView, error: EffectFailure | None, read: PipelineReads | None = None
    ) -> tuple[Pipeline | Problem, Observation]:
        """`read`: the Pipeline as one reconcile first read it. Its looks follow one another by
        milliseconds, and a stage takes its spec from the Release's pinned copy once it begins."""
        now = self.clock()
        resources = self.adapters.resources
        run = current_run(release.status)
        pipeline, production = resources.get_pipeline_state(
            release.namespace, release.pipeline, with_ledger=needs_ledger(release, run), read=read
        )
        production = self.without_abandoned(release, production)
        stage = current_stage(release, pipeline, run)
        # The lock before the workloads: when this look finds the lock ours, the images it reads
        # are those its last holder left, and the stage may record them as its rollback target
        # at once (domain.flow.steps.wait_for_lock).
        lock = self.lock(release, run, stage, now)
        targets: dict[int, tuple[ObservedWorkload, ...]] = {}
        if stage is not None and (run is None or run.changes is None):
            try:
                at = self.adapters.at(release.namespace, stage.cluster)
                targets = {t.index: at.find_workloads(t) for t in stage.targets}
            except ApiError as refused:
                if refused.status != 403:
                    raise
                pipeline = forbidden(release, stage, refused)  # the stage cannot start: say why, not crash
            except AWAY as away:
                pipeline = cluster_unavailable(stage, away)
        return pipeline, Observation(
            now=now,
            pipeline=pipeline,
            targets=targets,
            workloads=self.workloads(release.namespace, release.status, run),
            lock=lock,
            job=self.job(release, run),
            error=error,
            metrics=self.metrics(release, run, stage, now),
            production=production,
            source=self.source(release, pipeline),
            registry=self.registry(release, pipeline, run, now),
            ahead=self.ahead(release, run),
            newer_reached=self.newer_reached(release, pipeline),
            freezes=self.freezes(release, pipeline, stage, run, now),
            git=self.git(release, run, pipeline),
        )

    def git(
        self, release: ReleaseView, run: StageRun | None, pipeline: Pipeline | Problem
    ) -> ObservedGit | None:
        """A git stage rolling out (or back): its branch, the Release's commit there, whether the
        file holds what the stage waits for (a proposal merged), and the GitOps tool's sync."""
        targets = self.adapters.git_targets
        if run is None or run.changes is None or run.step not in (Step.ROLLING_OUT, Step.ROLLING_BACK):
            return None
        target = run.stage.git
        if target is None or targets is None:
            return None
        want = "after" if run.step == Step.ROLLING_OUT else "before"
        digests = [image_key(getattr(c, want)) for c in run.changes]
        resources = self.adapters.resources
        sync, revision = None, None
        try:
            if target.sync is not None:
                # Read where the stage deploys: Flux (and an Argo CD per cluster) run there.
                revision, detail = read_sync(
                    self.adapters.at(release.namespace, run.stage.cluster).kube, target.sync
                )
                sync = ObservedSync(target.sync.describe(), revision, False, detail)
            credentials = git_credentials(resources, release.namespace, pipeline)
            head, commit, holds, applied = targets.look(
                target, release.key, run.name, digests, revision, credentials
            )
        except (GitError, ApiError, ClusterError) as error:
            return ObservedGit(error=error.message if isinstance(error, ApiError) else str(error))
        if sync is not None:
            sync = replace(sync, applied=applied)
        return ObservedGit(head, commit, holds, sync)

    def freezes(
        self,
        release: ReleaseView,
        pipeline: Pipeline | Problem,
        stage: Stage | None,
        run: StageRun | None,
        now: datetime,
    ) -> tuple[tuple[str, locks.Freeze], ...]:
        """While the Release may be on its way into production (Verified and approved or promoted on
        its own, or at production's door): which of the Pipeline's locked environments are frozen
        by an emergency or by hand (the seed's stop: a frozen staging stops production too). A
        window or an incident freezes only its own environment: its lock keeps the Release queued.
        Read only then, and never for a hotfix or a Release let through on the record."""
        if release.passes_freeze or isinstance(pipeline, Problem) or pipeline.production is None:
            return ()
        status = release.status
        at_door = stage is not None and stage.production and (run is None or run.step == Step.PENDING)
        decided = len(status.get("decisions") or ()) > int(status.get("decisionsApplied", 0))
        leaving = status.get("phase") == Phase.VERIFIED and (decided or not pipeline.production.manual)
        if not (at_door or leaving):
            return ()  # e.g. Verified, waiting for an approval nobody has given yet: nothing to read
        found = (
            (environment, self.adapters.resources.freeze_of(release.namespace, environment, now))
            for environment in pipeline.locked_environments()
        )
        stopping = (locks.FreezeKind.EMERGENCY, locks.FreezeKind.BY_HAND)
        return tuple((e, freeze) for e, freeze in found if freeze is not None and freeze.kind in stopping)

    def ahead(self, release: ReleaseView, run: StageRun | None) -> tuple[tuple[str, str], ...]:
        """Before a stage starts: which older Releases of the same source are in a stage now."""
        if not release.follows or (run is not None and run.step != Step.PENDING):
            return ()
        found = []
        for name in release.follows:
            body = self.adapters.resources.get_release(release.namespace, name)
            if body is None:
                continue
            status = body.get("status") or {}
            their = current_run(status)
            if status.get("phase") in (Phase.VERIFIED, *FINAL) or their is None:
                continue
            if their.step in IN_STAGE or their.step == Step.ROLLING_BACK:
                found.append((name, their.name))
        return tuple(found)

    def newer_reached(self, release: ReleaseView, pipeline: Pipeline | Problem) -> int | None:
        """How far the Release that supersedes this one has come (domain.flow.steps.gives_way)."""
        if release.superseded_by is None or release.status.get("phase") in (Phase.VERIFIED, *FINAL):
            return None
        body = self.adapters.resources.get_release(release.namespace, release.superseded_by)
        status = (body or {}).get("status") or {}
        if body is None or status.get("phase") in FINAL:
            return None
        if status.get("phase") == Phase.VERIFIED:
            return len(pipeline.stages) if not isinstance(pipeline, Problem) else 1 << 16
        return int(status.get("stageIndex") or 0)

    def without_abandoned(self, release: ReleaseView, production: Production) -> Production:
        """Another Release holding production whose object is gone holds nothing: seen as Abandoned
        (the claim that follows records it so), so a deleted Release never blocks production."""
        other = ledger.in_flight(list(production.history), release.uid)
        if other is None or self.adapters.resources.alive(other):
            return production
        history = tuple(
            {**e, "result": ledger.Result.ABANDONED} if e is other else e for e in production.history
        )
        return replace(production, history=history)

    def workloads(
        self, namespace: str, status: Mapping[str, Any], current: StageRun | None
    ) -> dict[WorkloadRef, ObservedWorkload]:
        """The workloads the current stage changed; in production, every workload any stage of this
        Release changed (a production rollback also reverts the earlier locked stages). Reading
        only the current stage's keeps a stage's cost flat however many stages came before."""
        runs = status.get("stages") or ()
        if current is not None and not current.production:
            runs = runs[-1:]
        changed = {WorkloadRef.from_key(i["workload"]) for run in runs for i in run.get("images") or ()}
        seen = {ref: self.adapters.at(namespace, ref.cluster).get_workload(ref) for ref in sorted(changed)}
        return {ref: workload for ref, workload in seen.items() if workload is not None}

    def lock(
        self, release: ReleaseView, run: StageRun | None, stage: Stage | None, now: datetime
    ) -> ObservedLock | None:
        if stage is None or not stage.lock or run is None or run.step not in LOCKED_STEPS:
            return None
        claimant = locks.Claimant(release.key, release.uid)
        heir = f"{release.namespace}/{release.superseded_by}" if release.superseded_by else None
        seen = self.adapters.resources.observe_lock(
            release.namespace, stage.environment, claimant, now, release.passes_freeze, heir
        )
        lease = seen.lease_seconds
        if lease and lease < self.min_lease_seconds:
            why = (
                f"a {lease}s lease cannot be renewed in time by an operator that looks every "
                f"{self.min_lease_seconds / 3:g}s (renewals come at a third of the lease)"
            )
            return replace(seen, too_short=why)
        return seen

    def job(self, release: ReleaseView, run: StageRun | None) -> Any:
        if run is None or not run.test_job or run.step != Step.TESTING:
            return None
        namespace, name = run.test_job.split("/", 1)
        return self.adapters.at(release.namespace, run.stage.cluster).get_job(namespace, name)

    def metrics(
        self, release: ReleaseView, run: StageRun | None, stage: Stage | None, now: datetime
    ) -> Sample | None:
        """A bake's (or a guard's) next sample of production's error and request rates, once due."""
        if run is None or stage is None:
            return None
        if run.step == Step.BAKING and stage.analysis is not None:
            spec, evaluations = stage.analysis, (run.analysis or {}).get("evaluations")
        elif guard.active(release.status) and stage.guard is not None:
            spec, evaluations = stage.guard, (release.status.get("guard") or {}).get("evaluations")
        else:
            return None
        if not evaluation_due(list(evaluations or []), now, spec):
            return None
        url = spec.prometheus_url or self.prometheus_url
        if not url:
            return Sample(
                None, None, error="no Prometheus URL (set analysis.prometheus.url or GANTRY_PROMETHEUS_URL)"
            )
        values = {
            "application": release.application,
            "namespace": stage.targets[0].namespace,
            "version": release.version,
            "window": spec.window,
        }
        return self.prometheus.sample(
            url, render(spec.error_rate_query, **values), render(spec.request_rate_query, **values)
        )

    def source(self, release: ReleaseView, pipeline: Pipeline | Problem) -> Source | None:
        """Look at git only until the version is settled (status.version), then never again."""
        mirrors = self.adapters.mirrors
        if (
            mirrors is None
            or not release.repository
            or release.status.get("version")
            or release.ephemeral_branch
        ):
            return None
        try:
            credentials = git_credentials(self.adapters.resources, release.namespace, pipeline)
            reserved = self.adapters.resources.reserved_versions(release.namespace, release.application)
            with mirrors.lock(release.repository):
                repo = mirrors.open(release.repository, credentials)
                return read_source(
                    release, repo, mirrors.tag_commit, [r for r in reserved if r.release != release.name]
                )
        except GitError as error:
            return Source(error=str(error))

    def registry(
        self, release: ReleaseView, pipeline: Pipeline | Problem, run: StageRun | None, now: datetime
    ) -> ObservedRegistry | None:
        """While a stage is Promoting (and not backing off): what each wanted tag names now."""
        if run is None or run.step != Step.PROMOTING or not registry.retry_due(run, to_rfc3339(now)):
            return None
        ops = registry.wanted_tags(release, run)
        try:
            client = self.adapters.registry(release.namespace, pipeline)
            tags = {op.key: client.resolve(parse_repository(op.repository), op.tag) for op in ops}
        except RegistryError as failure:
            return ObservedRegistry(error=str(failure), failure=failure_of(failure))
        return ObservedRegistry(tags=tags)


def read_source(
    release: ReleaseView,
    repo: Repository,
    tag_commit: Callable[[Repository, str], str | None],
    reserved: Sequence[Reservation] = (),
) -> Source:
    revision = repo.resolve(release.revision or "HEAD")
    hotfix_branch = None
    if release.hotfix:
        hotfix_branch = next(iter(repo.branches_containing(revision, "HOT-*")), None)
    release_branch = next((b for b in RELEASE_BRANCHES if repo.branches_containing(revision, b)), None)
    first = None if release.hotfix or release.version else unsettled_before(repo, revision, reserved)
    if first is not None:
        return Source(revision, waiting_for=first.release)
    result = next_release(repo, revision, patch_only=release.hotfix, reserved=reserved)
    taken = next((r for r in reserved if release.version and r.version == release.version), None)
    if not release.version and result.base and tag_commit(repo, result.base) == revision:
        # Already released at this very commit (by us before a crash, or by CI): reuse that tag.
        earlier = next_release(repo, revision, patch_only=release.hotfix, skip=result.base)
        return Source(
            revision,
            result.base,
            result.base,
            result.base,
            revision,
            changelog=tuple(changelog(earlier.commits)),
            hotfix_branch=hotfix_branch,
            release_branch=release_branch,
        )
    tag = release.version or result.tag
    return Source(
        revision,
        result.tag,
        result.base,
        tag,
        tag_commit(repo, tag) if tag else None,
        changelog=tuple(changelog(result.commits)),
        hotfix_branch=hotfix_branch,
        release_branch=release_branch,
        after=f"{result.after.version} ({result.after.release}, in flight)" if result.after else None,
        taken_by=taken.release if taken is not None else None,
    )


def needs_ledger(release: ReleaseView, run: StageRun | None) -> bool:
    """The production ledger decides entering a stage (quarantine, provenance, forward-only),
    everything in production, and people's decisions; a stage rolling out or testing before
    production does not need it (the Pipeline's mirror is enough there)."""
    status = release.status
    if len(status.get("decisions") or ()) > int(status.get("decisionsApplied", 0)):
        return True
    return run is None or run.production or run.step in (Step.PENDING, Step.WAITING_FOR_LOCK)


def current_stage(release: ReleaseView, live: Pipeline | Problem, run: StageRun | None) -> Stage | None:
    """The stage the Release is in: its run's copy once it has one, else the pinned Pipeline's (the
    same stage the decision reads: lock observations and lock requests always agree)."""
    if run is not None:
        return run.stage
    pipeline = pinned(release.status.get("pipeline"), live, release.pipeline, release.application)
    if isinstance(pipeline, Problem):
        return None
    index = int(release.status.get("stageIndex", 0))
    return pipeline.stages[index] if index < len(pipeline.stages) else None


# A stage's other cluster that cannot be used: its Secret, its kubeconfig, or no answer.
AWAY: tuple[type[BaseException], ...] = (ClusterError, *UNREACHABLE)


def cluster_unavailable(stage: Stage, error: BaseException) -> Problem:
    """The stage's other cluster cannot be reached: the stage cannot start; say which and why."""
    said = str(error) if isinstance(error, ClusterError) else unreachable(stage.cluster, error)
    return Problem(
        Reason.CLUSTER_UNAVAILABLE,
        f"{stage.field}.cluster.kubeconfigSecretRef",
        f"cluster {stage.cluster}: {said}",
        "create the Secret (the Pipeline's namespace) with a kubeconfig for that cluster under the key "
        "kubeconfig, or correct its name",
    )


def forbidden(release: ReleaseView, stage: Stage, error: ApiError) -> Problem:
    namespaces = ", ".join(sorted({t.namespace for t in stage.targets}))
    return Problem(
        Reason.FORBIDDEN,
        f"Pipeline {release.pipeline} {stage.field}.targets",
        f"Gantry may not read the stage's workloads ({namespaces}): {error.message}",
        "grant Gantry's ServiceAccount access there (Helm value rbac.workloadNamespaces), "
        "or target a namespace Gantry manages",
    )
