"""The workloads a stage re-pins (Deployments, StatefulSets): found, observed, images set."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gantry.adapters.kube import ApiError, label_selector, workload_path
from gantry.adapters.objects.store import Store
from gantry.domain.inputs.pipeline import Target
from gantry.domain.inputs.workloads import LABEL_PIPELINE, ObservedWorkload, Rollout, WorkloadRef


class Workloads(Store):
    def find_workloads(self, target: Target) -> tuple[ObservedWorkload, ...]:
        if target.name:
            body = self.kube.get(workload_path(target.kind, target.namespace, target.name))
            bodies = [body] if body is not None else []
        else:
            bodies = self.kube.list_items(
                workload_path(target.kind, target.namespace),
                label_selector=label_selector(target.match_labels),
            )
        return tuple(observe_workload(target.kind, b, target.cluster) for b in bodies)

    def get_workload(self, ref: WorkloadRef) -> ObservedWorkload | None:
        body = self.kube.get(workload_path(ref.kind, ref.namespace, ref.name))
        return observe_workload(ref.kind, body, ref.cluster) if body is not None else None

    def set_images(self, ref: WorkloadRef, images: Mapping[str, str], pipeline: str = "") -> bool:
        """Set only the named containers' images; True if anything had to change.

        A JSON patch with a `test` on each container's name: if someone reordered the containers
        since we read them, the patch fails (422) instead of re-pinning the wrong container. The
        same patch labels the workload with its Pipeline, so the operator's watch (which selects on
        that label) sees its rollout finish.
        """
        path = workload_path(ref.kind, ref.namespace, ref.name)
        body = self.kube.get(path)
        if body is None:
            raise ApiError(404, "NotFound", f"{ref} does not exist")
        containers = body["spec"]["template"]["spec"]["containers"]
        ops: list[dict[str, Any]] = []
        for index, container in enumerate(containers):
            wanted = images.get(container["name"])
            if wanted is not None and container.get("image") != wanted:
                where = f"/spec/template/spec/containers/{index}"
                ops.append({"op": "test", "path": f"{where}/name", "value": container["name"]})
                ops.append({"op": "replace", "path": f"{where}/image", "value": wanted})
        missing = set(images) - {c["name"] for c in containers}
        if missing:
            raise ApiError(422, "Invalid", f"{ref} has no container(s) {', '.join(sorted(missing))}")
        changed = bool(ops)
        labels = body["metadata"].get("labels")
        if pipeline and (labels or {}).get(LABEL_PIPELINE) != pipeline:
            if labels is None:
                ops.append({"op": "add", "path": "/metadata/labels", "value": {}})
            ops.append(
                {
                    "op": "add",
                    "path": "/metadata/labels/" + LABEL_PIPELINE.replace("/", "~1"),
                    "value": pipeline,
                }
            )
        if not ops:
            return False
        self.kube.json_patch(path, ops)
        return changed


def observe_workload(kind: str, body: Mapping[str, Any], cluster: str = "") -> ObservedWorkload:
    meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
    ref = WorkloadRef(kind, meta["namespace"], meta["name"], cluster)
    containers = {c["name"]: c.get("image", "") for c in spec["template"]["spec"]["containers"]}
    managers = image_managers(meta.get("managedFields") or (), containers)
    return ObservedWorkload(ref, containers, rollout_of(kind, meta, spec, status), managers)


def image_managers(entries: Iterable[Mapping[str, Any]], containers: Iterable[str]) -> dict[str, str]:
    """Which field manager owns each container's image (server-side field ownership): the one that
    set it last. A real API server always says; without managedFields, nobody is named."""
    owners: dict[str, str] = {}
    for entry in entries:
        template = ((entry.get("fieldsV1") or {}).get("f:spec") or {}).get("f:template") or {}
        listed = ((template.get("f:spec") or {}).get("f:containers")) or {}
        for container in containers:
            if "f:image" in (listed.get(f'k:{{"name":"{container}"}}') or {}):
                owners[container] = str(entry.get("manager") or "unknown")
    return owners


def rollout_of(
    kind: str, meta: Mapping[str, Any], spec: Mapping[str, Any], status: Mapping[str, Any]
) -> Rollout:
    """Is the newest spec fully rolled out? The same checks `kubectl rollout status` makes."""
    wanted = int(spec.get("replicas", 1))
    observed = int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    if kind == "StatefulSet":
        ready = int(status.get("readyReplicas") or 0)
        same_revision = status.get("currentRevision") == status.get("updateRevision")
        done = observed and updated >= wanted and ready >= wanted and (same_revision or updated == wanted)
        return Rollout(done, f"{updated}/{wanted} updated, {ready} ready")
    available = int(status.get("availableReplicas") or 0)
    done = observed and updated >= wanted and available >= wanted and total <= wanted
    detail = f"{updated}/{wanted} updated, {available} available"
    if spec.get("paused") and not done:
        detail = f"paused ({detail}): nothing rolls out until someone runs kubectl rollout resume"
    elif not observed:
        detail = "controller has not seen the new spec yet; " + detail
    elif total > wanted:
        detail += f", {total - updated} old replica(s) terminating"
    return Rollout(done, detail, idle=wanted == 0)
