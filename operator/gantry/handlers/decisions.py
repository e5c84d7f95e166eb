"""ReleaseDecisions: handled once each, when created (or when the operator finds one unhandled)."""

from __future__ import annotations

from typing import Any

import kopf

from gantry.adapters.kube import GROUP, VERSION
from gantry.runtime import Runtime


def unhandled(status: kopf.Status, **_: Any) -> bool:
    return not status.get("phase")


def register(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.resume(GROUP, VERSION, "releasedecisions", when=unhandled, registry=registry)
    @kopf.on.create(GROUP, VERSION, "releasedecisions", registry=registry)
    def take_decision(
        namespace: str | None, name: str, spec: kopf.Spec, patch: kopf.Patch, memo: Any, **_: Any
    ) -> None:
        runtime: Runtime = memo
        result = runtime.desk.handle(namespace or "", name, dict(spec))
        patch.status.update(result)
        if result["phase"] == "Rejected":
            raise kopf.PermanentError(result["message"])  # also a Warning Event on the ReleaseDecision
