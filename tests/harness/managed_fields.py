"""Field ownership as kube-apiserver records it in metadata.managedFields, for the one field that
matters to Gantry: each workload container's image. A real server tracks every field; the
emulator tracks who set each container's image last, which is what tells a live patch reverted by
another controller (Argo CD's self-heal, Flux) from Gantry's own write.

The manager is the request's `fieldManager`, else its User-Agent up to the first '/', as the
real server names it.
"""

from __future__ import annotations

import contextvars
import copy
from collections.abc import Mapping
from typing import Any

MANAGER: contextvars.ContextVar[str] = contextvars.ContextVar("field_manager", default="unknown")


def manager_of(params: Mapping[str, str], headers: Mapping[str, str]) -> str:
    if params.get("fieldManager"):
        return params["fieldManager"]
    agent = {k.lower(): v for k, v in headers.items()}.get("user-agent", "")
    return agent.split("/", 1)[0] or "unknown"


def _images(obj: Mapping[str, Any]) -> dict[str, str]:
    containers = ((((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")) or []
    return {c.get("name", ""): c.get("image", "") for c in containers}


def _container_fields(entry: dict[str, Any]) -> dict[str, Any]:
    fields = entry.setdefault("fieldsV1", {})
    spec = fields.setdefault("f:spec", {}).setdefault("f:template", {}).setdefault("f:spec", {})
    containers: dict[str, Any] = spec.setdefault("f:containers", {})
    return containers


def created(obj: dict[str, Any], now: str) -> None:
    """Every object starts with its creator's entry (the fields themselves are told for workload
    images only)."""
    obj["metadata"]["managedFields"] = [
        {
            "manager": MANAGER.get(),
            "operation": "Update",
            "apiVersion": obj.get("apiVersion", ""),
            "time": now,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {}},
        }
    ]
    record({"metadata": obj["metadata"]}, obj, now)


def kept(old: Mapping[str, Any], new: dict[str, Any]) -> None:
    """A write never sets managedFields itself: what a client sends back is replaced by the record."""
    entries = old.get("metadata", {}).get("managedFields")
    if entries is not None:
        new.setdefault("metadata", {})["managedFields"] = copy.deepcopy(entries)


def record(old: Mapping[str, Any] | None, new: dict[str, Any], now: str) -> None:
    """Give the current manager the images this write changed, taking them from anyone else."""
    before, after = _images(old or {}), _images(new)
    changed = [name for name, image in after.items() if before.get(name) != image]
    entries = copy.deepcopy((old or {}).get("metadata", {}).get("managedFields") or [])
    if changed:
        manager = MANAGER.get()
        for entry in entries:
            listed = _container_fields(entry)
            for name in changed:
                listed.get(f'k:{{"name":"{name}"}}', {}).pop("f:image", None)
        mine = next(
            (e for e in entries if e.get("manager") == manager and e.get("operation") == "Update"), None
        )
        if mine is None:
            mine = {"manager": manager, "operation": "Update", "apiVersion": new.get("apiVersion", "")}
            entries.append(mine)
        mine["time"] = now
        mine["fieldsType"] = "FieldsV1"
        listed = _container_fields(mine)
        for name in changed:
            listed.setdefault(f'k:{{"name":"{name}"}}', {".": {}, "f:name": {}})["f:image"] = {}
    if entries:
        new.setdefault("metadata", {})["managedFields"] = entries
