"""Releases: read, label, touch, status writes, and the decisions copied into them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gantry.adapters.kube import ApiError, custom_path
from gantry.adapters.objects.store import Store, retry_on_conflict
from gantry.domain.inputs.testjob import label_value
from gantry.domain.inputs.versions import Reservation
from gantry.domain.records import retention
from gantry.domain.vocabulary.phases import FINISHED_LABEL, GAVE_UP
from gantry.domain.vocabulary.timefmt import to_rfc3339

DRIVER_WANTED = "gantry.dev/driver-wanted"  # touched to make Kopf start a Release's driver again


class Releases(Store):
    def get_release(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.kube.get(custom_path("releases", namespace, name))

    def mark_finished(self, namespace: str, name: str, finished: bool, pipeline: str = "") -> None:
        """Label a final Release, with its Pipeline for retention to list by (False removes the
        finished label: it is in flight again)."""
        labels: dict[str, str | None] = {FINISHED_LABEL: "true" if finished else None}
        if finished and pipeline:
            labels[retention.PIPELINE_LABEL] = label_value(pipeline)
        try:
            self.kube.merge_patch(custom_path("releases", namespace, name), {"metadata": {"labels": labels}})
        except ApiError as error:
            if not error.not_found:  # deleted meanwhile: nothing left to label
                raise

    def finished_releases(self, namespace: str, pipeline: str) -> list[dict[str, Any]]:
        """The Pipeline's finished Releases (by the label retention lists them by)."""
        selector = f"{FINISHED_LABEL},{retention.PIPELINE_LABEL}={label_value(pipeline)}"
        return self.kube.list_items(custom_path("releases", namespace), selector)

    def label_pipelines(self, namespace: str) -> int:
        """Give Releases finished before Gantry labelled them with their Pipeline that label: one
        list per namespace, empty once done. How many were labelled."""
        found = self.kube.list_items(
            custom_path("releases", namespace), f"{FINISHED_LABEL},!{retention.PIPELINE_LABEL}"
        )
        for body in found:
            spec = body.get("spec") or {}
            pipeline = str(spec.get("pipeline") or spec.get("application") or "")
            self.mark_finished(namespace, body["metadata"]["name"], True, pipeline)
        return len(found)

    def delete_finished(self, namespace: str, name: str, uid: str) -> None:
        """Delete this Release, and not another of its name made since (a uid precondition)."""
        body = {"propagationPolicy": "Background", "preconditions": {"uid": uid}}
        try:
            self.kube.request("DELETE", custom_path("releases", namespace, name), body=body)
        except ApiError as error:
            if not (error.not_found or error.conflict):  # gone already, or another Release now
                raise

    def touch_release(self, namespace: str, name: str) -> None:
        """An annotation with the time: a watch event on the Release, and nothing else."""
        now = to_rfc3339(datetime.now(UTC))
        patch = {"metadata": {"annotations": {DRIVER_WANTED: now}}}
        try:
            self.kube.merge_patch(custom_path("releases", namespace, name), patch)
        except ApiError as error:
            if not error.not_found:
                raise

    def patch_release_status(
        self, namespace: str, name: str, resource_version: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch status; the resourceVersion makes a stale writer fail with 409 instead of winning."""
        patch = {"metadata": {"resourceVersion": resource_version}, "status": dict(status)}
        return self.kube.merge_patch(custom_path("releases", namespace, name, "status"), patch)

    def reserved_versions(self, namespace: str, application: str) -> list[Reservation]:
        """The versions the application's Releases carry in flight, before their tag exists: each
        is taken (a Release that failed or gave way before its tag gives its version up)."""
        out = []
        for body in self.kube.list_items(custom_path("releases", namespace)):
            spec, status = body.get("spec") or {}, body.get("status") or {}
            tag = status.get("tag") or {}
            if spec.get("application") != application or tag.get("pushed") or status.get("phase") in GAVE_UP:
                continue
            revision = tag.get("revision") or (spec.get("source") or {}).get("revision")
            if revision and (
                status.get("version") or not status.get("phase") or status["phase"] == "Pending"
            ):
                name = body["metadata"]["name"]
                out.append(Reservation(name, str(status.get("version") or ""), str(revision)))
        return out

    def append_decision(
        self, namespace: str, name: str, decision: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Copy a ReleaseDecision into the Release's status (once, by decision name)."""
        path = custom_path("releases", namespace, name)

        def attempt() -> dict[str, Any] | None:
            body = self.kube.get(path)
            if body is None:
                return None
            decisions = list((body.get("status") or {}).get("decisions") or [])
            if any(d.get("name") == decision.get("name") for d in decisions):
                return body
            patch = {
                "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
                "status": {"decisions": [*decisions, dict(decision)]},
            }
            return self.kube.merge_patch(f"{path}/status", patch)

        return retry_on_conflict(f"Release {namespace}/{name}", attempt)

    def alive(self, entry: Mapping[str, Any]) -> bool:
        """Does the Release of this entry still exist (the same object, by uid) and is it not being
        deleted? (Kopf's own finalizer keeps a deleted Release around while its timer stops.)"""
        namespace, _, name = str(entry.get("release")).partition("/")
        body = self.get_release(namespace, name)
        meta = (body or {}).get("metadata") or {}
        return body is not None and meta.get("uid") == entry.get("uid") and not meta.get("deletionTimestamp")
