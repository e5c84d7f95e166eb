"""The Pipeline: an application's ordered stages and the workloads each stage re-pins."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gantry.domain.inputs import approvals
from gantry.domain.inputs.analysis import AnalysisSpec, OnBreach
from gantry.domain.inputs.approvals import ApprovalPolicy
from gantry.domain.inputs.git_target import GitTarget, parse_git_target, safe_path
from gantry.domain.vocabulary.problems import Problem
from gantry.domain.vocabulary.reasons import Reason

WORKLOAD_KINDS = ("Deployment", "StatefulSet")
DEFAULT_ROLLOUT_TIMEOUT = 600
DEFAULT_TEST_TIMEOUT = 1800
DEFAULT_REGISTRY_TIMEOUT = 600


@dataclass(frozen=True)
class Target:
    """Workloads in one namespace: one by name, or all matching a label selector."""

    index: int
    namespace: str
    kind: str = "Deployment"
    name: str | None = None
    match_labels: Mapping[str, str] = field(default_factory=dict)
    containers: tuple[str, ...] = ()
    cluster: str = ""  # its stage's other cluster (kubeconfig Secret name); "" for this one

    def describe(self) -> str:
        where = f" in cluster {self.cluster}" if self.cluster else ""
        if self.name:
            return f"{self.kind} {self.namespace}/{self.name}{where}"
        labels = ",".join(f"{k}={v}" for k, v in sorted(self.match_labels.items()))
        return f"{self.kind}s in {self.namespace} with labels {labels}{where}"

    def to_spec(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "kind": self.kind,
            **({"name": self.name} if self.name else {"selector": {"matchLabels": dict(self.match_labels)}}),
            **({"containers": list(self.containers)} if self.containers else {}),
        }


@dataclass(frozen=True)
class TestSpec:
    job_template: Mapping[str, Any]
    namespace: str | None = None
    timeout_seconds: int = DEFAULT_TEST_TIMEOUT


@dataclass(frozen=True)
class RegistryStage:
    """Registry promotion when a Release enters the stage (see domain.flow.registry)."""

    repository: str | None = None  # copy to here; `{name}` = the artifact repository's last segment
    timeout_seconds: int = DEFAULT_REGISTRY_TIMEOUT  # how long an unreachable registry is retried

    def to_spec(self) -> dict[str, Any]:
        return {
            **({"repository": self.repository} if self.repository else {}),
            "timeoutSeconds": self.timeout_seconds,
        }


@dataclass(frozen=True)
class Stage:
    index: int
    name: str
    environment: str
    targets: tuple[Target, ...]
    lock: bool = False
    production: bool = False
    rollback_on_failure: bool = True
    rollout_timeout_seconds: int = DEFAULT_ROLLOUT_TIMEOUT
    test: TestSpec | None = None
    promotion: str = "Auto"  # Manual: a Release enters only with an Approve decision (production's default)
    analysis: AnalysisSpec | None = None  # the error-rate bake: production, or a canary stage before it
    guard: AnalysisSpec | None = None  # production only: watched after the bake, until replaced
    registry: RegistryStage | None = None
    soak_seconds: int = 0  # before production: how long a passed version must run healthy here
    git: GitTarget | None = None  # deploy by a commit to git (a GitOps tool applies it), not a live patch
    # Another cluster: the kubeconfig Secret (the Pipeline's namespace) through which the stage's
    # workloads and test Jobs are reached; locks and records stay here.
    cluster: str = ""
    approval: ApprovalPolicy | None = None  # a Manual stage: how many approve, who, not the author

    @property
    def manual(self) -> bool:
        """Does a Release need a person's Approve decision to enter this stage?"""
        return self.promotion == "Manual"

    @property
    def field(self) -> str:
        return f"spec.stages[{self.index}]"

    @property
    def test_namespace(self) -> str:
        if self.test is not None and self.test.namespace:
            return self.test.namespace
        return self.targets[0].namespace

    def to_spec(self) -> dict[str, Any]:
        """The stage as plain data (its name aside), so a stage run is self-contained in status
        even if the Pipeline changes later; `from_spec` reads it back."""
        out: dict[str, Any] = {
            "environment": self.environment,
            "lock": self.lock,
            "rollbackOnFailure": self.rollback_on_failure,
            "rolloutTimeoutSeconds": self.rollout_timeout_seconds,
            "targets": [t.to_spec() for t in self.targets],
        }
        if self.test is not None:
            out["test"] = {
                "jobTemplate": self.test.job_template,
                "timeoutSeconds": self.test.timeout_seconds,
                **({"namespace": self.test.namespace} if self.test.namespace else {}),
            }
        if self.production:
            out["production"] = True
        if self.production or self.manual:
            out["promotion"] = self.promotion
        if self.soak_seconds:
            out["soakSeconds"] = self.soak_seconds
        if self.approval is not None:
            out["approval"] = self.approval.to_spec()
        if self.analysis is not None:
            out["analysis"] = self.analysis.to_spec()
        if self.guard is not None:
            out["guard"] = self.guard.to_spec()
        if self.registry is not None:
            out["registry"] = self.registry.to_spec()
        if self.git is not None:
            out["git"] = self.git.to_spec()
        if self.cluster:
            out["cluster"] = {"kubeconfigSecretRef": {"name": self.cluster}}
        return out

    @classmethod
    def from_spec(cls, index: int, name: str, spec: Mapping[str, Any]) -> Stage:
        """A stage run's recorded spec as a Stage; it was valid when the run began, so it still is."""
        stage = _parse_stage(index, {**spec, "name": name})
        if isinstance(stage, Problem):
            raise ValueError(f"recorded stage {name!r} is not a valid stage: {stage.describe()}")
        return stage


