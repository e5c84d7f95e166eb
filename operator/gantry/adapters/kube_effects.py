"""Executors for the effects carried out through the Kubernetes API: locks, workloads, test Jobs
and the production ledger in the Pipeline's status."""

from __future__ import annotations

from typing import Any

from gantry.adapters.effects import Context, EffectFailed, Executor
from gantry.adapters.kube import ApiError
from gantry.domain.flow.model import (
    AcquireLock,
    ClaimProduction,
    CreateJob,
    DeleteJob,
    Failure,
    PreemptLock,
    Quarantine,
    RecordProduction,
    ReleaseLock,
    SetImages,
    UnfreezeLock,
)
from gantry.domain.inputs.testjob import label_value
from gantry.domain.inputs.workloads import WorkloadRef
from gantry.domain.records import locks
from gantry.domain.vocabulary.reasons import Reason
from gantry.domain.vocabulary.timefmt import to_rfc3339


def failure_of(error: ApiError) -> EffectFailed:
    """A permanent answer of the API server in the domain's words (blips are never asked here)."""
    failure = Failure.UNAUTHORIZED if error.status in (401, 403) else Failure.REFUSED
    return EffectFailed(failure, error.message or str(error))


def claimant(ctx: Context) -> locks.Claimant:
    return locks.Claimant(ctx.release.key, ctx.release.uid)


def acquire_lock(ctx: Context, effect: AcquireLock) -> None:
    who, hotfix, overridden = claimant(ctx), ctx.release.hotfix, ctx.release.passes_freeze
    heir = frozenset(f"{ctx.namespace}/{name}" for name in ctx.release.supersedes)
    ctx.adapters.resources.update_lock(
        ctx.namespace,
        effect.environment,
        lambda state, lease, seen: locks.acquire(state, who, ctx.now, lease, hotfix, seen, overridden, heir),
        ctx.now,
    )


def release_lock(ctx: Context, effect: ReleaseLock) -> None:
    who = claimant(ctx)
    ctx.adapters.resources.update_lock(
        ctx.namespace,
        effect.environment,
        lambda state, lease, seen: (locks.release(state, who, ctx.now, effect.reason), None),
        ctx.now,
    )


def preempt_lock(ctx: Context, effect: PreemptLock) -> None:
    who = claimant(ctx)
    ctx.adapters.resources.update_lock(
        ctx.namespace,
        effect.environment,
        lambda state, lease, seen: (
            locks.preempt(state, who, ctx.now, effect.reason, effect.hold, effect.freeze),
            None,
        ),
        ctx.now,
    )


def unfreeze_lock(ctx: Context, effect: UnfreezeLock) -> None:
    ctx.adapters.resources.update_lock(
        ctx.namespace,
        effect.environment,
        lambda state, lease, seen: (locks.unfreeze(state, effect.why, ctx.now), None),
        ctx.now,
    )


def set_images(ctx: Context, effect: SetImages) -> None:
    by_workload: dict[WorkloadRef, dict[str, str]] = {}
    for ref, container, image in effect.images:
        by_workload.setdefault(ref, {})[container] = image
    refused: list[ApiError] = []
    for ref, images in sorted(by_workload.items()):
        try:
            ctx.adapters.at(ctx.namespace, ref.cluster).set_images(
                ref, images, label_value(ctx.release.pipeline)
            )
        except ApiError as error:
            if error.transient:
                raise
            if not effect.restore:
                raise failure_of(error) from error
            # Keep restoring the others: one deleted Deployment must not leave the rest on bad digests.
            ctx.announce("Warning", Reason.RESTORE_REFUSED, f"could not restore {ref}: {error.message}")
            refused.append(error)
    if refused and len(refused) == len(by_workload):
        raise failure_of(refused[0]) from refused[0]  # nothing could be restored: say so loudly


def create_job(ctx: Context, effect: CreateJob) -> None:
    try:
        ctx.adapters.at(ctx.namespace, effect.cluster).create_job(effect.manifest)
    except ApiError as error:
        if error.transient:
            raise
        raise failure_of(error) from error


def delete_job(ctx: Context, effect: DeleteJob) -> None:
    ctx.adapters.at(ctx.namespace, effect.cluster).delete_job(effect.namespace, effect.name)


def claim_production(ctx: Context, effect: ClaimProduction) -> None:
    resources = ctx.adapters.resources
    refused = resources.claim_production(ctx.namespace, ctx.release.pipeline, effect.entry, resources.alive)
    if refused is not None:
        kind, why = refused
        raise EffectFailed(Failure.CONFLICT if kind == "conflict" else Failure.REFUSED, why)


def record_production(ctx: Context, effect: RecordProduction) -> None:
    ctx.adapters.resources.record_production(ctx.namespace, ctx.release.pipeline, effect.entry)


def quarantine(ctx: Context, effect: Quarantine) -> None:
    ctx.adapters.resources.quarantine(
        ctx.namespace,
        ctx.release.pipeline,
        effect.digests,
        effect.release,
        effect.version,
        effect.reason,
        to_rfc3339(ctx.now),
    )


# Lock and ledger writes raise what they meet: a refusal there is a bug or missing RBAC, which
# Kopf retries with backoff and logs; workloads and Jobs refusing is the domain's business.
EXECUTORS: dict[type[Any], Executor] = {
    AcquireLock: acquire_lock,
    ReleaseLock: release_lock,
    PreemptLock: preempt_lock,
    UnfreezeLock: unfreeze_lock,
    SetImages: set_images,
    CreateJob: create_job,
    DeleteJob: delete_job,
    RecordProduction: record_production,
    ClaimProduction: claim_production,
    Quarantine: quarantine,
}
