"""Pipelines: validate on every spec change and say so in status, before any Release uses it."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import kopf

from gantry.adapters.kube import GROUP, VERSION, ApiError
from gantry.adapters.objects.ledgers import LEDGER_KEYS
from gantry.domain.inputs.pipeline import Pipeline, parse_pipeline
from gantry.domain.records import ledger
from gantry.domain.vocabulary.conditions import set_condition
from gantry.domain.vocabulary.problems import Problem
from gantry.domain.vocabulary.timefmt import to_rfc3339
from gantry.runtime import Runtime
from gantry.settings import Config

log = logging.getLogger(__name__)


async def retire_finished(runtime: Runtime, config: Config) -> None:
    """Every retention interval, each Pipeline's sweep (domain.records.retention); one that fails
    is logged and tried again at the next interval."""
    while True:
        await asyncio.sleep(config.retention_interval)
        for namespace in config.namespaces or (None,):
            path = (
                f"/apis/{GROUP}/{VERSION}" + (f"/namespaces/{namespace}" if namespace else "") + "/pipelines"
            )
            try:
                pipelines = await runtime.blocking(runtime.resources.kube.list_items, path)
            except ApiError as error:
                log.warning("retention: cannot list Pipelines: %s", error.message)
                continue
            for ns in sorted({body["metadata"]["namespace"] for body in pipelines}):
                try:  # Releases finished before their Pipeline was on their labels, once
                    await runtime.blocking(runtime.resources.label_pipelines, ns)
                except ApiError as error:
                    log.warning("retention: cannot label finished Releases in %s: %s", ns, error.message)
            for body in pipelines:
                meta = body["metadata"]
                try:
                    report = await runtime.blocking(
                        runtime.retirement.sweep,
                        meta["namespace"],
                        meta["name"],
                        (body.get("spec") or {}).get("retention"),
                    )
                    before = (body.get("status") or {}).get("retention")
                    await runtime.blocking(
                        runtime.retirement.record, meta["namespace"], meta["name"], report, before
                    )
                except ApiError as error:
                    log.warning(
                        "retention: Pipeline %s/%s: %s", meta["namespace"], meta["name"], error.message
                    )


def register(registry: kopf.OperatorRegistry, config: Config) -> None:
    if config.retention_interval > 0:
        # One loop over the Pipelines, not a Kopf timer on each: a timer would put Kopf's
        # finalizer on every Pipeline (kopf#1074), so none could be deleted without the operator.
        @kopf.on.startup(registry=registry)
        async def start_retention(memo: Any, **_: Any) -> None:
            runtime: Runtime = memo
            runtime.retention_task = asyncio.create_task(retire_finished(runtime, config))

        @kopf.on.cleanup(registry=registry)
        async def stop_retention(memo: Any, **_: Any) -> None:
            task = getattr(memo, "retention_task", None)
            if task is not None:
                task.cancel()

    # On every watch event, not as Kopf's resume/create/update: those would make Kopf write its
    # own annotations on every Pipeline at first sight, which at thousands of Pipelines is most
    # of the operator's start-up. The status is written only when what it says has changed.
    @kopf.on.event(GROUP, VERSION, "pipelines", registry=registry)
    def validate_pipeline(
        type: str,
        namespace: str | None,
        name: str,
        spec: kopf.Spec,
        status: kopf.Status,
        meta: kopf.Meta,
        patch: kopf.Patch,
        memo: Any,
        **_: Any,
    ) -> None:
        if type == "DELETED":
            return
        parsed = parse_pipeline(name, dict(spec))
        validity = validity_status(parsed, dict(status), int(meta.get("generation") or 1))
        if validity is None:
            return
        patch.status.update(validity)
        runtime: Runtime = memo
        if not isinstance(parsed, Problem):
            make_locks(runtime, namespace or "", parsed)
        if not status.get("ledgerRevision"):
            # Applied again after a delete (a GitOps re-sync): show the history it kept.
            kept = runtime.resources.ledger_status(namespace or "", name, dict(status))
            if kept.get("revision"):
                patch.status.update(
                    {k: kept.get(k) for k in LEDGER_KEYS} | {"ledgerRevision": kept["revision"]}
                )

    @kopf.on.event(GROUP, VERSION, "pipelines", registry=registry)
    async def follow_production(
        type: str, namespace: str | None, name: str, spec: kopf.Spec, status: kopf.Status, memo: Any, **_: Any
    ) -> None:
        """Feed the deploy and DORA gauges from the production ledger (rebuilt from the watch on restart)."""
        runtime: Runtime = memo
        if runtime.metrics is None:
            return
        if type == "DELETED":
            runtime.metrics.records.forget_ledger(namespace or "", name)
            return
        history = ledger.entries(status)
        runtime.metrics.records.ledger(namespace or "", name, str(spec.get("application") or name), history)


def make_locks(runtime: Runtime, namespace: str, pipeline: Pipeline) -> None:
    """The EnvironmentLocks of a valid Pipeline's locked stages, made when it is applied or changed:
    `kubectl get environmentlocks` lists them, a freeze can be set before the first deploy, and
    the first Release does not pay for making them. That Release makes any that are missing."""
    environments = sorted({s.environment for s in pipeline.stages if s.lock})
    try:
        runtime.resources.ensure_locks(namespace, environments)
    except ApiError as error:
        log.warning(
            "Pipeline %s/%s: cannot make its EnvironmentLocks yet: %s",
            namespace,
            pipeline.name,
            error.message,
        )


def validity_status(
    parsed: Pipeline | Problem, status: dict[str, Any], generation: int
) -> dict[str, Any] | None:
    """The Pipeline's Ready condition, summary and observed generation, or None when its status
    says so already (a restart, or the event of the operator's own status write)."""
    now = to_rfc3339(datetime.now(UTC))
    conditions = list(status.get("conditions") or [])
    if isinstance(parsed, Problem):
        updated = set_condition(conditions, "Ready", False, parsed.reason, parsed.describe(), now, generation)
        summary = "invalid"
    else:
        message = f"{len(parsed.stages)} stage(s) for application {parsed.application}"
        updated = set_condition(conditions, "Ready", True, "Valid", message, now, generation)
        summary = parsed.summary()
    wanted = {"conditions": updated, "stageSummary": summary, "observedGeneration": generation}
    return None if all(status.get(key) == value for key, value in wanted.items()) else wanted
