"""The Release's world in plain data: what the operator observes, the effects it may ask for,
the per-stage record kept in status, and the draft a tick builds. No decisions here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from gantry.domain.inputs import approvals
from gantry.domain.inputs.analysis import Sample
from gantry.domain.inputs.git_target import GitTarget
from gantry.domain.inputs.pipeline import Pipeline, Stage
from gantry.domain.inputs.workloads import ImageChange, ObservedWorkload, WorkloadRef
from gantry.domain.records import decisions
from gantry.domain.records.locks import Freeze
from gantry.domain.vocabulary.phases import Step
from gantry.domain.vocabulary.problems import Problem

# Keys of Release.status that `decide` owns; anything else there (e.g. Kopf's) is left alone.
MANAGED_STATUS_KEYS = (
    "phase",
    "stage",
    "stageIndex",
    "step",
    "reason",
    "message",
    "lock",
    "observedGeneration",
    "stages",
    "history",
    "conditions",
    "decisionsApplied",
    "version",
    "tag",
    "changelog",
    "pipeline",
    "decisionResults",
    "guard",
    "approvals",
)


# --- what the operator sees ----------------------------------------------------------------------


@dataclass(frozen=True)
class ObservedLock:
    held: bool
    position: int | None = None  # in the queue, 1 = next
    hotfixes_ahead: int = 0  # hotfix Releases queued ahead of us (they go first): why the position
    holder: str | None = None  # who holds it, when it is not us
    renewal_due: bool = False
    preempted: bool = False  # taken from us by a production rollback or an emergency
    frozen: Freeze | None = None  # the freeze in force that keeps us out (we are no hotfix, no override)
    heir_waiting: bool = False  # the Release that supersedes us waits in this queue (at our place)
    lost: str = ""  # when it is not ours: what happened to it, in words for the stage's message
    lease_seconds: int = 0  # spec.leaseSeconds (0: not read)
    too_short: str = ""  # spec.leaseSeconds too short for this operator to renew it in time


@dataclass(frozen=True)
class ObservedJob:
    name: str
    finished: bool
    succeeded: bool
    message: str = ""


class Failure(StrEnum):
    """Why an effect could not be carried out, in the one vocabulary every executor reports in.

    Blips (409 conflicts, 5xx, timeouts of the API server) are not failures: the tick is retried.
    """

    REFUSED = "Refused"  # the other side said no for good (422 Invalid, 404, a bad manifest, git refused)
    UNAVAILABLE = "Unavailable"  # unreachable or erroring: worth retrying later
    UNAUTHORIZED = "Unauthorized"  # credentials missing, wrong, or without the right (401/403)
    CONFLICT = "Conflict"  # the target already holds something else (a registry tag on another digest)


@dataclass(frozen=True)
class EffectFailure:
    """An effect that failed this tick; the next decision sees it once and acts on it."""

    effect: type[Any]  # the Effect's class
    failure: Failure
    message: str


@dataclass(frozen=True)
class ObservedRegistry:
    """What each wanted tag names now (None: no such tag), or why the registry could not be read."""

    tags: Mapping[str, str | None] = field(default_factory=dict)  # "<repository>:<tag>" -> digest
    error: str | None = None
    failure: Failure | None = None


@dataclass(frozen=True)
class Production:
    """The application's production record, kept in its Pipeline's status."""

    history: tuple[Mapping[str, Any], ...] = ()  # oldest first: release, uid, version, images, result, ...
    quarantine: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # digest -> why


@dataclass(frozen=True)
class Source:
    """The Release's git source, looked at until its version tag is settled."""

    revision: str | None = None  # spec.source.revision resolved to a commit
    next_version: str | None = None  # what the commits since the last release tag call for
    base: str | None = None  # that last release tag
    tag: str | None = None  # the tag wanted (spec.version, or next_version)
    tag_commit: str | None = None  # where that tag points, if it exists
    error: str | None = None  # origin unreachable, unknown revision, ...
    changelog: tuple[Mapping[str, str], ...] = ()  # release-worthy commits since the previous release
    hotfix_branch: str | None = None  # for a hotfix Release: the HOT-<n> branch its revision is on
    release_branch: str | None = None  # main (or master) when its revision is merged there
    after: str | None = None  # the older Release in flight its version counts from, said as such
    taken_by: str | None = None  # another Release in flight that carries spec.version already
    waiting_for: str | None = None  # a Release of an older commit that settles its version first


