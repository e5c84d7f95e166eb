"""Retention: each Pipeline's finished Releases beyond what it keeps are deleted, a one-line
summary of each kept in the production ledger first (domain.records.retention decides which)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gantry.adapters.effects import Adapters
from gantry.adapters.git import GitError
from gantry.adapters.git_effects import git_credentials
from gantry.adapters.kube import ApiError, custom_path
from gantry.adapters.metrics import Metrics
from gantry.domain.inputs.pipeline import Pipeline
from gantry.domain.records import ledger, retention
from gantry.domain.vocabulary.problems import Problem

log = logging.getLogger(__name__)


@dataclass
class Retirement:
    adapters: Adapters
    metrics: Metrics | None
    keep: int  # the operator's defaults (the chart's retention values)
    after: timedelta
    clock: Callable[[], datetime]

    def sweep(self, namespace: str, name: str, raw_retention: Any) -> dict[str, Any] | None:
        """One Pipeline's sweep; its status.retention (None: retention is off)."""
        policy = retention.policy_of(raw_retention, self.keep, self.after)
        if policy is None:
            return None
        if isinstance(policy, Problem):
            return {"problem": policy.describe()}
        resources, now = self.adapters.resources, self.clock()
        pipeline = resources.get_pipeline_state(namespace, name, with_ledger=False)[0]  # the ledger: below
        application = pipeline.application if isinstance(pipeline, Pipeline) else name
        found = [
            f
            for body in resources.finished_releases(namespace, name)
            if (f := retention.Finished.from_body(body))
        ]
        ledger_status = resources.ledger_status(namespace, name)
        sweep = retention.plan(policy, found, ledger_status, now)
        report = retention.report(policy, sweep, now)
        if self.metrics is not None and sweep.deleted:
            self.metrics.retired.labels(namespace, application, str(policy.dry_run).lower()).inc(
                len(sweep.deleted)
            )
        if policy.dry_run or not sweep.deleted:
            return report
        lines = [retention.summary(f, application, now) for f in sweep.deleted]
        resources.update_ledger(namespace, name, lambda status: retention.retire(status, lines))
        report["notInGit"] = self.to_git(namespace, pipeline, lines)
        for finished in sweep.deleted:  # only after the ledger holds their summaries
            resources.delete_finished(namespace, finished.name, finished.uid)
        log.info("retention: %s/%s deleted %d finished Release(s)", namespace, name, len(sweep.deleted))
        return report

    def to_git(self, namespace: str, pipeline: Pipeline | Problem, lines: list[dict[str, Any]]) -> str:
        """The summaries in the ledger in git (spec.git.ledger), if any; why not, else ""."""
        targets = self.adapters.git_targets
        if isinstance(pipeline, Problem) or pipeline.git.ledger is None or targets is None:
            return ""
        credentials = git_credentials(self.adapters.resources, namespace, pipeline)
        try:
            for line in lines:
                targets.append_line(pipeline.git.ledger, *ledger.retired_line(namespace, line), credentials)
        except GitError as error:
            return str(error)
        return ""

    def record(
        self, namespace: str, name: str, report: dict[str, Any] | None, before: dict[str, Any] | None
    ) -> None:
        """The Pipeline's status.retention, written only when it says something new (not on every
        sweep of every Pipeline: each write is a watch event for every client)."""

        def said(r: dict[str, Any] | None) -> dict[str, Any]:
            return {k: v for k, v in (r or {}).items() if k != "sweptAt"}

        if said(report) == said(before) and bool(report) == bool(before):
            return
        try:
            self.adapters.resources.kube.merge_patch(
                custom_path("pipelines", namespace, name, "status"), {"status": {"retention": report}}
            )
        except ApiError as error:
            if not error.not_found:
                raise
