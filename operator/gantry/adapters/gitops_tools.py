"""What a GitOps tool says it applied: an Argo CD Application's sync revision and health, or a
Flux Kustomization's lastAppliedRevision and Ready condition, in one shape."""

from __future__ import annotations

from typing import Any

from gantry.adapters.kube import Kube, segment
from gantry.domain.inputs.git_target import SYNC_KINDS, GitSync


def sync_path(sync: GitSync) -> str:
    group, version, plural = SYNC_KINDS[sync.kind]
    return f"/apis/{group}/{version}/namespaces/{segment(sync.namespace)}/{plural}/{segment(sync.name)}"


def read_sync(kube: Kube, sync: GitSync) -> tuple[str | None, str]:
    """(the commit it applied last, its sync and health in its own words); ApiError when it
    cannot be read (404: no such object)."""
    body = kube.get(sync_path(sync))
    if body is None:
        return None, f"{sync.describe()} does not exist"
    status: dict[str, Any] = body.get("status") or {}
    if sync.kind == "Application":
        revision = (status.get("sync") or {}).get("revision")
        said = (status.get("sync") or {}).get("status", "Unknown")
        health = (status.get("health") or {}).get("status", "Unknown")
        return revision, f"sync {said}, health {health}"
    applied = str(status.get("lastAppliedRevision") or "")
    revision = applied.rsplit(":", 1)[-1] if "@sha1:" in applied else applied.rpartition("/")[2] or None
    ready: dict[str, Any] = next((c for c in status.get("conditions") or () if c.get("type") == "Ready"), {})
    return revision, f"Ready {ready.get('status', 'Unknown')}: {ready.get('message', 'no message')}"
