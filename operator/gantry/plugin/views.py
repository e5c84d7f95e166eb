"""What `kubectl gantry` shows, computed from the objects as plain data (no I/O here).

- status: per application, one row per environment (Pipeline stage): the version and digest it
  runs, since when, and its lock's holder and queue. Stages before production are read from the
  Releases' stage records (the newest deploy that was not rolled back); production from the
  Pipeline's ledger, which is what rollbacks restore.
- history: the production ledger, oldest first.

Every table carries `records`, the same rows as raw values (full digests, RFC 3339 times, null for
nothing) for `-o json|yaml`; the table cells are for people (short digests, ages).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gantry.adapters.objects import locks as lock_objects
from gantry.domain.flow.guard import GuardState
from gantry.domain.inputs.analysis import threshold_of
from gantry.domain.inputs.workloads import Rollout
from gantry.domain.records import dora, ledger, locks, windows
from gantry.domain.records.decisions import ALLOWED, Action
from gantry.domain.vocabulary import commands
from gantry.domain.vocabulary.images import digest_of
from gantry.domain.vocabulary.images import short_digest as shorten
from gantry.domain.vocabulary.phases import FINAL
from gantry.domain.vocabulary.reasons import Reason
from gantry.domain.vocabulary.timefmt import from_rfc3339, to_rfc3339

NONE = "-"


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    title: str = ""
    records: tuple[Mapping[str, Any], ...] = ()  # the rows as raw values, for scripts
    notes: tuple[str, ...] = ()  # lines printed under the table (what waits on a person)


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
    return ",".join(shorten(d) for d in sorted(digests(images))) or NONE


def releases_of(releases: Iterable[Mapping[str, Any]], application: str) -> list[Mapping[str, Any]]:
    return [r for r in releases if (r.get("spec") or {}).get("application") == application]


def digests(images: Iterable[str]) -> set[str]:
    return {digest_of(image) for image in images if "@" in image}


def production_ledger(pipeline: Mapping[str, Any]) -> list[dict[str, Any]]:
    return ledger.entries(pipeline.get("status") or {})


def queue_cell(lock_status: Mapping[str, Any]) -> str:
    """The waiters in order; a hotfix is marked, as it goes ahead of every normal Release."""
    waiting = [
        short_name(w["release"]) + (" (hotfix)" if w.get("hotfix") else "")
        for w in lock_status.get("queue") or ()
    ]
    return ",".join(waiting) or NONE


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
    freeze = lock_objects.settled(lock or {}, now).freeze
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
    health: Mapping[str, Rollout | None] | None = None,
) -> Table:
    """`stage_images`: what the first target workload of each stage runs now, by stage name;
    `health`: its rollout (None: not read)."""
    spec = pipeline.get("spec") or {}
    application = str(spec.get("application") or pipeline["metadata"]["name"])
    mine = releases_of(releases, application)
    history = production_ledger(pipeline)
    rows: list[tuple[str, ...]] = []
    records: list[dict[str, Any]] = []
    for stage in spec.get("stages") or ():
        name = str(stage["name"])
        environment = str(stage.get("environment") or name)
        held, queue = lock_cells(locks.get(environment), now) if stage.get("lock") else (NONE, NONE)
        images = list(stage_images.get(name) or ())
        found = running_release(mine, name, images)
        lock_status = ((locks.get(environment) or {}).get("status") or {}) if stage.get("lock") else {}
        record: dict[str, Any] = {
            "environment": name,
            "version": None,
            "release": None,
            "digests": sorted(digests(images)),
            "since": None,
            "lockHolder": (lock_status.get("holder") or {}).get("release"),
            "queue": [w["release"] for w in lock_status.get("queue") or ()],
            "frozen": frozen_by(locks.get(environment), now) if stage.get("lock") else None,
        }
        rollout = (health or {}).get(name)
        if rollout is not None:
            record.update(healthy=rollout.done and not rollout.idle, rollout=rollout.detail)
        records.append(record)
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
        record.update(version=version or None, release=release["metadata"]["name"], since=since)
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
    title = f"{application} ({meta['namespace']}/{meta['name']})"
    return Table(headers, tuple(rows), title=title, records=tuple(records))


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
    records = tuple(
        {
            "version": entry.get("version"),
            "release": entry.get("release"),
            "result": entry.get("result"),
            "images": [dict(i) for i in entry.get("images") or ()],
            "deployedAt": entry.get("deployedAt"),
            "decidedBy": entry.get("decidedBy"),
            "reason": entry.get("reason") or "",
        }
        for entry in history
    )
    headers = ("VERSION", "RELEASE", "RESULT", "DIGEST", "DEPLOYED", "DECIDED BY", "REASON")
    return Table(headers, rows, records=records)


def lock_table(objects: Sequence[Mapping[str, Any]], now: datetime) -> Table:
    """The locks, with a NEXT WINDOW column only when some lock has freeze windows."""
    windowed = any((lock.get("spec") or {}).get("freezeWindows") for lock in objects)
    rows = []
    for lock in objects:
        status = lock.get("status") or {}
        holder = status.get("holder") or {}
        freeze = lock_objects.settled(lock, now).freeze
        rows.append(
            (
                str(lock["metadata"]["name"]),
                short_name(holder["release"]) if holder else NONE,
                age(holder.get("since"), now) if holder else NONE,
                queue_cell(status),
                freeze_cell(freeze),
                *([window_cell(lock, now)] if windowed else []),
            )
        )
    records = tuple(lock_record(lock, now) for lock in objects)
    headers = ("ENVIRONMENT", "HOLDER", "SINCE", "QUEUE", "FROZEN BY", *(["NEXT WINDOW"] if windowed else []))
    return Table(headers, tuple(rows), records=records)


def window_cell(lock: Mapping[str, Any], now: datetime) -> str:
    """When the lock's next freeze window opens (or why its windows cannot be read)."""
    try:
        found = windows.parse((lock.get("spec") or {}).get("freezeWindows") or (), "spec.freezeWindows")
    except windows.BadWindow as error:
        return str(error)
    upcoming = [(at, w.name) for w in found if (at := w.next_opening(now)) is not None]
    if not upcoming:
        return NONE
    at, name = min(upcoming)
    return f"{name} at {to_rfc3339(at)}"


