"""Watch events that end a Release's wait: ring the bells of the Releases waiting on the object.

Only what Gantry waits on costs watch traffic: the API server filters Deployments and
StatefulSets to those Gantry re-pinned (they carry LABEL_PIPELINE) and Jobs to Gantry's test Jobs
(LABEL_RELEASE). A rollout or Job rings only once it has finished, not on every status update
along the way, so a Release is not reconciled for nothing. The handlers are coroutines: the
bells live on the event loop.
"""

from __future__ import annotations

from typing import Any

import kopf

from gantry.adapters.kube import GROUP, VERSION
from gantry.adapters.objects.jobs import observe_job
from gantry.adapters.objects.workloads import observe_workload
from gantry.domain.flow.waits import Wake
from gantry.domain.inputs.testjob import LABEL_RELEASE
from gantry.domain.inputs.workloads import LABEL_PIPELINE
from gantry.domain.records import locks
from gantry.domain.vocabulary.phases import FINISHED_LABEL
from gantry.runtime import Runtime
from gantry.settings import Config

WORKLOAD_KINDS = {"deployments": "Deployment", "statefulsets": "StatefulSet"}


def select(settings: kopf.OperatorSettings, config: Config) -> None:
    """Server-side label selectors: the operator never receives the cluster's other workloads,
    nor the Releases that are finished."""
    settings.watching.label_selectors[GROUP, "releases"] = f"!{FINISHED_LABEL}"
    if config.watch_workloads:
        for plural in WORKLOAD_KINDS:
            settings.watching.label_selectors["apps", plural] = LABEL_PIPELINE
        settings.watching.label_selectors["batch", "jobs"] = LABEL_RELEASE


def register(registry: kopf.OperatorRegistry, config: Config) -> None:
    if config.watch_workloads:
        for plural, kind in WORKLOAD_KINDS.items():
            register_workload(registry, plural, kind)
        register_jobs(registry)

    @kopf.on.event(GROUP, VERSION, "environmentlocks", registry=registry)
    async def lock_changed(
        type: str, namespace: str | None, name: str, body: kopf.Body, memo: Any, **_: Any
    ) -> None:
        runtime: Runtime = memo
        key = f"{namespace}/{name}"
        if runtime.metrics is not None:
            runtime.metrics.records.environment_lock(
                namespace or "", name, None if type == "DELETED" else body
            )
        if type == "DELETED":
            runtime.wakeups.lock_gone(key)
            return
        state = locks.from_object(body)
        holder = state.holder.claimant.uid if state.holder else None
        freeze = state.freeze.by if state.freeze else None
        runtime.wakeups.lock_changed(key, (holder, freeze))

    @kopf.on.event(GROUP, VERSION, "pipelines", registry=registry)
    async def production_moved(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
        """The ledger's mirror on the Pipeline moved: a Release waiting for production may go on."""
        runtime: Runtime = memo
        runtime.wakeups.ring((Wake.PIPELINE, f"{namespace}/{name}"))


def register_workload(registry: kopf.OperatorRegistry, plural: str, kind: str) -> None:
    @kopf.on.event("apps", "v1", plural, registry=registry)
    async def rollout_changed(type: str, body: kopf.Body, memo: Any, **_: Any) -> None:
        runtime: Runtime = memo
        if type == "DELETED" or observe_workload(kind, body).rollout.done:
            meta = body["metadata"]
            runtime.wakeups.ring((Wake.WORKLOAD, f"{kind}/{meta['namespace']}/{meta['name']}"))


def register_jobs(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.event("batch", "v1", "jobs", registry=registry)
    async def job_changed(
        type: str, namespace: str | None, name: str, body: kopf.Body, memo: Any, **_: Any
    ) -> None:
        runtime: Runtime = memo
        if type == "DELETED" or observe_job(body).finished:
            runtime.wakeups.ring((Wake.JOB, f"{namespace}/{name}"))
