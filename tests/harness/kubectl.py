"""`kubectl get` and `kubectl describe`, as text, from the CRDs' own printer columns.

The demo prints what an SRE would see; rendering from crds/*.yaml keeps the columns honest.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from tests.harness.cluster import CRD_DIR, Cluster
from tests.harness.kubectl_support import jsonpath


def printer_columns(kind: str, crd_dir: Path = CRD_DIR) -> list[dict[str, Any]]:
    for path in sorted(crd_dir.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            columns: list[dict[str, Any]] = crd["spec"]["versions"][0]["additionalPrinterColumns"]
            return columns
    raise KeyError(kind)


def age(timestamp: str | None, now: datetime | None = None) -> str:
    if not timestamp:
        return "<none>"
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = int(((now or datetime.now(UTC)) - moment).total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def get(cluster: Cluster, kind: str, namespace: str, wide: bool = False) -> str:
    columns = [c for c in printer_columns(kind) if wide or not c.get("priority")]
    rows = [["NAME", *(c["name"].upper() for c in columns)]]
    for obj in cluster.list(kind, namespace):
        row = [obj["metadata"]["name"]]
        for column in columns:
            value = jsonpath(obj, column["jsonPath"])
            row.append(
                age(value) if column["type"] == "date" else ("<none>" if value in (None, "") else str(value))
            )
        rows.append(row)
    if len(rows) == 1:
        return f"No resources found in {namespace} namespace."
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "   ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def describe_events(cluster: Cluster, namespace: str, name: str) -> str:
    events = sorted(cluster.events(namespace, name), key=_event_order)
    lines = ["Events:", "  Type     Reason          Message"]
    lines += [f"  {e.get('type', ''):<8} {e.get('reason', ''):<15} {e.get('message', '')}" for e in events]
    return "\n".join(lines)


def _event_order(event: dict[str, Any]) -> tuple[str, int]:
    version = event["metadata"].get("resourceVersion") or "0"
    return (event.get("lastTimestamp") or "", int(version) if version.isdigit() else 0)
