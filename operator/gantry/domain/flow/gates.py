"""What a Release must satisfy to enter a stage: no quarantined digest, and for production only
digests that passed an earlier stage of this Release, at a version newer than production runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gantry.domain.flow.draft import Draft
from gantry.domain.flow.model import EffectFailure, Failure
from gantry.domain.inputs.analysis import Verdict
from gantry.domain.inputs.versions import parse_tag
from gantry.domain.inputs.workloads import ImageChange
from gantry.domain.records import ledger
from gantry.domain.vocabulary import commands
from gantry.domain.vocabulary.images import digest_of
from gantry.domain.vocabulary.phases import Step
from gantry.domain.vocabulary.problems import Problem
from gantry.domain.vocabulary.reasons import Reason
from gantry.domain.vocabulary.timefmt import from_rfc3339


def quarantine_problem(d: Draft) -> Problem | None:
    """A digest rolled back from production stays refused until someone lifts the quarantine."""
    for index, (name, image) in enumerate(d.release.artifacts.items()):
        digest = image.rsplit("@", 1)[-1]
        record = d.obs.production.quarantine.get(digest)
        if record is not None:
            rolled_back = short_name(str(record.get("release")))
            return Problem(
                Reason.QUARANTINED,
                f"spec.artifacts[{index}].image",
                f"{name}'s digest {digest} was rolled back from production ({record.get('release')} "
                f"{record.get('version')}, {record.get('reason')}, {record.get('since')})",
                "build and release a fixed image; if the rollback was a mistake, lift the quarantine: "
                f"{commands.lift_quarantine(d.release.namespace, rolled_back)} "
                "(a ReleaseDecision, action: LiftQuarantine)",
            )
    return None


def short_name(key: str) -> str:
    return key.split("/", 1)[-1]


def check_provenance(d: Draft, changes: tuple[ImageChange, ...]) -> Mapping[str, Any] | Problem:
    """Production gets only digests that were deployed and tested in an earlier stage of this Release."""
    verified: dict[str, str] = {}
    last: Mapping[str, Any] | None = None
    for run in d.release.status.get("stages") or ():
        if run.get("step") == Step.PASSED and not (run.get("spec") or {}).get("production"):
            # By digest: a registry promotion may have copied it to another repository since.
            verified.update({i["container"]: digest_of(i["after"]) for i in run.get("images") or ()})
            last = run
    for change in changes:
        if verified.get(change.container) != digest_of(change.after):
            return Problem(
                Reason.NOT_VERIFIED,
                f"spec.artifacts[name={change.container}].image",
                f"{change.after} was never deployed and tested in a stage before production",
                "add the container to a tested stage before production, or create a new Release",
            )
    assert last is not None or not changes
    return {
        "stage": (last or {}).get("name"),
        "testJob": (last or {}).get("testJob"),
        "testResult": (last or {}).get("testResult"),
        "verifiedAt": (last or {}).get("finishedAt"),
        "images": sorted({c.after for c in changes}),
    }


def not_newer(d: Draft) -> Problem | None:
    """Production moves forward only, past what it runs and what is on its way there; going back
    is a Rollback decision, which re-applies the previous tag."""
    why = version_refusal(d.version or d.release.version, d.release.uid, d.obs.production.history)
    if why is None:
        return None
    return Problem(
        Reason.VERSION_NOT_NEWER,
        "spec.version",
        why,
        "release a higher version; to go back to an earlier one, decide Rollback on the current Release",
    )


def behind_production(d: Draft) -> Problem | None:
    """Before production: a version not newer than what production runs would be refused there, so
    no earlier stage takes it either (it would hold staging's lock and run its tests for nothing)."""
    current = ledger.current([dict(e) for e in d.obs.production.history])
    version = d.version or d.release.version
    if current is None or current.get("uid") == d.release.uid or not version:
        return None
    ours, theirs = parse_tag(version), parse_tag(str(current.get("version", "")))
    if ours is None or theirs is None or ours > theirs:
        return None
    return Problem(
        Reason.VERSION_NOT_NEWER,
        "spec.version",
        f"{version} is not newer than {current.get('version')}, which production runs "
        f"({current.get('release')}): production would refuse it, so no stage takes it",
        "release a higher version; to go back to an earlier one, decide Rollback on the current Release",
    )


def version_refusal(version: str, uid: str, history: Sequence[Mapping[str, Any]]) -> str | None:
    """Why `version` may not go to production (not newer than what runs there or is on its way)."""
    entries = [dict(e) for e in history]
    for other, how in ((ledger.current(entries), "runs"), (ledger.in_flight(entries, uid), "is deploying")):
        if other is None or other.get("uid") == uid or not version:
            continue
        ours, theirs = parse_tag(version), parse_tag(str(other.get("version", "")))
        if ours is not None and theirs is not None and ours <= theirs:
            theirs_text = f"{other.get('version')}, which production {how} ({other.get('release')})"
            return f"{version} is not newer than {theirs_text}"
    return None


def untagged(d: Draft) -> Problem | None:
    """The seed: only tagged versions reach production. A Release whose version no git tag
    carries (no spec.source, or an operator that cannot read git) is refused there, unless the
    Pipeline says otherwise on the record (spec.requireTag: false)."""
    pipeline = d.pipeline
    if d.tag or isinstance(pipeline, Problem) or not pipeline.require_tag:
        return None
    why = (
        "it has no spec.source, so no git tag carries its version"
        if d.release.repository is None
        else "its tag could not be checked: the operator reads git only with a git cache (GANTRY_GIT_CACHE; "
        "the chart sets it)"
    )
    return Problem(
        Reason.UNTAGGED_VERSION,
        "spec.source",
        f"production takes only tagged versions and {d.version or d.release.version} is not known to "
        f"be tagged: {why}",
        "create the Release from a merge on main (a ReleaseSource, or spec.source {repository, revision}), "
        f"or let untagged versions reach production on the record: spec.requireTag: false on Pipeline "
        f"{pipeline.name}",
    )


def production_frozen(d: Draft) -> Problem | None:
    """The seed's emergency: while staging is frozen, only a hotfix may go to production (a
    Release that passed staging before the emergency waits until the freeze lifts)."""
    if d.release.hotfix or not d.obs.freezes:
        return None
    environment, freeze = d.obs.freezes[0]
    return Problem(
        Reason.PRODUCTION_FROZEN,
        "spec.hotfix",
        f"production takes only hotfix Releases while {environment} is {freeze.describe()}",
        "ship the fix as a hotfix Release (spec.hotfix: true, from the emergency's HOT-<n> branch), whose "
        f"release lifts the freeze; or lift it on the record: {commands.unfreeze(environment)}; or let "
        f"this one through on the record: {commands.override_freeze(d.release.namespace, d.release.name)}",
    )


def production_busy(d: Draft) -> Problem | None:
    """One Release at a time in production: from its claim until it is released or rolled back."""
    other = ledger.in_flight([dict(e) for e in d.obs.production.history], d.release.uid)
    if other is None:
        return None
    return Problem(
        Reason.PRODUCTION_BUSY,
        "spec.pipeline",
        busy_message(other),
        f"wait, or decide on {other.get('release')} (kubectl gantry status)",
    )


def busy_message(other: Mapping[str, Any]) -> str:
    return (
        f"production is busy with {other.get('release')} ({other.get('version')}, {other.get('result')}); "
        "this Release goes on once that one is released or rolled back"
    )


def claim_refused(failure: EffectFailure) -> Problem:
    """Another Release claimed production first (a race the ledger's optimistic concurrency settled)."""
    if failure.failure == Failure.CONFLICT:
        return Problem(
            Reason.PRODUCTION_BUSY, "spec.pipeline", failure.message, "wait: this Release goes on after it"
        )
    return Problem(
        Reason.VERSION_NOT_NEWER,
        "spec.version",
        failure.message,
        "release a higher version; to go back to an earlier one, decide Rollback on the current Release",
    )


def ledger_entry(d: Draft, result: ledger.Result, by: str, why: str = "") -> dict[str, Any]:
    """This Release's line in the production history: what, when, who decided and why."""
    assert d.run is not None
    entry = {
        "release": d.release.key,
        "uid": d.release.uid,
        "version": d.release.version,
        "images": [
            {"workload": c.workload.key(), "container": c.container, "image": c.after}
            for c in d.run.changes or ()
        ],
        "deployedAt": d.run.deployed_at or d.now,
        "result": result,
        "decidedBy": by,
        "updatedAt": d.now,
    }
    if why:
        entry["reason"] = why
    entry |= _origins(d)
    # Where time to restore starts: the guard's breach (kept when the entry turns RolledBack), or
    # the bake evaluation that breached.
    breached = d.now if result == ledger.Result.BREACHED else _bake_breach(d.run.analysis)
    if breached and result in (ledger.Result.BREACHED, ledger.Result.ROLLED_BACK):
        entry["breachedAt"] = breached
    if result == ledger.Result.DEPLOYING:
        del entry["deployedAt"]  # claimed, not deployed yet: the first deploy sets it
    return entry


def _origins(d: Draft) -> dict[str, str]:
    """Where the lead time of this Release's changes starts: its changelog's first commit, and
    its creation (the merge, for a Release made on merge)."""
    written = [str(c["committedAt"]) for c in d.changelog if c.get("committedAt")]
    first = min(written, key=from_rfc3339) if written else ""
    found = {"committedAt": first, "createdAt": d.release.created_at}
    return {k: v for k, v in found.items() if v}


def _bake_breach(analysis: Mapping[str, Any] | None) -> str:
    """The time of the first breach in the bake's last run of breaches ("" if it ended healthy)."""
    first = ""
    for evaluation in reversed((analysis or {}).get("evaluations") or ()):
        if evaluation.get("verdict") != Verdict.BREACH:
            break
        first = str(evaluation.get("time") or "")
    return first
