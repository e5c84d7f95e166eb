"""The shell below the decision: what the observer reads for each step, and how executors report
failures in the domain's vocabulary (and let blips through to be retried)."""

from __future__ import annotations

import typing
from typing import Any

import pytest

from gantry.adapters.effects import Context
from gantry.adapters.kube import ApiError, custom_path, job_path, workload_path
from gantry.domain.flow.model import (
    AcquireLock,
    ClaimProduction,
    CreateJob,
    Effect,
    EffectFailure,
    Failure,
    PromoteArtifacts,
    ReleaseView,
    SetImages,
    TagOp,
)
from gantry.domain.inputs.analysis import Sample
from gantry.domain.inputs.pipeline import Pipeline, parse_pipeline
from gantry.domain.inputs.workloads import WorkloadRef
from gantry.executors import EXECUTORS, execute
from tests.unit.world import NAMESPACE, World

OLD = "reg.io/shop/web@sha256:" + "0" * 64
NEW = "reg.io/shop/web@sha256:" + "1" * 64
DIGEST = "sha256:" + "1" * 64
WEB = WorkloadRef("Deployment", "shop", "web")
JOB = {"spec": {"template": {"spec": {"containers": [{"name": "t", "image": "busybox"}]}}}}


def pipeline(**staging: Any) -> Pipeline:
    parsed = parse_pipeline(
        "shop",
        {
            "application": "shop",
            "stages": [
                {
                    "name": "staging",
                    "lock": True,
                    "targets": [{"namespace": "shop", "name": "web"}],
                    "test": {"jobTemplate": JOB},
                    **staging,
                },
                {
                    "name": "production",
                    "production": True,
                    "targets": [{"namespace": "prod", "name": "web"}],
                    "analysis": {"intervalSeconds": 30},
                },
            ],
        },
    )
    assert isinstance(parsed, Pipeline)
    return parsed


def release(status: dict[str, Any] | None = None) -> ReleaseView:
    return ReleaseView(NAMESPACE, "shop-v1", "uid-1", 1, "shop", "shop", "v1.0.0", {"web": NEW}, status or {})


def run(step: str, **fields: Any) -> dict[str, Any]:
    """A status whose current stage run (staging, index 0) is at `step`."""
    record = {
        "index": 0,
        "name": "staging",
        "environment": "staging",
        "step": step,
        "startedAt": "2026-05-01T09:00:00Z",
        "lock": True,
        "spec": pipeline().stages[0].to_spec(),
        "images": [{"workload": WEB.key(), "container": "web", "before": OLD, "after": NEW}],
        **fields,
    }
    return {"phase": "Testing", "stageIndex": 0, "stages": [record]}


def reads(world: World, status: dict[str, Any]) -> set[str]:
    world.kube.reads.clear()
    world.observe(release(status))
    return set(world.kube.reads)


# --- observe: only what the current step can use ------------------------------------------------


def test_a_testing_stage_reads_its_job_its_lock_and_its_workloads_but_not_the_targets_again() -> None:
    world = World(pipeline(), {WEB: NEW})
    seen = reads(world, run("Testing", testJob="shop/shop-v1-staging-x"))
    assert job_path("shop", "shop-v1-staging-x") in seen
    assert custom_path("environmentlocks", NAMESPACE, "staging") in seen
    assert workload_path("Deployment", "shop", "web") in seen  # the changed workload, for the rollout
    assert world.kube.reads.count(workload_path("Deployment", "shop", "web")) == 1  # not as a target too


def test_a_verified_release_reads_no_job_and_the_staging_lock_only_on_its_way_to_production() -> None:
    world = World(pipeline(), {WEB: NEW})
    status = {**run("Passed", testJob="shop/j"), "phase": "Verified", "stageIndex": 1}
    seen = reads(world, status)
    assert job_path("shop", "j") not in seen
    assert custom_path("environmentlocks", NAMESPACE, "staging") in seen  # is staging frozen (emergency)?

    waiting = World(manual_production(), {WEB: NEW})  # waits for an approval nobody gave: no read
    status = {**run("Passed"), "phase": "Verified", "stageIndex": 0}
    assert custom_path("environmentlocks", NAMESPACE, "staging") not in reads(waiting, status)


def manual_production() -> Pipeline:
    spec = {
        "application": "shop",
        "stages": [
            {"name": "staging", "lock": True, "targets": [{"namespace": "shop", "name": "web"}]},
            {
                "name": "production",
                "production": True,
                "promotion": "Manual",
                "targets": [{"namespace": "prod", "name": "web"}],
            },
        ],
    }
    parsed = parse_pipeline("shop", spec)
    assert isinstance(parsed, Pipeline)
    return parsed