@dataclass(frozen=True)
class AlertConfig:
    labels: Mapping[str, str] = field(default_factory=dict)
    alertmanager_url: str | None = None
    webhook_secret: tuple[str, str] | None = None  # (Secret name, key) holding the webhook URL
    webhook_format: str = "Slack"


@dataclass(frozen=True)
class GitConfig:
    credentials_secret: str | None = None  # a Secret with username and password (or token) for HTTPS origins
    wiki_repository: str | None = None  # a git-backed wiki for the HOT-<n> / ROLLBACK-<n> pages
    page_template: str | None = None
    # The production ledger and the decisions, one JSON line each, appended to a file in git:
    # an audit trail that outlives the cluster and the status lists' caps.
    ledger: GitTarget | None = None


@dataclass(frozen=True)
class RegistryConfig:
    credentials_secret: str | None = None  # a kubernetes.io/dockerconfigjson Secret (same namespace)
    tls: Mapping[str, str] = field(default_factory=dict)  # host -> Verify | SkipVerify | Disabled


@dataclass(frozen=True)
class Pipeline:
    name: str
    application: str
    stages: tuple[Stage, ...]
    alerts: AlertConfig = field(default_factory=AlertConfig)
    git: GitConfig = field(default_factory=GitConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    tag_stage: int = 0  # the stage whose passed tests earn the version tag (spec.tagAfter; the first)
    require_tag: bool = True  # spec.requireTag: production takes only versions tagged in git

    def pre_production(self) -> tuple[Stage, ...]:
        """The stages a Release must pass to be Verified (everything before production)."""
        return tuple(s for s in self.stages if not s.production)

    @property
    def production(self) -> Stage | None:
        return self.stages[-1] if self.stages and self.stages[-1].production else None

    def locked_environments(self) -> tuple[str, ...]:
        """The environments an emergency or a production rollback takes over (staging, usually)."""
        return tuple(dict.fromkeys(s.environment for s in self.pre_production() if s.lock))

    def summary(self) -> str:
        stages = " → ".join(s.name + (" (lock)" if s.lock else "") for s in self.stages)
        return stages if self.require_tag or self.production is None else f"{stages} (untagged allowed)"


def pin(pipeline: Pipeline) -> dict[str, Any]:
    """The stages as a Release pins them when it starts (status.pipeline): later edits of the
    Pipeline do not change the stages, environments, locks, targets or tagging point of a Release
    in flight."""
    out: dict[str, Any] = {"stages": [{**stage.to_spec(), "name": stage.name} for stage in pipeline.stages]}
    if pipeline.tag_stage:
        out["tagAfter"] = pipeline.stages[pipeline.tag_stage].name
    return out


def pinned(
    snapshot: Mapping[str, Any] | None, live: Pipeline | Problem, name: str, application: str
) -> Pipeline | Problem:
    """The Pipeline a Release runs on: its pinned stages with the live Pipeline's settings (alerts,
    git, registry), or the live Pipeline while nothing is pinned yet."""
    if not snapshot:
        return live
    base = live if isinstance(live, Pipeline) else Pipeline(name, application, ())
    raw = snapshot.get("stages") or ()
    stages = tuple(Stage.from_spec(i, str(s["name"]), s) for i, s in enumerate(raw))
    tag_after = snapshot.get("tagAfter")
    tag_stage = next((s.index for s in stages if s.name == tag_after), 0)
    return replace(base, stages=stages, tag_stage=tag_stage)


def differs(snapshot: Mapping[str, Any] | None, live: Pipeline | Problem) -> bool:
    """Has the Pipeline's list of stages changed since the Release pinned it?"""
    return bool(snapshot) and (isinstance(live, Problem) or snapshot != pin(live))


def parse_pipeline(name: str, spec: Mapping[str, Any]) -> Pipeline | Problem:
    """Build a Pipeline from its spec, or say which field is wrong and how to fix it."""
    raw_stages = spec.get("stages") or []
    if not isinstance(raw_stages, list) or not raw_stages:
        return Problem(
            Reason.INVALID_PIPELINE,
            "spec.stages",
            "a Pipeline needs at least one stage",
            "list the stages in order",
        )
    stages: list[Stage] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_stages):
        stage = _parse_stage(index, raw)
        if isinstance(stage, Problem):
            return stage
        if stage.name in seen:
            return Problem(
                Reason.INVALID_PIPELINE,
                f"spec.stages[{index}].name",
                f"stage name {stage.name!r} is used twice",
                "give every stage a unique name",
            )
        seen.add(stage.name)
        stages.append(stage)
    resolved = _resolve_promotions(stages)
    if isinstance(resolved, Problem):
        return resolved
    stages = resolved
    production = [s for s in stages if s.production]
    if len(production) > 1 or (production and production[0] is not stages[-1]):
        return Problem(
            Reason.INVALID_PIPELINE,
            "spec.stages",
            "only the last stage may be the production stage",
            "set production: true on the last stage only",
        )
    soaking = next((s for s in stages if s.production and s.soak_seconds), None)
    if soaking is not None:
        return Problem(
            Reason.INVALID_PIPELINE,
            f"{soaking.field}.soakSeconds",
            "soakSeconds holds a version before the next stage takes it; production has none after it",
            "drop soakSeconds from the production stage (its analysis is the bake)",
        )
    tag_stage = _tag_stage(spec.get("tagAfter"), stages)
    if isinstance(tag_stage, Problem):
        return tag_stage
    raw_alerts = spec.get("alerts") or {}
    secret = (raw_alerts.get("webhook") or {}).get("urlSecretRef") or {}
    alerts = AlertConfig(
        labels={str(k): str(v) for k, v in (raw_alerts.get("labels") or {}).items()},
        alertmanager_url=(raw_alerts.get("alertmanager") or {}).get("url"),
        webhook_secret=(str(secret["name"]), str(secret.get("key", "url"))) if secret.get("name") else None,
        webhook_format=str((raw_alerts.get("webhook") or {}).get("format", "Slack")),
    )
    raw_git = spec.get("git") or {}
    raw_ledger = raw_git.get("ledger") or {}
    ledger_path = str(raw_ledger.get("path") or f"ledger/{spec.get('application') or name}.jsonl")
    if raw_ledger and not safe_path(ledger_path):
        return Problem(
            Reason.INVALID_PIPELINE,
            "spec.git.ledger.path",
            f"{ledger_path!r} is not a relative path inside the repository",
            "use a path like ledger/shop.jsonl (no leading /, no ..)",
        )
    git = GitConfig(
        credentials_secret=(raw_git.get("credentialsSecretRef") or {}).get("name"),
        wiki_repository=(raw_git.get("wiki") or {}).get("repository"),
        page_template=(raw_git.get("wiki") or {}).get("template"),
        ledger=GitTarget(str(raw_ledger["repository"]), str(raw_ledger.get("branch") or "main"), ledger_path)
        if raw_ledger.get("repository")
        else None,
    )
    raw_registry = spec.get("registry") or {}
    registry = RegistryConfig(
        credentials_secret=(raw_registry.get("credentialsSecretRef") or {}).get("name"),
        tls={str(h["host"]): str(h.get("tls", "Verify")) for h in raw_registry.get("hosts") or ()},
    )
    return Pipeline(
        name=name,
        application=str(spec.get("application") or name),
        stages=tuple(stages),
        alerts=alerts,
        git=git,
        registry=registry,
        tag_stage=tag_stage,
        require_tag=spec.get("requireTag") is not False,
    )