def lock_record(lock: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    status = lock.get("status") or {}
    holder = status.get("holder") or {}
    freeze = lock_objects.settled(lock, now).freeze
    return {
        "namespace": lock["metadata"].get("namespace"),
        "environment": lock["metadata"]["name"],
        "holder": holder.get("release"),
        "since": holder.get("since"),
        "queue": [w["release"] for w in status.get("queue") or ()],
        "frozenBy": freeze.by if freeze else None,
        "freeze": {"kind": str(freeze.kind), "by": freeze.by, "reason": freeze.reason} if freeze else None,
        "nextWindow": window_cell(lock, now),
    }


def frozen_by(lock: Mapping[str, Any] | None, now: datetime) -> str | None:
    """Who or what freezes the lock now, and why; None when nothing does."""
    freeze = lock_objects.settled(lock, now).freeze if lock else None
    return freeze_cell(freeze) if freeze else None


def freeze_cell(freeze: locks.Freeze | None) -> str:
    if freeze is None:
        return NONE
    why = freeze.reason or "no reason given"
    if freeze.kind == locks.FreezeKind.WINDOW and freeze.until is not None:
        return f"{freeze.by} ({why}; until {to_rfc3339(freeze.until)})"
    words = {locks.FreezeKind.BY_HAND: "by hand: ", locks.FreezeKind.INCIDENT: "incident: "}
    return f"{freeze.by} ({words.get(freeze.kind, '')}{why})"


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
    return "\n".join(([table.title] if table.title else []) + lines + list(table.notes))


def as_data(table: Table) -> list[Mapping[str, Any]]:
    return list(table.records)


def in_flight_table(
    pipeline: Mapping[str, Any], releases: Sequence[Mapping[str, Any]], now: datetime
) -> Table:
    """The application's Releases that are not final: where each stands and why, and, under the
    table, what waits on a person, with the exact command to act."""
    spec = pipeline.get("spec") or {}
    application = str(spec.get("application") or pipeline["metadata"]["name"])
    namespace = str(pipeline["metadata"]["namespace"])
    manual = any(
        s.get("production") and s.get("promotion", "Manual") != "Auto" for s in spec.get("stages") or ()
    )
    rows, records, notes = [], [], []
    unfinished = [r for r in releases_of(releases, application) if not settled(r.get("status") or {})]
    for release in sorted(unfinished, key=lambda r: str(r["metadata"].get("creationTimestamp", ""))):
        status = release.get("status") or {}
        run = (status.get("stages") or [{}])[-1]
        name = str(release["metadata"]["name"])
        version = str(status.get("version") or (release.get("spec") or {}).get("version") or NONE)
        phase = str(status.get("phase") or "Pending")
        rows.append(
            (
                name,
                version,
                str(run.get("name") or NONE),
                phase,
                str(run.get("step") or NONE),
                age(release["metadata"].get("creationTimestamp"), now),
                str(status.get("message") or ""),
            )
        )
        records.append(
            {
                "release": name,
                "version": None if version == NONE else version,
                "stage": run.get("name"),
                "phase": phase,
                "step": run.get("step"),
                "reason": status.get("reason"),
                "message": status.get("message"),
                "createdAt": release["metadata"].get("creationTimestamp"),
                "waitsOnAPerson": phase in PERSON and (phase != "Verified" or manual),
            }
        )
        bake = bake_record(run)
        if bake:
            records[-1]["bake"] = bake
        records[-1]["actions"] = possible(
            namespace, application, name, phase, str(status.get("reason") or "")
        )
        todo = what_to_do(namespace, application, name, phase, run, manual, now)
        todo += breached_guard(namespace, application, name, status.get("guard") or {}, now)
        records[-1]["waitsOnAPerson"] = bool(records[-1]["waitsOnAPerson"] or todo)
        records[-1]["commands"] = [line.split("  #")[0].strip() for line in todo if line.startswith("  ")]
        if todo and phase in ("AwaitingApproval", "Verified"):  # what the approval decides
            what = what_it_changes(release, production_ledger(pipeline))
            records[-1]["changes"] = what
            todo = [todo[0], *(f"  | {line}" for line in what), *todo[1:]]
        notes.extend(todo)
    headers = ("RELEASE", "VERSION", "STAGE", "PHASE", "STEP", "AGE", "MESSAGE")
    return Table(
        headers, tuple(rows), title=f"in flight: {application}", records=tuple(records), notes=tuple(notes)
    )


FROZEN_OUT = frozenset({Reason.LOCK_FROZEN, Reason.PRODUCTION_FROZEN})


def possible(namespace: str, application: str, release: str, phase: str, reason: str) -> list[str]:
    """Every decision a person may make on the Release now, as its command (the web view's
    buttons); those about production name the application, as `kubectl gantry` takes them.
    Breaking a freeze is offered only to a Release a freeze holds."""
    spelt = {
        Action.APPROVE: commands.approve(namespace, release),
        Action.ROLLBACK: commands.rollback(namespace, application),
        Action.EMERGENCY: commands.emergency(namespace, application),
        Action.FAIL_FORWARD: commands.fail_forward(namespace, release),
        Action.OVERRIDE_FREEZE: commands.override_freeze(namespace, release),
    }
    if reason not in FROZEN_OUT:
        del spelt[Action.OVERRIDE_FREEZE]
    return [command for action, command in spelt.items() if phase in ALLOWED[action]]


def bake_record(run: Mapping[str, Any]) -> dict[str, Any] | None:
    """A stage run's bake (or canary analysis): each evaluation's error rate, and the threshold."""
    evaluations = (run.get("analysis") or {}).get("evaluations") or ()
    if not evaluations:
        return None
    points = [{k: e.get(k) for k in ("time", "errorRate", "verdict")} for e in evaluations]
    return {"stage": run.get("name"), "threshold": threshold_of(run), "evaluations": points}


def what_it_changes(release: Mapping[str, Any], history: list[dict[str, Any]]) -> list[str]:
    """For a person about to approve: the changes since the last release (the Conventional Commits
    of the changelog), the tickets they name, and each image's digest against what production runs."""
    status = release.get("status") or {}
    changes = [conventional(c) for c in status.get("changelog") or ()]
    tickets = sorted({str(c["scope"]) for c in status.get("changelog") or () if c.get("scope")})
    standing = ledger.current(history) or {}
    running = {
        str(i.get("container")): str(i.get("image") or "")
        for i in standing.get("images") or ()
        if i.get("container")
    }
    lines = [f"changes: {'; '.join(changes[:5])}{' …' if len(changes) > 5 else ''}"] if changes else []
    lines += [f"tickets: {', '.join(tickets)}"] if tickets else []
    for artifact in (release.get("spec") or {}).get("artifacts") or ():
        name, image = str(artifact.get("name")), str(artifact.get("image") or "")
        before = running.get(name)
        was = shorten(before) if before else "nothing in production"
        now_ = shorten(image)
        lines.append(f"{name}: {was} → {now_}" if was != now_ else f"{name}: {now_} (unchanged)")
    return lines


def conventional(entry: Mapping[str, Any]) -> str:
    """A changelog entry as its commit's header said it: type(scope): description."""
    scope = f"({entry['scope']})" if entry.get("scope") else ""
    return f"{entry.get('type')}{scope}: {entry.get('description')}"


PERSON = frozenset(
    {"AwaitingApproval", "Verified", "AwaitingDecision", "Held"}
)  # only a person moves these on


def what_to_do(
    namespace: str,
    application: str,
    release: str,
    phase: str,
    run: Mapping[str, Any],
    manual: bool,
    now: datetime,
) -> list[str]:
    if phase == "AwaitingApproval":
        return [
            f"{release} waits for approval to enter stage {run.get('name')}:",
            f"  {commands.approve(namespace, release)}",
        ]
    if phase == "Verified" and manual:
        return [
            f"{release} waits for approval to go to production:",
            f"  {commands.approve(namespace, release)}",
        ]
    if phase == "AwaitingDecision":
        said = f"{release} waits for your decision on its bake"
        return three_buttons(namespace, application, release, said, run.get("decisionDeadline"), now)
    if phase == "Held":
        why = run.get("reason") or "a person decides"
        return [
            f"{release} is held ({why}): {run.get('message') or ''}".strip(),
            f"  {commands.approve(namespace, release)}           # accept it",
            f"  {commands.rollback(namespace, application)}      # the previous release back in production",
        ]
    return []


LEDGER_SHOWN = 10  # the newest production records in -o json (and the web view)
STATUS_SCHEMA = "gantry.dev/status/v1"  # -o json|yaml of kubectl gantry status: stable, for scripts


def application_record(
    pipeline: Mapping[str, Any], environments: Table, flight: Table, now: datetime
) -> dict[str, Any]:
    """One application for scripts: its environments (what runs, the lock), and its Releases in
    flight with what each waits on and the exact commands that act on it."""
    meta, spec = pipeline["metadata"], pipeline.get("spec") or {}
    return {
        "application": str(spec.get("application") or meta["name"]),
        "namespace": meta["namespace"],
        "pipeline": meta["name"],
        "environments": [dict(r) for r in environments.records],
        "releases": [dict(r) for r in flight.records],
        "production": [
            {k: e.get(k) for k in ("release", "version", "result", "deployedAt", "decidedBy", "reason")}
            for e in production_ledger(pipeline)[-LEDGER_SHOWN:]
        ],
        "quarantine": [
            {k: q.get(k) for k in ("digest", "release", "version", "reason", "since")}
            for q in (pipeline.get("status") or {}).get("quarantine") or ()
        ],
        "dora": dora_record(production_ledger(pipeline), now),
    }


def dora_record(history: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """The DORA measures of production, as the metrics have them (domain.records.dora)."""
    measured = dora.measure(history, now)
    return {
        "since": to_rfc3339(measured.since) if measured.since else None,
        "deployments": measured.deployments,
        "deploymentsPerDay": round(measured.per_day, 3),
        "leadTimeSeconds": measured.lead_time_seconds,
        "changeFailureRatio": measured.change_failure_ratio,
        "timeToRestoreSeconds": measured.restore_seconds,
    }


def status_document(applications: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schema": STATUS_SCHEMA, "applications": applications}


def settled(status: Mapping[str, Any]) -> bool:
    """Final, and not a Released one whose guard saw a breach (that one waits on a person)."""
    breached = (status.get("guard") or {}).get("state") == GuardState.BREACHED
    return status.get("phase") in FINAL and not breached


def breached_guard(
    namespace: str, application: str, release: str, guard: Mapping[str, Any], now: datetime
) -> list[str]:
    if guard.get("state") != GuardState.BREACHED:
        return []
    said = f"{release} is in production and its guard saw a breach ({guard.get('detail')}); decide"
    return three_buttons(namespace, application, release, said, guard.get("decisionDeadline"), now)


def three_buttons(
    namespace: str, application: str, release: str, said: str, deadline: str | None, now: datetime
) -> list[str]:
    """The seed's three buttons for a breach that waits on a person, with the time left."""
    when = f" (the default applies in {until(deadline, now)})" if deadline else ""
    return [
        f"{said}{when}:",
        f"  {commands.rollback(namespace, application)}     # the previous release back in production",
        f"  {commands.fail_forward(namespace, release)}     # keep it, on the record",
        f"  {commands.emergency(namespace, application)}    # keep it, freeze staging for a hotfix",
    ]


def until(moment: str, now: datetime) -> str:
    seconds = max(0, int((from_rfc3339(moment) - now).total_seconds()))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
