"""One reconcile walks a Release as far as it goes; its way-stations (the next stage's door, a lock
asked for) are written with the step that follows them, never before an effect that needs them on
record, and the Pipeline is read once per reconcile."""

from __future__ import annotations

from typing import Any

from gantry import reconciler as shell
from gantry.adapters.kube import custom_path, workload_path
from gantry.domain.inputs.pipeline import Pipeline, parse_pipeline
from gantry.domain.inputs.workloads import WorkloadRef
from tests.unit.world import NAMESPACE, World

OLD = "reg.io/shop/web@sha256:" + "0" * 64
NEW = "reg.io/shop/web@sha256:" + "1" * 64
DEV, STAGING, PROD = (WorkloadRef("Deployment", ns, "web") for ns in ("dev", "shop", "prod"))
RELEASE = custom_path("releases", NAMESPACE, "shop-v1")


def pipeline() -> Pipeline:
    spec = {
        "application": "shop",
        "stages": [
            {"name": "dev", "lock": True, "targets": [{"namespace": "dev", "name": "web"}]},
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


class Recorder:
    """What reached the API server, in order: the Release's status writes and the image changes
    (with what the Release had on record at that moment)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.writes: list[dict[str, Any]] = []
        self.deploys: list[tuple[str, dict[str, Any]]] = []  # (workload path, the Release's status then)
        merge_patch, json_patch = world.kube.merge_patch, world.kube.json_patch

        def recorded_merge(path: str, patch: Any) -> dict[str, Any]:
            if path == f"{RELEASE}/status":
                self.writes.append(dict(patch["status"]))
            return merge_patch(path, patch)

        def recorded_json(path: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
            self.deploys.append((path, dict(world.kube.objects[RELEASE].get("status") or {})))
            return json_patch(path, ops)

        world.kube.merge_patch = recorded_merge  # type: ignore[method-assign]
        world.kube.json_patch = recorded_json  # type: ignore[method-assign]


def drive(world: World) -> tuple[Recorder, int, int]:
    """Reconcile until the Release waits at production's door, the controllers rolling out in
    between; how many reconciles that took and how many times the Pipeline was read."""
    spec = {"application": "shop", "version": "v1.0.0", "artifacts": [{"name": "web", "image": NEW}]}
    world.kube.put(
        {"metadata": {"name": "shop-v1", "namespace": NAMESPACE, "uid": "uid-1"}, "spec": spec}, RELEASE
    )
    recorder = Recorder(world)
    reconciler = shell.ReleaseReconciler(
        world.resources, world.alerter, lambda body, event: None, lambda: world.now
    )
    world.kube.reads.clear()
    reconciles = 0
    while world.kube.objects[RELEASE].get("status", {}).get("phase") != "Verified":
        assert reconciles < 12, world.kube.objects[RELEASE].get("status")
        reconciler.reconcile(NAMESPACE, "shop-v1")
        reconciles += 1
        for ref in (DEV, STAGING):
            world.roll_out(ref)
    pipeline_reads = world.kube.reads.count(custom_path("pipelines", NAMESPACE, "shop"))
    return recorder, reconciles, pipeline_reads


def test_way_stations_are_in_the_history_but_written_with_the_step_after_them() -> None:
    world = World(pipeline(), {DEV: OLD, STAGING: OLD, PROD: OLD})
    recorder, _, _ = drive(world)
    history = [(h.get("stage"), h["reason"]) for h in world.kube.objects[RELEASE]["status"]["history"]]
    for stage in ("dev", "staging"):  # every transition is on record, the way-stations too
        assert (stage, "WaitingForLock") in history
        assert (stage, "LockAcquired") in history
    assert ("dev", "StagePassed") in history
    written = [(w.get("phase"), w.get("reason")) for w in recorder.writes]
    assert ("Queued", "WaitingForLock") not in written  # the lock was free: it came with LockAcquired
    assert ("Pending", "StagePassed") not in written  # the next stage's door came with its lock
    assert len(recorder.writes) < len(history)


def test_an_image_changes_only_once_what_it_replaces_is_on_record() -> None:
    world = World(pipeline(), {DEV: OLD, STAGING: OLD, PROD: OLD})
    recorder, _, _ = drive(world)
    assert [path for path, _ in recorder.deploys] == [
        workload_path("Deployment", "dev", "web"),
        workload_path("Deployment", "shop", "web"),
    ]
    for index, (_, status) in enumerate(recorder.deploys):  # the stage's record, written before
        record = status["stages"][index]
        assert record["images"][0]["before"] == OLD and record["images"][0]["after"] == NEW
        assert status["lock"]["name"] == record["environment"]  # and under its lock
    assert world.images[DEV] == NEW and world.images[STAGING] == NEW and world.images[PROD] == OLD


def test_the_pipeline_is_read_once_per_reconcile() -> None:
    world = World(pipeline(), {DEV: OLD, STAGING: OLD, PROD: OLD})
    _, reconciles, pipeline_reads = drive(world)
    assert pipeline_reads == reconciles