def _tag_stage(tag_after: Any, stages: list[Stage]) -> int | Problem:
    """spec.tagAfter: the stage whose passed tests earn the tag (default: the first, dev)."""
    if not tag_after:
        return 0
    found = next((s for s in stages if s.name == tag_after), None)
    if found is None or found.production:
        names = ", ".join(s.name for s in stages if not s.production)
        return Problem(
            Reason.INVALID_PIPELINE,
            "spec.tagAfter",
            f"{tag_after!r} is no stage before production",
            f"name one of: {names}",
        )
    return found.index


def _parse_stage(index: int, raw: Any) -> Stage | Problem:
    where = f"spec.stages[{index}]"
    if not isinstance(raw, Mapping) or not raw.get("name"):
        return Problem(Reason.INVALID_PIPELINE, f"{where}.name", "a stage needs a name", "add name: <stage>")
    raw_targets = raw.get("targets") or []
    if not raw_targets:
        return Problem(
            Reason.INVALID_PIPELINE,
            f"{where}.targets",
            "a stage needs at least one target workload",
            "add targets: [{namespace: ..., name: ...}]",
        )
    targets: list[Target] = []
    for t_index, raw_target in enumerate(raw_targets):
        target = _parse_target(f"{where}.targets[{t_index}]", t_index, raw_target)
        if isinstance(target, Problem):
            return target
        targets.append(target)
    test = None
    raw_test = raw.get("test")
    if raw_test:
        template = raw_test.get("jobTemplate")
        if not isinstance(template, Mapping):
            return Problem(
                Reason.INVALID_TEST_JOB_TEMPLATE,
                f"{where}.test.jobTemplate",
                "the test has no Job template",
                "set test.jobTemplate to a Job's metadata and spec",
            )
        test = TestSpec(
            job_template=template,
            namespace=raw_test.get("namespace"),
            timeout_seconds=int(raw_test.get("timeoutSeconds", DEFAULT_TEST_TIMEOUT)),
        )
    analysis = None
    if raw.get("analysis") is not None:
        try:
            analysis = AnalysisSpec.from_spec(raw["analysis"])
        except (TypeError, ValueError) as error:
            return Problem(
                Reason.INVALID_PIPELINE,
                f"{where}.analysis",
                str(error),
                "see the Pipeline CRD's analysis fields",
            )
    guard = _parse_guard(where, raw)
    if isinstance(guard, Problem):
        return guard
    registry = None
    if raw.get("registry") is not None:
        raw_registry = raw["registry"] or {}
        registry = RegistryStage(
            repository=raw_registry.get("repository") or None,
            timeout_seconds=int(raw_registry.get("timeoutSeconds", DEFAULT_REGISTRY_TIMEOUT)),
        )
    git = parse_git_target(f"{where}.git", raw.get("git"))
    if isinstance(git, Problem):
        return git
    promotion = str(raw.get("promotion") or ("Manual" if raw.get("production") else "Auto"))
    approval = approvals.parse(f"{where}.approval", raw.get("approval"))
    if isinstance(approval, Problem):
        return approval
    if approval is not None and promotion != "Manual":
        return Problem(
            Reason.INVALID_PIPELINE,
            f"{where}.approval",
            f"stage {raw['name']} promotes on its own (promotion: {promotion}), so nobody approves it",
            "set promotion: Manual on the stage, or remove its approval policy",
        )
    cluster = str(((raw.get("cluster") or {}).get("kubeconfigSecretRef") or {}).get("name") or "")
    if cluster:
        targets = [replace(t, cluster=cluster) for t in targets]
    return Stage(
        index=index,
        name=str(raw["name"]),
        environment=str(raw.get("environment") or raw["name"]),
        targets=tuple(targets),
        lock=bool(raw.get("lock", False)),
        production=bool(raw.get("production", False)),
        rollback_on_failure=bool(raw.get("rollbackOnFailure", True)),
        rollout_timeout_seconds=int(raw.get("rolloutTimeoutSeconds", DEFAULT_ROLLOUT_TIMEOUT)),
        test=test,
        promotion=promotion,
        analysis=analysis,
        guard=guard,
        registry=registry,
        soak_seconds=int(raw.get("soakSeconds") or 0),
        git=git,
        cluster=cluster,
        approval=approval,
    )


