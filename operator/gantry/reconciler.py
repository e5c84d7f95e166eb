"""The imperative shell around `domain.release.decide`: observe, decide, act, record.

One `reconcile` call walks a Release forward as far as it can go without waiting for the
world (a rollout, a Job, a lock, the next bake evaluation), then returns. State lives only in
the custom resources, so any call may be the first after a crash.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gantry.adapters import wiki
from gantry.adapters.alerts import Alerter
from gantry.adapters.git import GitError, Mirrors, Repository
from gantry.adapters.kube import ApiError
from gantry.adapters.metrics import Metrics
from gantry.adapters.prometheus import PrometheusSource
from gantry.adapters.registry import RegistryClient, RegistryError, parse_dockerconfigjson, parse_repository
from gantry.adapters.resources import Resources
from gantry.domain import locks, registry
from gantry.domain.analysis import Sample, evaluation_due, render
from gantry.domain.model import (
    MANAGED_STATUS_KEYS,
    AcquireLock,
    Alert,
    CreateJob,
    CreateTag,
    Effect,
    EffectError,
    Event,
    Observation,
    Phase,
    PreemptLock,
    PromoteArtifacts,
    Quarantine,
    RecordProduction,
    ReleaseLock,
    ReleaseView,
    Retrospective,
    SetImages,
    Source,
    Step,
    UnfreezeLock,
    current_run,
)
from gantry.domain.pipeline import Pipeline, Stage
from gantry.domain.problems import Problem
from gantry.domain.release import decide
from gantry.domain.timefmt import to_rfc3339
from gantry.domain.versions import changelog
from gantry.domain.workloads import ObservedWorkload, WorkloadRef
from gantry.versioning import next_release

log = logging.getLogger(__name__)

EventSink = Callable[[Mapping[str, Any], Event], None]
PERMANENT_STATUSES = frozenset({400, 403, 404, 422})


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class ReleaseReconciler:
    resources: Resources
    alerter: Alerter
    emit: EventSink
    clock: Callable[[], datetime] = field(default=utcnow)
    metrics: Metrics | None = None
    prometheus: PrometheusSource = field(default_factory=PrometheusSource)
    prometheus_url: str | None = None  # the operator-wide default; a Pipeline may name its own
    mirrors: Mirrors | None = None  # git sources; None: Releases' versions are taken as given
    max_steps: int = 8

    def reconcile(self, namespace: str, name: str) -> Phase | None:
        """Advance the Release; return its phase (None if it no longer exists)."""
        error: EffectError | None = None
        phase: Phase | None = None
        for _ in range(self.max_steps):
            body = self.resources.get_release(namespace, name)
            if body is None:
                return None
            release = ReleaseView.from_body(body)
            pipeline, observation = self.observe(release, error)
            plan = decide(release, observation)
            phase = Phase(plan.status["phase"])
            error = self.carry_out(release, pipeline, plan.effects)
            if error is not None:
                continue  # decide again, now knowing the API server refused that effect
            if plan.changed:
                try:
                    self.resources.patch_release_status(
                        namespace,
                        name,
                        body["metadata"]["resourceVersion"],
                        status_patch(release.status, plan.status),
                    )
                except ApiError as conflict:
                    if not conflict.conflict:
                        raise
                    continue  # someone wrote in between: our effects were idempotent, decide again
                self.announce(body, plan.status, plan.events)
            if plan.idle:
                break
        return phase

    def announce(self, body: Mapping[str, Any], status: Mapping[str, Any], events: tuple[Event, ...]) -> None:
        runs = status.get("stages") or [{}]
        for event in events:
            self.emit(body, event)
            if self.metrics is not None:
                meta, spec = body["metadata"], body.get("spec") or {}
                self.metrics.observe_event(
                    meta["namespace"],
                    spec.get("application", ""),
                    str(status.get("stage", "")),
                    event,
                    runs[-1],
                )

    # --- observing -------------------------------------------------------------------------------

    def observe(
        self, release: ReleaseView, error: EffectError | None
    ) -> tuple[Pipeline | Problem, Observation]:
        now = self.clock()
        pipeline, production = self.resources.get_pipeline_state(release.namespace, release.pipeline)
        run = current_run(release.status)
        stage = self._stage(release, pipeline, run)
        targets: dict[int, tuple[ObservedWorkload, ...]] = {}
        if stage is not None and (run is None or run.changes is None):
            try:
                targets = {t.index: self.resources.find_workloads(t) for t in stage.targets}
            except ApiError as refused:
                if refused.status != 403:
                    raise
                pipeline = forbidden(release, stage, refused)  # the stage cannot start: say why, not crash
        workloads: dict[WorkloadRef, ObservedWorkload] = {}
        for ref in sorted(_changed_workloads(release.status)):
            seen = self.resources.get_workload(ref)
            if seen is not None:
                workloads[ref] = seen
        lock = None
        if stage is not None and stage.lock:
            lock = self.resources.observe_lock(
                release.namespace, stage.environment, claimant(release), now, release.hotfix
            )
        job = None
        if run is not None and run.test_job:
            job_namespace, job_name = run.test_job.split("/", 1)
            job = self.resources.get_job(job_namespace, job_name)
        metrics = self._metrics(release, run, stage, now)
        source = self._source(release)
        seen_registry = self._registry(release, pipeline, run, now)
        observation = Observation(
            now, pipeline, targets, workloads, lock, job, error, metrics, production, source, seen_registry
        )
        return pipeline, observation

    def _registry(
        self, release: ReleaseView, pipeline: Pipeline | Problem, run: Any, now: datetime
    ) -> registry.ObservedRegistry | None:
        """While a stage is Promoting (and not backing off): what each wanted tag names now."""
        if run is None or run.step != Step.PROMOTING or not registry.retry_due(run, to_rfc3339(now)):
            return None
        ops = registry.wanted_tags(release, run)
        try:
            client = self.registry_client(release.namespace, pipeline)
            tags = {op.key: client.resolve(parse_repository(op.repository), op.tag) for op in ops}
        except RegistryError as failure:
            return registry.ObservedRegistry(error=str(failure), kind=failure.kind)
        return registry.ObservedRegistry(tags=tags)

    def registry_client(self, namespace: str, pipeline: Pipeline | Problem) -> RegistryClient:
        """A client with the credentials of the Pipeline's dockerconfigjson Secret and its TLS settings."""
        if isinstance(pipeline, Problem):
            return RegistryClient()
        config = pipeline.registry
        credentials: dict[str, tuple[str, str]] = {}
        if config.credentials_secret:
            data = self.resources.read_secret(namespace, config.credentials_secret)
            where = f"Secret {namespace}/{config.credentials_secret}"
            if data is None:
                raise RegistryError("auth", f"{where} (spec.registry.credentialsSecretRef) does not exist")
            if ".dockerconfigjson" not in data:
                raise RegistryError(
                    "auth", f"{where} has no .dockerconfigjson key (type kubernetes.io/dockerconfigjson)"
                )
            try:
                credentials = parse_dockerconfigjson(base64.b64decode(data[".dockerconfigjson"]))
            except (ValueError, KeyError) as bad:
                raise RegistryError("auth", f"{where}: .dockerconfigjson is not valid: {bad}") from bad
        return RegistryClient(credentials=credentials, tls=dict(config.tls))

    def _source(self, release: ReleaseView) -> Source | None:
        """Look at git only until the version is settled (status.version), then never again."""
        if self.mirrors is None or not release.repository or release.status.get("version"):
            return None
        try:
            pipeline = self.resources.get_pipeline(release.namespace, release.pipeline)
            with self.mirrors.lock(release.repository):
                return self._read_source(
                    release,
                    self.mirrors.open(release.repository, self.credentials(release.namespace, pipeline)),
                )
        except GitError as error:
            return Source(error=str(error))

    def _read_source(self, release: ReleaseView, repo: Repository) -> Source:
        assert self.mirrors is not None
        revision = repo.resolve(release.revision or "HEAD")
        hotfix_branch = None
        if release.hotfix:
            hotfix_branch = next(iter(repo.branches_containing(revision, "HOT-*")), None)
        result = next_release(repo, revision, patch_only=release.hotfix)
        if not release.version and result.base and self.mirrors.tag_commit(repo, result.base) == revision:
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
            )
        tag = release.version or result.tag
        tag_commit = self.mirrors.tag_commit(repo, tag) if tag else None
        return Source(
            revision,
            result.tag,
            result.base,
            tag,
            tag_commit,
            changelog=tuple(changelog(result.commits)),
            hotfix_branch=hotfix_branch,
        )

    def credentials(self, namespace: str, pipeline: Pipeline | Problem) -> tuple[str, str] | None:
        """HTTPS credentials from the Secret the Pipeline names (keys: username, password or token)."""
        if isinstance(pipeline, Problem) or not pipeline.git.credentials_secret:
            return None
        data = self.resources.read_secret(namespace, pipeline.git.credentials_secret) or {}
        decoded = {k: base64.b64decode(v).decode() for k, v in data.items()}
        secret = decoded.get("password") or decoded.get("token")
        return (decoded.get("username", "git"), secret) if secret else None

    def paperwork(self, release: ReleaseView, pipeline: Pipeline | Problem, effect: Retrospective) -> None:
        """The seed's HOT-<n> branch and HOT-<n> / ROLLBACK-<n> pages; one ticket per Release and kind."""
        if self.mirrors is None or isinstance(pipeline, Problem):
            log.info(
                "Release %s: %s retrospective due (no git configured): %s",
                release.key,
                effect.kind,
                effect.reason,
            )
            return
        now = to_rfc3339(self.clock())
        tickets: list[dict[str, Any]] = []

        def allocate_ticket(status: dict[str, Any]) -> dict[str, Any]:
            tickets[:] = wiki.allocate(
                list(status.get("tickets") or []), effect.kind, release.uid, release.key, now
            )
            return {"tickets": tickets}

        self.resources.update_ledger(release.namespace, release.pipeline, allocate_ticket)
        mine = next(t for t in tickets if t["kind"] == effect.kind and t["uid"] == release.uid)
        ticket, decided_at = str(mine["id"]), str(mine["at"])  # allocation time: a retry writes the same page
        credentials = self.credentials(release.namespace, pipeline)
        revision = None
        if release.repository:
            with self.mirrors.lock(release.repository):
                repo = self.mirrors.open(release.repository, credentials)
                revision = repo.resolve(release.revision or "HEAD")
                if effect.kind == "Emergency":
                    wiki.push_branch(repo.repo, ticket, revision)
        page_repository, template = _paperwork_target(pipeline)
        if page_repository:
            paper = wiki.Paperwork(
                effect.kind,
                ticket,
                release.application,
                release.key,
                release.version,
                revision,
                effect.decided_by,
                effect.reason,
                decided_at,
                list(release.status.get("changelog") or []),
            )
            page = wiki.render_page(paper, template or wiki.DEFAULT_TEMPLATE)
            wiki.Wiki(self.mirrors.root, lambda: credentials).write(
                page_repository, ticket, page, f"{ticket}: {effect.kind} of {release.key} ({release.version})"
            )
        self.emit(
            release.reference(),
            Event("Warning", "Retrospective", f"{ticket}: {effect.kind} paperwork in git"),
        )

    def _stage(self, release: ReleaseView, pipeline: Pipeline | Problem, run: Any) -> Stage | None:
        if run is not None and run.step not in (Step.PENDING, Step.WAITING_FOR_LOCK):
            stage: Stage = run.stage(release.pipeline)
            return stage
        if isinstance(pipeline, Problem):
            return None
        index = int(release.status.get("stageIndex", 0))
        return pipeline.stages[index] if index < len(pipeline.stages) else None

    def _metrics(self, release: ReleaseView, run: Any, stage: Stage | None, now: datetime) -> Sample | None:
        if run is None or run.step != Step.BAKING or stage is None or stage.analysis is None:
            return None
        spec = stage.analysis
        if not evaluation_due(list((run.analysis or {}).get("evaluations") or []), now, spec):
            return None
        url = spec.prometheus_url or self.prometheus_url
        if not url:
            return Sample(
                None, None, error="no Prometheus URL (set analysis.prometheus.url or GANTRY_PROMETHEUS_URL)"
            )
        namespace = stage.targets[0].namespace
        values = {
            "application": release.application,
            "namespace": namespace,
            "version": release.version,
            "window": spec.window,
        }
        return self.prometheus.sample(
            url, render(spec.error_rate_query, **values), render(spec.request_rate_query, **values)
        )

    # --- acting ----------------------------------------------------------------------------------

    def carry_out(
        self, release: ReleaseView, pipeline: Pipeline | Problem, effects: tuple[Effect, ...]
    ) -> EffectError | None:
        for effect in effects:
            try:
                self._carry_out(release, pipeline, effect)
            except GitError as error:
                log.warning("Release %s: %s failed: %s", release.key, type(effect).__name__, error)
                return EffectError(type(effect).__name__, str(error))
            except RegistryError as error:
                log.warning("Release %s: %s failed: %s", release.key, type(effect).__name__, error)
                return EffectError(type(effect).__name__, str(error), error.kind)
            except ApiError as error:
                if error.status in PERMANENT_STATUSES and isinstance(effect, SetImages | CreateJob):
                    log.warning("Release %s: %s refused: %s", release.key, type(effect).__name__, error)
                    return EffectError(type(effect).__name__, error.message or str(error))
                raise
        return None

    def _carry_out(self, release: ReleaseView, pipeline: Pipeline | Problem, effect: Effect) -> None:
        who = claimant(release)
        now = self.clock()
        namespace = release.namespace
        if isinstance(effect, AcquireLock):
            self.resources.update_lock(
                namespace,
                effect.environment,
                lambda state, lease: locks.acquire(state, who, now, lease, release.hotfix),
            )
        elif isinstance(effect, ReleaseLock):
            reason = effect.reason
            self.resources.update_lock(
                namespace,
                effect.environment,
                lambda state, lease: (locks.release(state, who, now, reason), None),
            )
        elif isinstance(effect, PreemptLock):
            self.resources.update_lock(
                namespace,
                effect.environment,
                lambda state, lease: (
                    locks.preempt(state, who, now, effect.reason, effect.hold, effect.freeze),
                    None,
                ),
            )
        elif isinstance(effect, UnfreezeLock):
            self.resources.update_lock(
                namespace, effect.environment, lambda state, lease: (locks.unfreeze(state), None)
            )
        elif isinstance(effect, SetImages):
            by_workload: dict[WorkloadRef, dict[str, str]] = {}
            for ref, container, image in effect.images:
                by_workload.setdefault(ref, {})[container] = image
            for ref, images in sorted(by_workload.items()):
                self.resources.set_images(ref, images)
        elif isinstance(effect, CreateJob):
            self.resources.create_job(effect.manifest)
        elif isinstance(effect, RecordProduction):
            self.resources.record_production(namespace, release.pipeline, effect.entry)
        elif isinstance(effect, Quarantine):
            self.resources.quarantine(
                namespace,
                release.pipeline,
                effect.digests,
                effect.release,
                effect.version,
                effect.reason,
                to_rfc3339(now),
            )
        elif isinstance(effect, CreateTag):
            assert self.mirrors is not None and release.repository
            with self.mirrors.lock(release.repository):
                repo: Repository = self.mirrors.open(
                    release.repository, self.credentials(namespace, pipeline)
                )
                existing = self.mirrors.tag_commit(repo, effect.tag)
                if existing is None:
                    self.mirrors.push_tag(repo, effect.tag, effect.revision, effect.message)
                    # Announced here, once it happened: a status write lost to a conflict must not lose it.
                    self.emit(
                        release.reference(),
                        Event(
                            "Normal",
                            "Tagged",
                            f"tagged {effect.revision[:12]} as "
                            f"{effect.tag} and pushed it to {release.repository}",
                        ),
                    )
                elif existing != effect.revision:
                    raise GitError(
                        f"tag {effect.tag} appeared on {existing[:12]} meanwhile; tags are never moved"
                    )
        elif isinstance(effect, PromoteArtifacts):
            client = self.registry_client(namespace, pipeline)
            for op in effect.tags:
                client.tag(parse_repository(op.source), op.digest, parse_repository(op.repository), op.tag)
                self.emit(
                    release.reference(),
                    Event("Normal", "RegistryTagged", f"{op.key} -> {op.digest} (artifact {op.artifact})"),
                )
        elif isinstance(effect, Retrospective):
            try:
                self.paperwork(release, pipeline, effect)
            except GitError as error:  # paperwork must never stop a rollback or an emergency
                log.warning("Release %s: %s paperwork failed: %s", release.key, effect.kind, error)
                self.emit(release.reference(), Event("Warning", "PaperworkFailed", f"{effect.kind}: {error}"))
        elif isinstance(effect, Alert):
            labels = {
                "release": release.key,
                "application": release.application,
                "version": release.version,
                "namespace": namespace,
            }
            config = pipeline.alerts if isinstance(pipeline, Pipeline) else None
            self.alerter.send(effect, labels, config)


