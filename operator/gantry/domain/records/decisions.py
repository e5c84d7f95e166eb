"""A person's decision on a Release (a ReleaseDecision's action), and which applies in which phase."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from gantry.domain.vocabulary.phases import Phase

# On a ReleaseDecision committed to git: the commit that carried it, stamped by the GitOps tool
# (Argo CD: kustomize commonAnnotations with ${ARGOCD_APP_REVISION}); copied into the record.
GIT_COMMIT_ANNOTATION = "gantry.dev/git-commit"


class Action(StrEnum):
    APPROVE = "Approve"
    ROLLBACK = "Rollback"
    EMERGENCY = "Emergency"
    FAIL_FORWARD = "FailForward"
    LIFT_QUARANTINE = "LiftQuarantine"
    OVERRIDE_FREEZE = "OverrideFreeze"  # break glass: this Release passes every freeze, on the record


ALLOWED: dict[Action, frozenset[Phase]] = {
    Action.APPROVE: frozenset({Phase.AWAITING_APPROVAL, Phase.VERIFIED, Phase.HELD}),
    Action.ROLLBACK: frozenset(
        {Phase.BAKING, Phase.AWAITING_DECISION, Phase.HELD, Phase.RELEASED, Phase.EMERGENCY}
    ),
    Action.EMERGENCY: frozenset({Phase.BAKING, Phase.AWAITING_DECISION, Phase.HELD, Phase.RELEASED}),
    Action.FAIL_FORWARD: frozenset({Phase.AWAITING_DECISION, Phase.HELD}),
    Action.OVERRIDE_FREEZE: frozenset(
        {Phase.PENDING, Phase.AWAITING_APPROVAL, Phase.BLOCKED, Phase.QUEUED, Phase.VERIFIED}
    ),
}


def overridden(status: Mapping[str, Any]) -> bool:
    """Has a person let this Release through every freeze (an OverrideFreeze decision applied)?"""
    decisions = list(status.get("decisions") or ())[: int(status.get("decisionsApplied") or 0)]
    ignored = {r.get("name") for r in status.get("decisionResults") or () if r.get("result") == "Ignored"}
    return any(x.get("action") == Action.OVERRIDE_FREEZE and x.get("name") not in ignored for x in decisions)


def refusal(action: Action, phase: Phase) -> str | None:
    """Why `action` cannot apply to a Release in `phase`, or None when it can."""
    allowed = ALLOWED.get(action)
    if allowed is None or phase in allowed:
        return None
    listed = ", ".join(sorted(allowed))
    return f"{action} applies to a Release that is {listed}; this one is {phase}"
