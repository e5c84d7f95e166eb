"""Which containers a stage re-pins, decided from the Pipeline and what the cluster holds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gantry.domain.inputs.pipeline import Stage, Target
from gantry.domain.vocabulary.images import parse_pinned
from gantry.domain.vocabulary.problems import Problem
from gantry.domain.vocabulary.reasons import Reason

# On every workload Gantry re-pinned: the operator watches only workloads carrying it.
LABEL_PIPELINE = "gantry.dev/pipeline"
# Gantry's name in managedFields (the API server takes it from the User-Agent).
FIELD_MANAGER = "gantry"


@dataclass(frozen=True, order=True)
class WorkloadRef:
    kind: str
    namespace: str
    name: str
    cluster: str = ""  # another cluster: the kubeconfig Secret its stage names; "" for this one

    def __str__(self) -> str:
        where = f" in cluster {self.cluster}" if self.cluster else ""
        return f"{self.kind} {self.namespace}/{self.name}{where}"

    def key(self) -> str:
        """kind/namespace/name, prefixed with cluster@ for another cluster's."""
        return (f"{self.cluster}@" if self.cluster else "") + f"{self.kind}/{self.namespace}/{self.name}"

    @classmethod
    def from_key(cls, key: str) -> WorkloadRef:
        cluster, _, rest = key.rpartition("@")
        kind, namespace, name = rest.split("/", 2)
        return cls(kind, namespace, name, cluster)


@dataclass(frozen=True)
class Rollout:
    done: bool
    detail: str  # e.g. "1/3 replicas updated, 0 available"
    idle: bool = False  # scaled to 0 replicas: "rolled out", with nothing running the images


@dataclass(frozen=True)
class ObservedWorkload:
    ref: WorkloadRef
    containers: Mapping[str, str]  # container name -> image, in spec order
    rollout: Rollout
    # container name -> the field manager that last set its image (metadata.managedFields), when told
    image_managers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageChange:
    """One container's image before and after the stage's deploy: enough to roll back exactly."""

    workload: WorkloadRef
    container: str
    before: str
    after: str


def plan_changes(
    pipeline_name: str,
    stage: Stage,
    artifacts: Mapping[str, str],
    found: Mapping[int, tuple[ObservedWorkload, ...]],
) -> tuple[ImageChange, ...] | Problem:
    """The exact container images to set for this stage, or the first problem a human must fix.

    `found` maps each target's index to the workloads the cluster returned for it.
    """
    where = f"Pipeline {pipeline_name} {stage.field}"
    for name, image in artifacts.items():
        if parse_pinned(image) is None:
            return Problem(
                Reason.IMAGE_NOT_PINNED,
                f"spec.artifacts[name={name}].image",
                f"{image!r} is not pinned by digest",
                "use REPOSITORY@sha256:<digest>",
            )
    changes: list[ImageChange] = []
    used: set[str] = set()
    for target in stage.targets:
        workloads = found.get(target.index, ())
        if not workloads:
            return _missing_workload(where, target)
        for workload in workloads:
            result = _changes_for(where, target, workload, artifacts)
            if isinstance(result, Problem):
                return result
            changes.extend(result)
            used.update(c.container for c in result)
    for index, name in enumerate(artifacts):
        if name not in used:
            return Problem(
                Reason.ARTIFACT_UNMATCHED,
                f"spec.artifacts[{index}].name",
                f"artifact {name!r} matches no container in the targets of stage {stage.name!r}",
                f"name the artifact after a container in {where}.targets, or add that workload as a target",
            )
    return tuple(changes)


def _missing_workload(where: str, target: Target) -> Problem:
    if target.name:
        return Problem(
            Reason.WORKLOAD_NOT_FOUND,
            f"{where}.targets[{target.index}].name",
            f"{target.describe()} does not exist",
            "create the workload first, or correct the target's namespace/name in the Pipeline",
        )
    return Problem(
        Reason.WORKLOAD_NOT_FOUND,
        f"{where}.targets[{target.index}].selector",
        f"no {target.describe()}",
        "label the workloads, or correct the selector in the Pipeline",
    )


def _changes_for(
    where: str, target: Target, workload: ObservedWorkload, artifacts: Mapping[str, str]
) -> list[ImageChange] | Problem:
    field = f"{where}.targets[{target.index}].containers"
    if target.containers:
        for position, container in enumerate(target.containers):
            if container not in workload.containers:
                have = ", ".join(workload.containers) or "none"
                return Problem(
                    Reason.CONTAINER_NOT_FOUND,
                    f"{field}[{position}]",
                    f"{workload.ref} has no container {container!r} (it has: {have})",
                    "list only containers the workload has",
                )
            if container not in artifacts:
                return Problem(
                    Reason.ARTIFACT_MISSING,
                    "spec.artifacts",
                    f"no artifact for container {container!r}, which {field} re-pins",
                    f"add an artifact named {container!r}, or drop it from the target's containers",
                )
        names = list(target.containers)
    else:
        names = [c for c in workload.containers if c in artifacts]
        if not names:
            have = ", ".join(workload.containers) or "none"
            return Problem(
                Reason.CONTAINER_NOT_FOUND,
                field,
                f"no container of {workload.ref} ({have}) is named like an artifact ({', '.join(artifacts)})",
                "name the artifacts after the containers, or list containers in the target",
            )
    return [ImageChange(workload.ref, name, workload.containers[name], artifacts[name]) for name in names]