@dataclass(frozen=True)
class ObservedSync:
    """The GitOps tool's own view (an Argo CD Application, a Flux Kustomization)."""

    name: str  # e.g. Application argocd/shop-staging
    revision: str | None  # the commit it applied last
    applied: bool  # that revision holds the stage's commit
    detail: str  # its sync and health, in its own words


@dataclass(frozen=True)
class ObservedGit:
    """A git stage's branch, while the stage waits for what it committed to be applied."""

    head: str = ""
    commit: str | None = None  # the Release's latest commit for the stage (its trailers), if any
    holds: bool = False  # the file on the branch holds every digest the stage waits for
    sync: ObservedSync | None = None
    error: str | None = None  # git or the tool's object could not be read: why


@dataclass(frozen=True)
class Observation:
    now: datetime
    pipeline: Pipeline | Problem
    targets: Mapping[int, tuple[ObservedWorkload, ...]] = field(default_factory=dict)
    workloads: Mapping[WorkloadRef, ObservedWorkload] = field(default_factory=dict)
    lock: ObservedLock | None = None
    job: ObservedJob | None = None
    error: EffectFailure | None = None
    metrics: Sample | None = None  # only when a bake evaluation is due
    production: Production = field(default_factory=Production)
    source: Source | None = None  # only until status.version is settled
    registry: ObservedRegistry | None = None  # only while a stage is Promoting
    # Before a stage starts: the older Releases of its ReleaseSource (FOLLOWS) and the stage each
    # is in now, begun and not yet finished.
    ahead: tuple[tuple[str, str], ...] = ()
    # Superseded (NewestOnly): the stage index the newer Release has reached (past every stage
    # before production once it is Verified); None when it is gone or finished without passing.
    newer_reached: int | None = None
    # On the way into production: the locked environments frozen now (an emergency's freeze, or
    # one by hand), with the freeze. Production takes only hotfix Releases meanwhile.
    freezes: tuple[tuple[str, Any], ...] = ()
    git: ObservedGit | None = None  # a git stage rolling out (or back): its branch and the tool's sync


# Set by a ReleaseSource with policy NewestOnly on its older unfinished Releases when it makes a
# newer one: each gives up if it has not begun the stage it is at (domain.flow.steps.supersede).
SUPERSEDED_BY = "gantry.dev/superseded-by"
# Set by a ReleaseSource on the Release it makes: the source's Releases still in flight then. The
# new one enters a stage only once none of them is in that stage (a Release in a stage finishes it).
FOLLOWS = "gantry.dev/follows"
# Set with FOLLOWS by a source with policy NewestOnly: the older Releases this one supersedes. It
# takes the place of the first of them in a lock's queue, so new work never sends an application
# to the back of the line (domain.records.locks.acquire).
SUPERSEDES = "gantry.dev/supersedes"


