"""ReleaseDecisions in, decisions on Releases out: validate, record, and act at once.

A person (or a bot) with RBAC rights on `releasedecisions` creates one; the desk checks it
against the Release's phase, copies it into the Release's status (where the stage machine
applies it, in order, exactly once) and reconciles that Release straight away.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gantry.adapters import git_effects
from gantry.adapters.effects import Context
from gantry.adapters.resources import Resources
from gantry.domain.flow.gates import version_refusal
from gantry.domain.flow.model import ReleaseView
from gantry.domain.records import ledger
from gantry.domain.records.decisions import Action, refusal
from gantry.domain.vocabulary.images import parse_pinned
from gantry.domain.vocabulary.phases import Phase
from gantry.domain.vocabulary.timefmt import to_rfc3339
from gantry.reconciler import ReleaseReconciler


@dataclass
class DecisionDesk:
    resources: Resources
    reconciler: ReleaseReconciler

    def handle(
        self, namespace: str, name: str, spec: Mapping[str, Any], carried: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """The ReleaseDecision's status: Accepted / Applied, or Rejected with the reason and the fix."""
        now = to_rfc3339(datetime.now(UTC))
        action = Action(str(spec.get("action")))
        by = str(spec.get("decidedBy") or "unknown")
        target = str(spec.get("release") or "")
        release = self.resources.get_release(namespace, target)
        if release is None:
            return rejected(
                f"spec.release: Release {namespace}/{target} does not exist; fix: name an existing Release"
            )
        if action == Action.LIFT_QUARANTINE:
            return self._lift(namespace, release, spec, by, now)
        phase = Phase((release.get("status") or {}).get("phase", Phase.PENDING))
        why_not = refusal(action, phase) or self._older_than_production(namespace, release, action, phase)
        if why_not is not None:
            return rejected(f"{why_not}; fix: wait for the right phase, or decide something else")
        decision = {
            "name": name,
            "action": str(action),
            "decidedBy": by,
            "reason": spec.get("reason", ""),
            "time": now,
            **({"groups": list(spec["groups"])} if spec.get("groups") else {}),
            **(carried or {}),  # via (the field manager) and commit, for a decision synced from git
        }
        self.resources.append_decision(namespace, target, decision)
        self._to_git(namespace, release, decision)
        self.reconciler.reconcile(namespace, target)
        after = self.resources.get_release(namespace, target) or {}
        results = (after.get("status") or {}).get("decisionResults") or ()
        outcome = next((r for r in results if r.get("name") == name), None)
        if outcome is not None and outcome.get("result") == "Ignored":
            return {"phase": "Ignored", "message": str(outcome.get("message")), "decidedBy": by, "time": now}
        return {
            "phase": "Applied" if outcome is not None else "Accepted",
            "message": f"{action} recorded on Release {target}",
            "decidedBy": by,
            "time": now,
        }

    def _to_git(self, namespace: str, release: Mapping[str, Any], decision: Mapping[str, Any]) -> None:
        """The decision's line in the ledger in git (the Pipeline's spec.git.ledger), if any."""
        view = ReleaseView.from_body(release)
        pipeline, _ = self.resources.get_pipeline_state(namespace, view.pipeline)
        context = Context(view, pipeline, datetime.now(UTC), self.reconciler.adapters)
        git_effects.ledger_to_git(context, ledger.decision_line(view.application, view.key, decision))

    def _older_than_production(
        self, namespace: str, release: Mapping[str, Any], action: Action, phase: Phase
    ) -> str | None:
        """Approving a promotion: refused at once when production runs (or is deploying) a version
        at least as new; production only moves forward."""
        if action != Action.APPROVE or phase != Phase.VERIFIED:
            return None
        view = ReleaseView.from_body(release)
        _, production = self.resources.get_pipeline_state(namespace, view.pipeline)
        why = version_refusal(view.version, view.uid, production.history)
        return f"spec.version: {why}" if why else None

    def _lift(
        self, namespace: str, release: Mapping[str, Any], spec: Mapping[str, Any], by: str, now: str
    ) -> dict[str, Any]:
        artifacts = (release.get("spec") or {}).get("artifacts") or []
        digests = {ref.digest for ref in (parse_pinned(a["image"]) for a in artifacts) if ref is not None}
        if spec.get("digest"):
            digests &= {str(spec["digest"])}
        pipeline = (release.get("spec") or {}).get("pipeline") or (release.get("spec") or {}).get(
            "application"
        )
        lifted = self.resources.lift_quarantine(
            namespace, str(pipeline), digests, by, str(spec.get("reason", "")), now
        )
        if not lifted:
            return rejected("none of this Release's digests is quarantined; nothing to lift")
        return {
            "phase": "Applied",
            "message": f"lifted the quarantine of {lifted} digest(s)",
            "decidedBy": by,
            "time": now,
        }


def rejected(message: str) -> dict[str, Any]:
    return {"phase": "Rejected", "message": message}