def _resolve_promotions(stages: list[Stage]) -> list[Stage] | Problem:
    """Each git.promoteFrom names an earlier git stage of the same repository and path on another
    branch (staging on main, production on production): the source is filled in from it."""
    out = []
    for stage in stages:
        target = stage.git
        if target is None or target.promote_from is None:
            out.append(stage)
            continue
        source = next((s for s in stages[: stage.index] if s.name == target.promote_from), None)
        where = f"{stage.field}.git.promoteFrom"
        if source is None or source.git is None:
            return Problem(
                Reason.INVALID_PIPELINE,
                where,
                f"{target.promote_from!r} is no earlier stage that deploys through git",
                "name the stage whose commits this branch takes (e.g. staging, deploying to main)",
            )
        theirs = source.git
        if (theirs.repository, theirs.path) != (
            target.repository,
            target.path,
        ) or theirs.branch == target.branch:
            return Problem(
                Reason.INVALID_PIPELINE,
                where,
                f"stage {source.name} writes {theirs.describe()}; a promotion takes the same path "
                "of the same repository to another branch",
                f"give both stages repository {theirs.repository} and path {theirs.path}, and this one "
                "its own branch",
            )
        out.append(replace(stage, git=replace(target, source=theirs)))
    return out


def _parse_guard(where: str, raw: Mapping[str, Any]) -> AnalysisSpec | Problem | None:
    """production.guard: what the bake watches (queries, threshold, traffic, window, pace), read
    from the stage's analysis unless the guard says otherwise; a breach asks a person by default."""
    if raw.get("guard") is None:
        return None
    if not raw.get("production"):
        return Problem(
            Reason.INVALID_PIPELINE,
            f"{where}.guard",
            "guard watches production after its bake, until the next Release replaces it",
            "move guard to the production stage, or use analysis for a canary stage",
        )
    inherited = {k: v for k, v in (raw.get("analysis") or {}).items() if k in GUARD_INHERITS}
    try:
        return AnalysisSpec.from_spec({"onBreach": OnBreach.DECIDE, **inherited, **raw["guard"]})
    except (TypeError, ValueError) as error:
        return Problem(
            Reason.INVALID_PIPELINE, f"{where}.guard", str(error), "see the Pipeline CRD's guard fields"
        )


