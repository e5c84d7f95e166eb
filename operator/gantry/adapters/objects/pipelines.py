"""Pipelines, with their application's production ledger, and the Secrets they name."""

from __future__ import annotations

from typing import Any

from gantry.adapters.kube import core_path, custom_path
from gantry.adapters.objects.ledgers import Ledgers
from gantry.domain.flow.model import Production
from gantry.domain.inputs.pipeline import Pipeline, parse_pipeline
from gantry.domain.records import ledger
from gantry.domain.vocabulary.problems import Problem
from gantry.domain.vocabulary.reasons import Reason

# (namespace, name) -> the Pipeline as read (None: it does not exist), for one reconcile's looks.
PipelineReads = dict[tuple[str, str], dict[str, Any] | None]


class Pipelines(Ledgers):
    def get_pipeline(self, namespace: str, name: str) -> Pipeline | Problem:
        return self.get_pipeline_state(namespace, name)[0]

    def get_pipeline_state(
        self, namespace: str, name: str, with_ledger: bool = True, read: PipelineReads | None = None
    ) -> tuple[Pipeline | Problem, Production]:
        """The Pipeline and its application's production ledger (which outlives the Pipeline);
        `with_ledger=False` reads the Pipeline's mirror of it instead, one request fewer. With
        `read`, the Pipeline is read once for all the looks that share it (one reconcile)."""
        at = (namespace, name)
        if read is None or at not in read:
            body = self.kube.get(custom_path("pipelines", namespace, name))
            if read is not None:
                read[at] = body
        else:
            body = read[at]
        pipeline_status = (body or {}).get("status") or {}
        status = self.ledger_status(namespace, name, pipeline_status) if with_ledger else pipeline_status
        production = Production(
            history=tuple(ledger.entries(status)),
            quarantine={q["digest"]: q for q in status.get("quarantine") or ()},
        )
        if body is None:
            return self._missing_pipeline(namespace, name), production
        return parse_pipeline(name, body.get("spec") or {}), production

    def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        body = self.kube.get(core_path("secrets", namespace, name))
        return dict(body.get("data") or {}) if body else None

    def _missing_pipeline(self, namespace: str, name: str) -> Problem:
        return Problem(
            Reason.PIPELINE_NOT_FOUND,
            "spec.pipeline",
            f"Pipeline {name!r} does not exist in namespace {namespace!r}",
            f"create it (kubectl apply -f pipeline.yaml -n {namespace}) or set spec.pipeline "
            "to an existing Pipeline",
        )
