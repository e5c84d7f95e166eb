"""What `kubectl gantry` shows, computed from the objects as plain data (no I/O here).

- status: per application, one row per environment (Pipeline stage): the version and digest it
  runs, since when, and its lock's holder and queue. Stages before production are read from the
  Releases' stage records (the newest deploy that was not rolled back); production from the
  Pipeline's ledger, which is what rollbacks restore.
- history: the production ledger, oldest first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gantry.domain import ledger, locks
from gantry.domain.images import digest_of
from gantry.domain.timefmt import from_rfc3339

NONE = "-"


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    title: str = ""


def age(since: str | None, now: datetime) -> str:
    """kubectl's short ages: 45s, 12m, 5h, 3d."""
    if not since:
        return NONE
    seconds = max(0, int((now - from_rfc3339(since)).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def short_digest(images: Iterable[str]) -> str:
    return ",".join(d.removeprefix("sha256:")[:12] for d in sorted(digests(images))) or NONE


def releases_of(releases: Iterable[Mapping[str, Any]], application: str) -> list[Mapping[str, Any]]:
    return [r for r in releases if (r.get("spec") or {}).get("application") == application]


def digests(images: Iterable[str]) -> set[str]:
    return {digest_of(image) for image in images if "@" in image}


def production_ledger(pipeline: Mapping[str, Any]) -> list[dict[str, Any]]:
    return ledger.entries(pipeline.get("status") or {})


def queue_cell(lock_status: Mapping[str, Any]) -> str:
    return ",".join(short_name(w["release"]) for w in lock_status.get("queue") or ()) or NONE


def running_release(
    releases: Iterable[Mapping[str, Any]], stage: str, images: Sequence[str]
) -> tuple[Mapping[str, Any], Mapping[str, Any] | None] | None:
    """The Release whose artifacts the stage's workload runs now (newest first), with its run there.

    Read from the workload itself, not from the Releases' records: after a rollback elsewhere
    reverted this stage, or a person re-pinned it, the records alone would say the wrong thing.
    """
    running = digests(images)
    candidates = []
    for release in releases:
        wanted = digests(a.get("image", "") for a in (release.get("spec") or {}).get("artifacts") or ())
        if wanted and wanted <= running:
            runs = [r for r in (release.get("status") or {}).get("stages") or () if r.get("name") == stage]
            run = max(runs, key=lambda r: str(r.get("deployedAt") or ""), default=None)
            candidates.append((str((run or {}).get("deployedAt") or ""), release, run))
    if not candidates:
        return None
    _, release, run = max(
        candidates, key=lambda c: (c[0], str(c[1]["metadata"].get("creationTimestamp", "")))
    )
    return release, run


def lock_cells(lock: Mapping[str, Any] | None, now: datetime) -> tuple[str, str]:
    status = (lock or {}).get("status") or {}
    holder = status.get("holder")
    held = f"{short_name(holder['release'])} ({age(holder.get('since'), now)})" if holder else NONE
    freeze = locks.from_object(lock or {}).freeze
    if freeze is not None:
        held += f" FROZEN by {freeze.by}"
    return held, queue_cell(status)


def short_name(key: str) -> str:
    return key.split("/", 1)[-1]


def status_table(
    pipeline: Mapping[str, Any],
    releases: Sequence[Mapping[str, Any]],
    locks: Mapping[str, Mapping[str, Any]],
    stage_images: Mapping[str, Sequence[str]],
    now: datetime,
) -> Table:
    """`stage_images`: what the first target workload of each stage runs now, by stage name."""
    spec = pipeline.get("spec") or {}
    application = str(spec.get("application") or pipeline["metadata"]["name"])
    mine = releases_of(releases, application)
    history = production_ledger(pipeline)
    rows: list[tuple[str, ...]] = []
    for stage in spec.get("stages") or ():
        name = str(stage["name"])
        environment = str(stage.get("environment") or name)
        held, queue = lock_cells(locks.get(environment), now) if stage.get("lock") else (NONE, NONE)
        images = list(stage_images.get(name) or ())
        found = running_release(mine, name, images)
        if found is None:
            rows.append((name, NONE, NONE, short_digest(images), NONE, held, queue))
            continue
        release, run = found
        since = (run or {}).get("deployedAt")
        if stage.get("production"):
            current = ledger.current(history)
            if current is not None and current.get("uid") == release["metadata"].get("uid"):
                since = current.get("deployedAt")  # for a Restored entry: when the rollback re-applied it
        version = (release.get("status") or {}).get("version") or (release.get("spec") or {}).get("version")
        rows.append(
            (
                name,
                str(version or NONE),
                str(release["metadata"]["name"]),
                short_digest(images),
                age(since, now),
                held,
                queue,
            )
        )
    headers = ("ENVIRONMENT", "VERSION", "RELEASE", "DIGEST", "SINCE", "LOCK HOLDER", "QUEUE")
    meta = pipeline["metadata"]
    return Table(headers, tuple(rows), title=f"{application} ({meta['namespace']}/{meta['name']})")


def history_table(pipeline: Mapping[str, Any], now: datetime) -> Table:
    history = production_ledger(pipeline)
    rows = tuple(
        (
            str(entry.get("version") or NONE),
            short_name(str(entry.get("release") or NONE)),
            str(entry.get("result") or NONE),
            short_digest(i.get("image", "") for i in entry.get("images") or ()),
            age(entry.get("deployedAt"), now),
            str(entry.get("decidedBy") or NONE),
            str(entry.get("reason") or ""),
        )
        for entry in history
    )
    return Table(("VERSION", "RELEASE", "RESULT", "DIGEST", "DEPLOYED", "DECIDED BY", "REASON"), rows)


def lock_table(objects: Iterable[Mapping[str, Any]], now: datetime) -> Table:
    rows = []
    for lock in objects:
        status = lock.get("status") or {}
        holder = status.get("holder") or {}
        freeze = locks.from_object(lock).freeze
        rows.append(
            (
                str(lock["metadata"]["name"]),
                short_name(holder["release"]) if holder else NONE,
                age(holder.get("since"), now) if holder else NONE,
                queue_cell(status),
                freeze_cell(freeze),
            )
        )
    return Table(("ENVIRONMENT", "HOLDER", "SINCE", "QUEUE", "FROZEN BY"), tuple(rows))


def freeze_cell(freeze: locks.Freeze | None) -> str:
    if freeze is None:
        return NONE
    why = freeze.reason or "no reason given"
    return f"{freeze.by} (by hand: {why})" if freeze.by_hand else f"{freeze.by} ({why})"


def current_release(pipeline: Mapping[str, Any]) -> str | None:
    """namespace/name of the Release production runs now, per the ledger."""
    current = ledger.current(production_ledger(pipeline))
    return str(current["release"]) if current and current.get("release") else None


def render(table: Table) -> str:
    """Aligned columns as kubectl prints them: upper-case headers, three spaces between columns."""
    widths = [len(h) for h in table.headers]
    for row in table.rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [
        "   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (table.headers, *table.rows)
    ]
    return "\n".join(([table.title] if table.title else []) + lines)


def as_data(table: Table) -> list[dict[str, str]]:
    keys = [h.lower().replace(" ", "_") for h in table.headers]
    return [dict(zip(keys, row, strict=True)) for row in table.rows]
