"""Retention with the real operator: of a Pipeline's finished Releases, the newest N stay, and so
do those still referenced (production's history, which a rollback returns to; the newest to have
passed a stage); the rest are deleted, each leaving its line in the production ledger; a Release
in flight is never touched; a dry run only reports."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from tests.conftest import FAST
from tests.e2e import manifests as m
from tests.harness.cluster import Cluster
from tests.harness.operator import OperatorThread, RecordingAlerter

pytestmark = pytest.mark.e2e
PIPELINE_PATH = "/apis/gantry.dev/v1alpha1/namespaces/{ns}/pipelines/shop"


@pytest.fixture
def sweeping(cluster: Cluster) -> Iterator[OperatorThread]:
    """The operator sweeping every half second (the default is ten minutes)."""
    running = OperatorThread(replace(FAST, retention_interval=0.5), RecordingAlerter()).start()
    yield running
    running.stop()


def with_script(
    cluster: Cluster, namespace: str, script: str, retention: dict[str, Any] | None = None
) -> None:
    pipeline = m.pipeline(namespace, script=script)
    pipeline["spec"]["stages"][1]["promotion"] = "Auto"  # production on its own: Released, finished
    pipeline["spec"]["stages"][0]["targets"] = pipeline["spec"]["stages"][0]["targets"][:1]  # web only
    if retention is not None:
        pipeline["spec"]["retention"] = retention
    cluster.apply(pipeline)


def release(cluster: Cluster, namespace: str, name: str, version: str, *phases: str) -> dict[str, Any]:
    cluster.apply(m.release(namespace, name, name, version=version, artifacts={"web": m.image("web", name)}))
    return cluster.wait_for_phase(namespace, name, *phases, timeout=60)


def finished_labelled(cluster: Cluster, namespace: str, names: list[str]) -> None:
    cluster.wait_for(
        "the finished label on every finished Release",
        lambda: all(
            "gantry.dev/finished" in (cluster.release(namespace, n)["metadata"].get("labels") or {})
            for n in names
        ),
    )


def test_retention_keeps_the_newest_and_the_referenced_deletes_the_rest_and_the_ledger_remembers(
    cluster: Cluster, sweeping: OperatorThread, namespace: str
) -> None:
    for workload in m.workloads(namespace):
        cluster.apply(workload)
    with_script(cluster, namespace, "exit 0")
    for i in (1, 2, 3):
        done = release(cluster, namespace, f"shop-v{i}", f"v1.{i}.0", "Released", "Failed")
        assert done["status"]["phase"] == "Released", done["status"]["message"]
    with_script(cluster, namespace, "exit 1")  # the next four fail their tests in staging
    for i in (1, 2, 3, 4):
        done = release(cluster, namespace, f"shop-f{i}", f"v1.3.{i}", "Failed", "Released")
        assert done["status"]["phase"] == "Failed"
    with_script(cluster, namespace, "sleep infinity")  # and this one is in flight, testing, throughout
    cluster.apply(
        m.release(namespace, "shop-busy", "busy", version="v1.4.0", artifacts={"web": m.image("web", "b")})
    )
    cluster.wait_for(
        "shop-busy to test",
        lambda: (cluster.release(namespace, "shop-busy").get("status") or {}).get("step") == "Testing",
    )
    finished = ["shop-v1", "shop-v2", "shop-v3", "shop-f1", "shop-f2", "shop-f3", "shop-f4"]
    finished_labelled(cluster, namespace, finished)
    cluster.kube.merge_patch(  # as an older Gantry left it: finished, without its Pipeline's label
        f"/apis/gantry.dev/v1alpha1/namespaces/{namespace}/releases/shop-f1",
        {"metadata": {"labels": {"gantry.dev/pipeline": None}}},
    )

    with_script(cluster, namespace, "sleep infinity", {"keepFinished": 2, "afterSeconds": 0, "dryRun": True})
    report = cluster.wait_for(
        "the dry run's report",
        lambda: (
            (cluster.must_get("Pipeline", namespace, "shop").get("status") or {})
            .get("retention", {})
            .get("dryRun")
            and cluster.must_get("Pipeline", namespace, "shop")["status"]["retention"]
        ),
    )
    assert (report["wouldDelete"], report["names"]) == (2, ["shop-f1", "shop-f2"])
    assert all(cluster.get("Release", namespace, n) is not None for n in finished)  # nothing deleted

    with_script(cluster, namespace, "sleep infinity", {"keepFinished": 2, "afterSeconds": 0})
    cluster.wait_for(
        "shop-f1 and shop-f2 to be deleted", lambda: cluster.get("Release", namespace, "shop-f2") is None
    )
    assert cluster.get("Release", namespace, "shop-f1") is None
    kept = [
        "shop-v1",
        "shop-v2",
        "shop-v3",
        "shop-f3",
        "shop-f4",
    ]  # ledger (v2: v3's rollback target), newest 2
    assert all(cluster.get("Release", namespace, n) is not None for n in kept)
    busy = cluster.release(namespace, "shop-busy")["status"]
    assert busy["step"] == "Testing"  # in flight: untouched

    ledger = cluster.must_get("ProductionLedger", namespace, "shop")["status"]
    lines = {r["release"]: r for r in ledger["retired"]}
    assert set(lines) == {"shop-f1", "shop-f2"} and ledger["retiredCount"] == 2
    assert (lines["shop-f1"]["phase"], lines["shop-f1"]["version"], lines["shop-f1"]["application"]) == (
        "Failed",
        "v1.3.1",
        "shop",
    )
    status = cluster.must_get("Pipeline", namespace, "shop")["status"]["retention"]
    assert status["dryRun"] is False and status["kept"] == 5
    cluster.wait_for(
        "a later sweep to find nothing more",
        lambda: cluster.must_get("Pipeline", namespace, "shop")["status"]["retention"]["deleted"] == 0,
    )
    assert cluster.must_get("ProductionLedger", namespace, "shop")["status"]["retiredCount"] == 2  # once each