@dataclass(frozen=True)
class ReleaseView:
    namespace: str
    name: str
    uid: str
    generation: int
    application: str
    pipeline: str
    version: str
    artifacts: Mapping[str, str]
    status: Mapping[str, Any]
    hotfix: bool = False
    repository: str | None = None
    revision: str | None = None
    superseded_by: str | None = None  # a newer Release of its ReleaseSource (policy NewestOnly)
    follows: tuple[str, ...] = ()  # older Releases of its ReleaseSource in flight when it was made
    supersedes: tuple[str, ...] = ()  # of those, the ones it takes the place of (NewestOnly)
    authors: tuple[str, ...] = ()  # its creator and its commit's author (domain.inputs.approvals)
    ephemeral_branch: str | None = None  # a feature branch's Release, to its ephemeral environment
    created_at: str = ""  # metadata.creationTimestamp: for a Release made on merge, the merge

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def passes_freeze(self) -> bool:
        """A hotfix, or a Release a person let through every freeze (an OverrideFreeze decision)."""
        return self.hotfix or decisions.overridden(self.status)

    def reference(self) -> dict[str, Any]:
        """Enough of the object for an Event's involvedObject."""
        return {
            "apiVersion": "gantry.dev/v1alpha1",
            "kind": "Release",
            "metadata": {"name": self.name, "namespace": self.namespace, "uid": self.uid},
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ReleaseView:
        meta, spec = body["metadata"], body.get("spec") or {}
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            generation=int(meta.get("generation") or 1),
            application=spec.get("application", ""),
            pipeline=spec.get("pipeline") or spec.get("application", ""),
            version=spec.get("version") or (body.get("status") or {}).get("version", ""),
            artifacts={a["name"]: a["image"] for a in spec.get("artifacts") or ()},
            status=body.get("status") or {},
            hotfix=bool(spec.get("hotfix", False)),
            repository=(spec.get("source") or {}).get("repository"),
            revision=(spec.get("source") or {}).get("revision"),
            superseded_by=(meta.get("annotations") or {}).get(SUPERSEDED_BY),
            follows=_names(meta, FOLLOWS),
            supersedes=_names(meta, SUPERSEDES),
            authors=approvals.authors(meta.get("annotations")),
            ephemeral_branch=(spec.get("ephemeral") or {}).get("branch"),
            created_at=str(meta.get("creationTimestamp") or ""),
        )


def _names(meta: Mapping[str, Any], annotation: str) -> tuple[str, ...]:
    return tuple(n for n in str((meta.get("annotations") or {}).get(annotation, "")).split(",") if n)


# --- what the operator does ----------------------------------------------------------------------


@dataclass(frozen=True)
class AcquireLock:
    environment: str


@dataclass(frozen=True)
class ReleaseLock:
    environment: str
    reason: str


@dataclass(frozen=True)
class GitSnapshot:
    """The seed's production branch: the stage's path taken whole from a tag on the source
    stage's branch (see domain.flow.gitops), never written anew."""

    tag: str  # e.g. shop/v1.2.0
    # Deploying: the Release whose commit on the source branch gets the tag (made once, never
    # moved). Restoring: None, the tag of the version returned to must exist.
    release: str | None = None
    stage: str | None = None  # that commit's stage (its Gantry-Stage trailer)


@dataclass(frozen=True)
class SetImages:
    images: tuple[tuple[WorkloadRef, str, str], ...]  # (workload, container, image)
    # A rollback: every workload gets its images back even if another refuses (each refusal is a
    # Warning Event, and the stage's outcome names what was not restored); a deploy stops instead.
    restore: bool = field(default=False, compare=False)
    # A stage deploying through git: the digests are committed there (see domain.flow.gitops), with
    # this message; the GitOps tool applies them and the rollout is observed as for a live patch.
    git: GitTarget | None = None
    commit: str = field(default="", compare=False)
    snapshot: GitSnapshot | None = None
    proposal: str | None = None  # proposal mode: the branch pushed instead, to be merged by a person
    stage: str = field(default="", compare=False)  # whose commits a rollback undoes (their trailers)


@dataclass(frozen=True)
class CreateJob:
    manifest: Mapping[str, Any]
    cluster: str = ""  # the stage's other cluster, if any: tests run where the stage deploys


@dataclass(frozen=True)
class DeleteJob:
    """Stop a test Job nobody waits for any more (its Pods go with it)."""

    namespace: str
    name: str
    cluster: str = ""


