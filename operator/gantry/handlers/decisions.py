"""ReleaseDecisions: handled once each, when created (or when the operator finds one unhandled)."""

from __future__ import annotations

from typing import Any

import kopf

from gantry.adapters.kube import GROUP, VERSION
from gantry.domain.records.decisions import GIT_COMMIT_ANNOTATION
from gantry.runtime import Runtime


def unhandled(status: kopf.Status, **_: Any) -> bool:
    return not status.get("phase")


def carried_by(meta: Any) -> dict[str, str]:
    """How a decision arrived, for the record: the field manager that created it (kubectl-create,
    gantry for the plugin, argocd-controller or kustomize-controller for a decision synced from
    git) and the commit that carried it, when the GitOps tool stamps it (gantry.dev/git-commit)."""
    managers = [str(e.get("manager")) for e in meta.get("managedFields") or () if e.get("manager")]
    commit = str((meta.get("annotations") or {}).get(GIT_COMMIT_ANNOTATION) or "")
    return {**({"via": managers[0]} if managers else {}), **({"commit": commit} if commit else {})}


def register(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.resume(GROUP, VERSION, "releasedecisions", when=unhandled, registry=registry)
    @kopf.on.create(GROUP, VERSION, "releasedecisions", registry=registry)
    def take_decision(
        namespace: str | None,
        name: str,
        spec: kopf.Spec,
        meta: kopf.Meta,
        patch: kopf.Patch,
        memo: Any,
        **_: Any,
    ) -> None:
        runtime: Runtime = memo
        result = runtime.desk.handle(namespace or "", name, dict(spec), carried_by(meta))
        patch.status.update(result)
        if result["phase"] == "Rejected":
            raise kopf.PermanentError(result["message"])  # also a Warning Event on the ReleaseDecision