def test_a_look_at_the_lock_door_reads_the_lock_before_the_images_it_may_record() -> None:
    """The look that finds the lock ours records what runs as the rollback target at once: those
    images must be read after the lock, so they are what its last holder left."""
    world = World(pipeline(), {WEB: OLD})
    status = run("WaitingForLock")
    del status["stages"][0]["images"]
    world.kube.reads.clear()
    world.observe(release({**status, "phase": "Queued"}))
    lock, workload = (
        custom_path("environmentlocks", NAMESPACE, "staging"),
        workload_path("Deployment", "shop", "web"),
    )
    assert world.kube.reads.index(lock) < world.kube.reads.index(workload)


def test_a_passed_stage_reads_no_job_any_more() -> None:
    world = World(pipeline(), {WEB: NEW})
    assert job_path("shop", "j") not in reads(world, run("Passed", testJob="shop/j"))


def test_the_registry_is_asked_only_while_promoting() -> None:
    world = World(pipeline(registry={}), {WEB: OLD})
    world.registry.failure = ("unavailable", "registry down")
    promoting = world.observe(release(run("Promoting", images=None)))
    assert promoting.registry is not None and promoting.registry.failure == Failure.UNAVAILABLE
    assert world.observe(release(run("Testing"))).registry is None


def test_prometheus_is_asked_only_when_a_bake_evaluation_is_due() -> None:
    world = World(pipeline(), {WEB: NEW})
    world.prometheus.answer = Sample(0.0, 10)
    baking = run("Baking", analysis={"startedAt": "2026-05-01T09:00:00Z", "evaluations": []})
    baking["stages"][0].update(name="production", index=1, spec=pipeline().stages[1].to_spec(), lock=False)
    baking["stageIndex"] = 1
    assert world.observe(release(baking)).metrics == Sample(0.0, 10)
    evaluated = {"time": "2026-05-01T09:00:00Z", "verdict": "Healthy"}
    baking["stages"][0]["analysis"] = {"startedAt": "2026-05-01T09:00:00Z", "evaluations": [evaluated]}
    assert world.observe(release(baking)).metrics is None  # the next one is due 30 s later


# --- execute: one vocabulary for failures --------------------------------------------------------


def context(world: World) -> Context:
    return Context(release(), world.pipe, world.now, world.adapters)


def test_every_kind_of_effect_has_an_executor() -> None:
    assert set(typing.get_args(Effect)) == set(EXECUTORS)


def test_a_refused_image_change_is_reported_as_refused_and_stops_the_rest() -> None:
    world = World(pipeline(), {WEB: OLD})
    renamed = SetImages(((WEB, "nginx", NEW),))  # no such container
    job = CreateJob({"metadata": {"name": "j", "namespace": "shop"}, "spec": {}})
    failure = execute(context(world), (renamed, job))
    assert failure is not None
    assert (failure.effect, failure.failure) == (SetImages, Failure.REFUSED)
    assert "nginx" in failure.message
    assert job_path("shop", "j") not in world.kube.objects  # nothing after the failed effect ran


def test_a_missing_workload_is_refused_and_a_forbidden_one_unauthorized() -> None:
    world = World(pipeline(), {})
    failure = execute(context(world), (SetImages(((WEB, "web", NEW),)),))
    assert failure == EffectFailure(SetImages, Failure.REFUSED, failure.message if failure else "")

    def forbidden(path: str, ops: Any) -> Any:
        raise ApiError(403, "Forbidden", "deployments.apps is forbidden")

    world.deployment(WEB, OLD)
    world.kube.json_patch = forbidden  # type: ignore[method-assign]
    failure = execute(context(world), (SetImages(((WEB, "web", NEW),)),))
    assert failure is not None and failure.failure == Failure.UNAUTHORIZED


@pytest.mark.parametrize("status", [409, 429, 503])
def test_blips_are_not_failures_but_raised_so_the_tick_is_retried(status: int) -> None:
    world = World(pipeline(), {WEB: OLD})

    def blip(path: str, ops: Any) -> Any:
        raise ApiError(status, "Blip", "try again")

    world.kube.json_patch = blip  # type: ignore[method-assign]
    with pytest.raises(ApiError):
        execute(context(world), (SetImages(((WEB, "web", NEW),)),))


@pytest.mark.parametrize(
    ("kind", "failure"),
    [
        ("unavailable", Failure.UNAVAILABLE),
        ("auth", Failure.UNAUTHORIZED),
        ("collision", Failure.CONFLICT),
        ("invalid", Failure.REFUSED),
    ],
)
def test_registry_errors_in_the_domains_words(kind: str, failure: Failure) -> None:
    world = World(pipeline(), {WEB: OLD})
    world.registry.failure = (kind, "registry said no")
    op = TagOp("web", "reg.io/shop/web", DIGEST, "reg.io/prod/web", "v1.0.0")
    assert execute(context(world), (PromoteArtifacts((op,)),)) == EffectFailure(
        PromoteArtifacts, failure, "registry said no"
    )


