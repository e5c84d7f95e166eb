"""Retention of finished Releases: keep the newest N per application and everything still
referenced, delete the rest once finished long enough, leaving a one-line summary of each in
the production ledger (which outlives Releases).

Kubernetes bounds such histories the same way (a Deployment's revisionHistoryLimit, a Job's
ttlSecondsAfterFinished). Only finished Releases are ever candidates (labelled
gantry.dev/finished, final, not watched by a guard); a Release in flight or waiting for a person
is never one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gantry.domain.records import ledger
from gantry.domain.vocabulary.phases import FINAL
from gantry.domain.vocabulary.problems import Problem
from gantry.domain.vocabulary.reasons import Reason
from gantry.domain.vocabulary.timefmt import from_rfc3339, to_rfc3339

PIPELINE_LABEL = "gantry.dev/pipeline"  # on a finished Release: the Pipeline it ran on (a label value)
RETIRED_LIMIT = 200  # summaries kept in the ProductionLedger object (the ledger in git keeps all)
SHOWN = 20  # names listed in the Pipeline's status.retention


@dataclass(frozen=True)
class Policy:
    keep: int  # the newest finished Releases kept, whatever else
    after: timedelta  # a finished Release is deleted only once finished this long ago
    dry_run: bool = False

    def describe(self) -> str:
        return (
            f"keep the newest {self.keep}, delete others finished over {int(self.after.total_seconds())}s ago"
        )


def policy_of(raw: Mapping[str, Any] | None, keep: int, after: timedelta) -> Policy | Problem | None:
    """A Pipeline's spec.retention over the operator's defaults (the chart's retention values);
    None when retention is off (keepFinished 0 and no default)."""
    raw = raw or {}
    keep = int(raw.get("keepFinished", keep))
    after = timedelta(seconds=int(raw.get("afterSeconds", after.total_seconds())))
    if keep < 0 or after < timedelta(0):
        return Problem(
            Reason.INVALID_PIPELINE,
            "spec.retention",
            "keepFinished and afterSeconds cannot be negative",
            "e.g. 50",
        )
    if keep == 0 and not raw:
        return None
    return Policy(keep, after, bool(raw.get("dryRun", False)))


@dataclass(frozen=True)
class Finished:
    name: str
    uid: str
    version: str
    phase: str
    reason: str
    finished_at: datetime
    passed: tuple[str, ...]  # the stages it passed (one of them may still run it)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Finished | None:
        """A finished Release as listed; None for one that is not (in flight again, or watched)."""
        meta, status = body["metadata"], body.get("status") or {}
        if status.get("phase") not in FINAL:  # (a guarded one is never labelled finished)
            return None
        times = [h.get("time") for h in status.get("history") or () if h.get("time")]
        when = from_rfc3339(
            str(times[-1] if times else meta.get("creationTimestamp") or "1970-01-01T00:00:00Z")
        )
        passed = tuple(str(r.get("name")) for r in status.get("stages") or () if r.get("step") == "Passed")
        version = str(status.get("version") or (body.get("spec") or {}).get("version") or "")
        return cls(
            meta["name"],
            meta["uid"],
            version,
            str(status["phase"]),
            str(status.get("reason") or ""),
            when,
            passed,
        )


@dataclass(frozen=True)
class Sweep:
    kept: Mapping[str, str]  # name -> why it stays
    deleted: tuple[Finished, ...]  # oldest first


def plan(policy: Policy, found: Iterable[Finished], ledger_status: Mapping[str, Any], now: datetime) -> Sweep:
    """Which finished Releases go: not among the newest `keep`, finished over `after` ago, and not
    referenced by the ledger (production's history, which a rollback returns to; quarantine
    evidence) nor the newest to have passed each stage (what that stage may run now)."""
    newest_first = sorted(found, key=lambda f: (f.finished_at, f.name), reverse=True)
    kept: dict[str, str] = {}
    for f in newest_first[: policy.keep]:
        kept[f.name] = f"one of the newest {policy.keep}"
    names = {f.name for f in newest_first}
    for name, why in referenced(newest_first, ledger_status).items():
        if name in names:  # (the ledger also names Releases in flight, or long gone)
            kept.setdefault(name, why)
    for f in newest_first:
        if now - f.finished_at < policy.after:
            kept.setdefault(f.name, f"finished less than {int(policy.after.total_seconds())}s ago")
    deleted = tuple(f for f in reversed(newest_first) if f.name not in kept)
    return Sweep(kept, deleted)


def referenced(newest_first: Sequence[Finished], ledger_status: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in ledger.entries(ledger_status):
        out.setdefault(short(entry.get("release")), "in production's history (a rollback may return to it)")
    for item in ledger_status.get("quarantine") or ():
        out.setdefault(short(item.get("release")), "evidence of a quarantined digest")
    seen: set[str] = set()
    for f in newest_first:
        for stage in f.passed:
            if stage not in seen:
                seen.add(stage)
                out.setdefault(f.name, f"the newest to have passed stage {stage}")
    return out


def short(key: Any) -> str:
    """namespace/name -> name (the ledger names Releases by key)."""
    return str(key or "").rpartition("/")[2]


def summary(f: Finished, application: str, now: datetime) -> dict[str, Any]:
    """The one line the ledger keeps of a deleted Release."""
    return {
        "release": f.name,
        "uid": f.uid,
        "application": application,
        "version": f.version,
        "phase": f.phase,
        "reason": f.reason,
        "finishedAt": to_rfc3339(f.finished_at),
        "deletedAt": to_rfc3339(now),
    }


def retire(ledger_status: Mapping[str, Any], lines: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The ledger's status patch: the summaries appended (once each, by uid; the newest
    RETIRED_LIMIT kept in the object) and the count of all Releases ever retired."""
    retired = list(ledger_status.get("retired") or ())
    known = {r.get("uid") for r in retired}
    new = [dict(line) for line in lines if line.get("uid") not in known]
    count = int(ledger_status.get("retiredCount") or 0) + len(new)
    return {"retired": (retired + new)[-RETIRED_LIMIT:], "retiredCount": count}


def report(policy: Policy, sweep: Sweep, now: datetime) -> dict[str, Any]:
    """The Pipeline's status.retention: what the last sweep kept and deleted (or would have)."""
    names = [f.name for f in sweep.deleted][:SHOWN]
    return {
        "policy": policy.describe(),
        "sweptAt": to_rfc3339(now),
        "kept": len(sweep.kept),
        "deleted": 0 if policy.dry_run else len(sweep.deleted),
        "wouldDelete": len(sweep.deleted) if policy.dry_run else 0,
        "names": names,
        "dryRun": policy.dry_run,
    }