# What a guard reads from its stage's analysis when it does not say (not the bake's own policies).
GUARD_INHERITS = frozenset(
    {
        "prometheus",
        "errorRateQuery",
        "requestRateQuery",
        "threshold",
        "minRequestRate",
        "window",
        "intervalSeconds",
        "consecutiveBreaches",
        "inconclusiveLimit",
    }
)


def _parse_target(where: str, index: int, raw: Any) -> Target | Problem:
    if not isinstance(raw, Mapping) or not raw.get("namespace"):
        return Problem(
            Reason.INVALID_PIPELINE, f"{where}.namespace", "a target needs a namespace", "add namespace:"
        )
    kind = raw.get("kind", "Deployment")
    if kind not in WORKLOAD_KINDS:
        return Problem(
            Reason.INVALID_PIPELINE,
            f"{where}.kind",
            f"unsupported workload kind {kind!r}",
            "use Deployment or StatefulSet",
        )
    name = raw.get("name")
    labels = (raw.get("selector") or {}).get("matchLabels") or {}
    if bool(name) == bool(labels):
        return Problem(
            Reason.INVALID_PIPELINE,
            where,
            "a target names exactly one of name or selector.matchLabels",
            "keep either name: <workload> or selector: {matchLabels: {...}}",
        )
    return Target(
        index=index,
        namespace=str(raw["namespace"]),
        kind=str(kind),
        name=str(name) if name else None,
        match_labels={str(k): str(v) for k, v in labels.items()},
        containers=tuple(str(c) for c in raw.get("containers") or ()),
    )