def test_a_lock_effect_goes_through_the_lock_and_its_history() -> None:
    world = World(pipeline(), {WEB: OLD})
    assert execute(context(world), (AcquireLock("staging"),)) is None
    holder = world.lock.holder
    assert holder is not None and holder.claimant.uid == "uid-1"


# --- production is claimed through the ledger, one Release at a time ----------------------------


def claim(world: World, name: str, version: str) -> EffectFailure | None:
    view = ReleaseView(NAMESPACE, name, f"uid-{name}", 1, "shop", "shop", version, {"web": NEW}, {})
    entry = {"release": view.key, "uid": view.uid, "version": version, "images": [], "result": "Deploying"}
    return execute(Context(view, world.pipe, world.now, world.adapters), (ClaimProduction(entry),))


def stored_release(world: World, name: str) -> None:
    body = {"metadata": {"name": name, "namespace": NAMESPACE, "uid": f"uid-{name}"}, "spec": {}}
    world.kube.put(body, custom_path("releases", NAMESPACE, name))


def test_two_racing_claims_on_production_one_wins_the_other_is_told_who_holds_it() -> None:
    world = World(pipeline(), {WEB: OLD})
    stored_release(world, "v2")
    assert claim(world, "v2", "v2.0.0") is None
    lost = claim(world, "v3", "v3.0.0")
    assert lost is not None and lost.failure == Failure.CONFLICT and "team/v2" in lost.message
    assert [(e["release"], e["result"]) for e in world.history] == [("team/v2", "Deploying")]


def test_a_claim_older_than_what_production_runs_is_refused() -> None:
    world = World(pipeline(), {WEB: OLD})
    world.history = [{"release": "team/v2", "uid": "uid-v2", "version": "v2.0.0", "result": "Released"}]
    refused = claim(world, "v1", "v1.5.0")
    assert refused is not None and refused.failure == Failure.REFUSED
    assert "not newer than v2.0.0" in refused.message


def test_a_deleted_release_never_holds_production() -> None:
    world = World(pipeline(), {WEB: OLD})
    world.history = [{"release": "team/gone", "uid": "uid-gone", "version": "v2.0.0", "result": "Baking"}]
    assert claim(world, "v3", "v3.0.0") is None  # team/gone does not exist any more
    assert [(e["release"], e["result"]) for e in world.history] == [
        ("team/gone", "Abandoned"),
        ("team/v3", "Deploying"),
    ]


def test_a_stage_reads_only_its_own_workloads_however_many_stages_came_before() -> None:
    world = World(pipeline(), {WEB: NEW})
    status = run("RollingOut")
    earlier = {**status["stages"][0], "index": 0, "name": "dev", "step": "Passed", "lock": False}
    earlier["images"] = [{"workload": "Deployment/dev/web", "container": "web", "before": OLD, "after": NEW}]
    status["stages"] = [earlier, status["stages"][0]]
    status["stages"][1]["index"] = 1
    status["stageIndex"] = 1
    seen = reads(world, status)
    assert workload_path("Deployment", "dev", "web") not in seen


# --- two operators without peering ----------------------------------------------------------------


def test_a_workload_is_not_changed_from_a_decision_another_writer_has_overtaken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two operators decide from the same status; the one stalled between deciding and acting
    must not re-apply an image the other has since moved on from (it decides again instead)."""
    from gantry import reconciler as shell

    world = World(pipeline(), {WEB: OLD, WorkloadRef("Deployment", "prod", "web"): OLD})
    path = custom_path("releases", NAMESPACE, "shop-v1")
    spec = {"application": "shop", "version": "v1.0.0", "artifacts": [{"name": "web", "image": NEW}]}
    world.kube.put(
        {"metadata": {"name": "shop-v1", "namespace": NAMESPACE, "uid": "uid-1"}, "spec": spec}, path
    )
    decide = shell.decide
    overtaken: list[bool] = []

    def decide_then_be_overtaken(release: ReleaseView, observation: Any) -> Any:
        plan = decide(release, observation)
        if not overtaken and any(isinstance(e, SetImages) for e in plan.effects):
            overtaken.append(True)  # the other operator finished this Release meanwhile (here: gave up)
            world.kube.merge_patch(f"{path}/status", {"status": {"phase": "Failed", "reason": "Superseded"}})
        return plan

    monkeypatch.setattr(shell, "decide", decide_then_be_overtaken)
    reconciler = shell.ReleaseReconciler(
        world.resources, world.alerter, lambda body, event: None, lambda: world.now
    )
    reconciler.reconcile(NAMESPACE, "shop-v1")

    assert overtaken and world.images[WEB] == OLD  # the stale deploy never reached the workload
    assert world.kube.get(path)["status"]["phase"] == "Failed"  # type: ignore[index]