def forbidden(release: ReleaseView, stage: Stage, error: ApiError) -> Problem:
    namespaces = ", ".join(sorted({t.namespace for t in stage.targets}))
    return Problem(
        "Forbidden",
        f"Pipeline {release.pipeline} {stage.field}.targets",
        f"Gantry may not read the stage's workloads ({namespaces}): {error.message}",
        "grant Gantry's ServiceAccount access there (Helm value rbac.workloadNamespaces), "
        "or target a namespace Gantry manages",
    )


def _paperwork_target(pipeline: Pipeline | Problem) -> tuple[str | None, str | None]:
    if isinstance(pipeline, Problem):
        return None, None
    return pipeline.git.wiki_repository, pipeline.git.page_template


def _changed_workloads(status: Mapping[str, Any]) -> set[WorkloadRef]:
    """Every workload any stage of this Release changed: rollbacks may need to look at all of them."""
    return {
        WorkloadRef.from_key(image["workload"])
        for run in status.get("stages") or ()
        for image in run.get("images") or ()
    }


def claimant(release: ReleaseView) -> locks.Claimant:
    return locks.Claimant(release.key, release.uid)


def status_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch that makes the managed keys equal `new` (null removes a key we dropped)."""
    return {k: new.get(k) for k in MANAGED_STATUS_KEYS if old.get(k) != new.get(k)}
