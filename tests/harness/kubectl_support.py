"""What real `kubectl` asks of an API server beyond the objects themselves, served by the emulator.

- **OpenAPI v3** (`/openapi/v3` and one document per group-version): `kubectl apply` validates by
  default, and first asks whether the server validates fields itself (a `fieldValidation` query
  parameter on the kind's PATCH operation); without an answer it fails with "failed to download
  openapi … turn validation off with --validate=false". The documents carry each kind's schema
  (from its CRD) and that parameter, so kubectl leaves validation to the server.
- **Table** (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`): `kubectl get` prints the
  columns the server sends; for custom resources those are the CRD's additionalPrinterColumns
  (dates as ages, as kube-apiserver formats them), otherwise NAME and AGE.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

Key = tuple[str, str, str]  # (group, version, plural)
_FILTER = re.compile(r'^(\w+)\[\?\(@\.(\w+)=="([^"]*)"\)\]$')
_INDEX = re.compile(r"^(\w+)\[(\d+)\]$")


def jsonpath(obj: Any, path: str) -> Any:
    """The subset of kubectl's JSONPath that printer columns use: .a.b, .a[0].b, .a[?(@.k=="v")].b."""
    value = obj
    for part in re.split(r"\.(?![^\[]*\])", path.strip(".")):  # dots inside [...] belong to filters
        if value is None:
            return None
        filtered = _FILTER.match(part)
        indexed = _INDEX.match(part)
        if filtered:
            items = (value.get(filtered[1]) or []) if isinstance(value, dict) else []
            value = next((i for i in items if str(i.get(filtered[2])) == filtered[3]), None)
        elif indexed:
            items = (value.get(indexed[1]) or []) if isinstance(value, dict) else []
            position = int(indexed[2])
            value = items[position] if position < len(items) else None
        else:
            value = value.get(part) if isinstance(value, dict) else None
    return value


def gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def openapi_root(kinds: Mapping[Key, tuple[str, bool, Mapping[str, Any] | None]]) -> dict[str, Any]:
    """`kinds`: (group, version, plural) -> (kind, namespaced, openAPIV3Schema or None)."""
    paths = {}
    for group, version in sorted({(g, v) for g, v, _ in kinds}):
        doc = openapi_document(kinds, group, version)
        digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16].upper()
        paths[gv_path(group, version)] = {
            "serverRelativeURL": f"/openapi/v3/{gv_path(group, version)}?hash={digest}"
        }
    return {"paths": paths}


def openapi_document(
    kinds: Mapping[Key, tuple[str, bool, Mapping[str, Any] | None]], group: str, version: str
) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for (g, v, plural), (kind, namespaced, schema) in sorted(kinds.items()):
        if (g, v) != (group, version):
            continue
        gvk = {"group": g, "version": v, "kind": kind}
        scope = "/namespaces/{namespace}" if namespaced else ""
        operation = {
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
                {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
            ],
            "responses": {"200": {"description": "OK"}},
        }
        paths[f"/{gv_path(g, v)}{scope}/{plural}/{{name}}"] = {"patch": operation, "put": operation}
        paths[f"/{gv_path(g, v)}{scope}/{plural}"] = {"post": operation}
        name = ".".join(reversed(g.split("."))) + f".{v}.{kind}" if g else f"io.k8s.api.core.{v}.{kind}"
        schemas[name] = {**(schema or {"type": "object", "x-kubernetes-preserve-unknown-fields": True})}
        schemas[name]["x-kubernetes-group-version-kind"] = [gvk]
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "emulated"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def wants_table(accept: str | None) -> bool:
    return bool(accept) and "as=Table" in str(accept)


def as_table(
    result: Mapping[str, Any], columns: Iterable[Mapping[str, Any]], now: datetime | None = None
) -> dict[str, Any]:
    """A list (or one object) as the meta.k8s.io/v1 Table kubectl prints."""
    now = now or datetime.now(UTC)
    objects = list(result.get("items") or ()) if "items" in result else [result]
    shown = list(columns) or [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
    definitions = [{"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0}]
    definitions += [
        {
            "name": c["name"],
            "type": c.get("type", "string"),
            "format": c.get("format", ""),
            "description": c.get("description", ""),
            "priority": int(c.get("priority", 0)),
        }
        for c in shown
    ]
    rows = []
    for obj in objects:
        cells: list[Any] = [obj["metadata"]["name"]]
        for column in shown:
            value = jsonpath(obj, column["jsonPath"])
            if column.get("type") == "date":
                value = duration(value, now)
            cells.append(value)
        partial = {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj["metadata"],
        }
        rows.append({"cells": cells, "object": partial})
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": (result.get("metadata") or {}).get("resourceVersion", "")},
        "columnDefinitions": definitions,
        "rows": rows,
    }


def duration(timestamp: Any, now: datetime) -> str | None:
    """kube-apiserver's human-readable age (duration.HumanDuration): 45s, 5m12s, 3h, 2d."""
    if not timestamp:
        return None
    seconds = int((now - datetime.fromisoformat(str(timestamp).replace("Z", "+00:00"))).total_seconds())
    seconds = max(seconds, 0)
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d"