@dataclass(frozen=True)
class Alert:
    severity: str
    reason: str
    message: str


@dataclass(frozen=True)
class CreateTag:
    """An annotated release tag on the Release's revision, pushed to origin; never moved."""

    tag: str
    revision: str
    message: str


@dataclass(frozen=True)
class TagOp:
    """Make `repository:tag` name `digest`, copying it from `source` when the repositories differ."""

    artifact: str
    source: str
    digest: str
    repository: str
    tag: str

    @property
    def key(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclass(frozen=True)
class PromoteArtifacts:
    """Tag and copy by digest in the registry; never re-uploads a manifest's bytes differently."""

    tags: tuple[TagOp, ...]


@dataclass(frozen=True)
class PreemptLock:
    """Take an environment's lock by force; `hold` keeps it, `freeze` lets only hotfixes in after."""

    environment: str
    reason: str
    hold: bool
    freeze: bool


@dataclass(frozen=True)
class UnfreezeLock:
    environment: str
    why: str = "FreezeLifted: a hotfix reached production"


@dataclass(frozen=True)
class RecordProduction:
    """Add or update this Release's entry (by uid) in the application's production history."""

    entry: Mapping[str, Any]


@dataclass(frozen=True)
class ClaimProduction:
    """Record this Release as production's one Release in flight, unless another one is (then it
    fails with Conflict) or production runs a version at least as new (Refused)."""

    entry: Mapping[str, Any]


@dataclass(frozen=True)
class Quarantine:
    """Refuse these digests for the application until someone lifts the quarantine."""

    digests: tuple[str, ...]
    release: str
    version: str
    reason: str


@dataclass(frozen=True)
class Retrospective:
    """Hook for the seed's retrospective page (ROLLBACK-<n> / HOT-<n>); the git integration fills it in."""

    kind: str  # "Rollback" | "Emergency"
    reason: str
    decided_by: str = "gantry"


Effect = (
    AcquireLock
    | ReleaseLock
    | SetImages
    | CreateJob
    | DeleteJob
    | Alert
    | PreemptLock
    | UnfreezeLock
    | RecordProduction
    | ClaimProduction
    | Quarantine
    | Retrospective
    | CreateTag
    | PromoteArtifacts
)


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    status: dict[str, Any]
    effects: tuple[Effect, ...] = ()
    events: tuple[Event, ...] = ()
    changed: bool = False  # status differs from what is stored
    # A way-station whose effects only ask for or give back locks: the caller may decide the next
    # step from this status before writing it, and write both at once (Draft.passing).
    passing: bool = False

    @property
    def idle(self) -> bool:
        """Nothing to do until the world changes: the caller can stop looping."""
        return not self.changed and not any(isinstance(e, SetImages | CreateJob) for e in self.effects)


# --- the stage run: one stage's record in status.stages ------------------------------------------


# Who decided a stage no person had to approve (promotion: Auto): said so on its record.
AUTOMATIC = "gantry (automatic promotion)"


@dataclass(frozen=True)
class StageRun:
    index: int
    name: str
    environment: str
    step: Step
    started_at: str
    spec: Mapping[str, Any]  # the Pipeline stage as it was when the stage began
    lock: bool = False
    changes: tuple[ImageChange, ...] | None = None
    lock_acquired_at: str | None = None
    deployed_at: str | None = None
    rolled_out_at: str | None = None
    test_job: str | None = None
    test_started_at: str | None = None
    test_result: str | None = None
    soak_started_at: str | None = None  # soakSeconds: when the stage last became healthy
    unhealthy_since: str | None = None  # soakSeconds: when a workload stopped being healthy
    rolled_back_at: str | None = None
    finished_at: str | None = None
    reason: str | None = None
    message: str | None = None
    provenance: Mapping[str, Any] | None = None  # production: which stage run verified these digests
    analysis: Mapping[str, Any] | None = None  # production: bake start and evaluations
    rollback: Mapping[str, Any] | None = None  # production: the previous Release being re-applied
    decision_deadline: str | None = None
    decided_by: str | None = None  # who approved or failed forward, when a person ended the stage
    decision_reason: str | None = None  # the reason they gave (ReleaseDecision spec.reason), for the ledger
    registry: Mapping[str, Any] | None = None  # promotion: images deployed, tags verified, or retry state
    reverted_by: str | None = None  # a live stage's images were set back once, by this field manager
    git: Mapping[str, Any] | None = None  # a git stage: its commit, and who applied it

    @property
    def stage(self) -> Stage:
        """The stage as it was pinned when this run began (not the Pipeline as it is now)."""
        return Stage.from_spec(self.index, self.name, self.spec)

    @property
    def production(self) -> bool:
        return bool(self.spec.get("production"))

    def to_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": self.index,
            "name": self.name,
            "environment": self.environment,
            "step": str(self.step),
            "startedAt": self.started_at,
            "lock": self.lock,
            "spec": dict(self.spec),
        }
        if self.changes is not None:
            out["images"] = [
                {"workload": c.workload.key(), "container": c.container, "before": c.before, "after": c.after}
                for c in self.changes
            ]
        optional = {
            "lockAcquiredAt": self.lock_acquired_at,
            "deployedAt": self.deployed_at,
            "rolledOutAt": self.rolled_out_at,
            "testJob": self.test_job,
            "testStartedAt": self.test_started_at,
            "testResult": self.test_result,
            "soakStartedAt": self.soak_started_at,
            "unhealthySince": self.unhealthy_since,
            "rolledBackAt": self.rolled_back_at,
            "finishedAt": self.finished_at,
            "reason": self.reason,
            "message": self.message,
            "provenance": self.provenance,
            "analysis": self.analysis,
            "rollback": self.rollback,
            "decisionDeadline": self.decision_deadline,
            "decidedBy": self.decided_by,
            "decisionReason": self.decision_reason,
            "registry": self.registry,
            "revertedBy": self.reverted_by,
            "git": self.git,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        return out

    @classmethod
    def from_status(cls, raw: Mapping[str, Any]) -> StageRun:
        images = raw.get("images")
        changes = None
        if images is not None:
            changes = tuple(
                ImageChange(WorkloadRef.from_key(i["workload"]), i["container"], i["before"], i["after"])
                for i in images
            )
        return cls(
            index=int(raw["index"]),
            name=raw["name"],
            environment=raw["environment"],
            step=Step(raw["step"]),
            started_at=raw["startedAt"],
            spec=raw.get("spec") or {},
            lock=bool(raw.get("lock")),
            changes=changes,
            lock_acquired_at=raw.get("lockAcquiredAt"),
            deployed_at=raw.get("deployedAt"),
            rolled_out_at=raw.get("rolledOutAt"),
            test_job=raw.get("testJob"),
            test_started_at=raw.get("testStartedAt"),
            test_result=raw.get("testResult"),
            soak_started_at=raw.get("soakStartedAt"),
            unhealthy_since=raw.get("unhealthySince"),
            rolled_back_at=raw.get("rolledBackAt"),
            finished_at=raw.get("finishedAt"),
            reason=raw.get("reason"),
            message=raw.get("message"),
            provenance=raw.get("provenance"),
            analysis=raw.get("analysis"),
            rollback=raw.get("rollback"),
            decision_deadline=raw.get("decisionDeadline"),
            decided_by=raw.get("decidedBy"),
            decision_reason=raw.get("decisionReason"),
            registry=raw.get("registry"),
            reverted_by=raw.get("revertedBy"),
            git=raw.get("git"),
        )


def current_run(status: Mapping[str, Any]) -> StageRun | None:
    runs = status.get("stages") or []
    if not runs:
        return None
    run = StageRun.from_status(runs[-1])
    return run if run.index == int(status.get("stageIndex", 0)) else None
