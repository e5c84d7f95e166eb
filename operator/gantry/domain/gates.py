"""What a Release must satisfy to enter a stage: no quarantined digest, and for production only
digests that passed an earlier stage of this Release, at a version newer than production runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gantry.domain import ledger
from gantry.domain.draft import Draft
from gantry.domain.images import digest_of
from gantry.domain.phases import Step
from gantry.domain.problems import Problem
from gantry.domain.reasons import Reason
from gantry.domain.versions import parse_tag
from gantry.domain.workloads import ImageChange


def quarantine_problem(d: Draft) -> Problem | None:
    """A digest rolled back from production stays refused until someone lifts the quarantine."""
    for index, (name, image) in enumerate(d.release.artifacts.items()):
        digest = image.rsplit("@", 1)[-1]
        record = d.obs.production.quarantine.get(digest)
        if record is not None:
            return Problem(
                Reason.QUARANTINED,
                f"spec.artifacts[{index}].image",
                f"{name}'s digest {digest} was rolled back from production ({record.get('release')} "
                f"{record.get('version')}, {record.get('reason')}, {record.get('since')})",
                "build and release a fixed image; if the rollback was a mistake, lift the quarantine with a "
                "ReleaseDecision (action: LiftQuarantine)",
            )
    return None


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
    """Production moves forward only; going back is a Rollback decision, which re-applies the previous tag."""
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
        f"{version} is not newer than {current.get('version')}, "
        f"which production runs ({current.get('release')})",
        "release a higher version; to go back to an earlier one, decide Rollback on the current Release",
    )
