"""Two replicas with Kopf peering, as the chart deploys them: one acts, the other stands by, and the
standby takes over when the active one is SIGKILLed. Peering objects come from the rendered chart."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from gantry.settings import Config
from tests.e2e import manifests as m
from tests.e2e.test_staging_flow import setup_app
from tests.harness.cluster import Cluster
from tests.harness.operator import OperatorProcess
from tests.helm.test_chart import by_kind, render

pytestmark = pytest.mark.e2e
HA = Config(
    reconcile_interval=0.2,
    waiting_interval=0.3,
    lock_sweep_interval=0.5,
    metrics_port=0,
    peering="gantry",
    peering_lifetime=3,
)


def test_one_replica_acts_and_the_standby_takes_over_when_it_dies(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    docs = render()
    for doc in by_kind(docs, "CustomResourceDefinition") + by_kind(docs, "ClusterKopfPeering"):
        cluster.apply(doc)
    setup_app(cluster, namespace)

    def peers() -> dict[str, dict[str, object]]:
        return cluster.must_get("ClusterKopfPeering", None, "gantry").get("status") or {}

    active_config, standby_config = replace(HA, peering_priority=200), replace(HA, peering_priority=100)
    active = OperatorProcess(cluster.kubeconfig, active_config, tmp_path / "active.log").start()
    cluster.wait_for("the first replica to announce itself", lambda: len(peers()) == 1, timeout=30)
    standby = OperatorProcess(cluster.kubeconfig, standby_config, tmp_path / "standby.log").start()
    cluster.wait_for("the second replica to announce itself", lambda: len(peers()) == 2, timeout=30)
    try:
        cluster.apply(m.release(namespace, "shop-v1", "v1"))
        assert (
            cluster.wait_for_phase(namespace, "shop-v1", "Verified", "Failed", timeout=60)["status"]["phase"]
            == "Verified"
        )
        resumed = "Resuming the watch-stream for releases"  # Kopf's words when a replica starts to act
        assert resumed in (tmp_path / "active.log").read_text()
        assert resumed not in (tmp_path / "standby.log").read_text()  # it has stood by all along
        assert sorted(int(str(p["priority"])) for p in peers().values()) == [100, 200]

        active.kill()
        cluster.apply(m.release(namespace, "shop-v2", "v2", version="v1.1.0"))
        body = cluster.wait_for_phase(namespace, "shop-v2", "Verified", "Failed", timeout=60)
        assert body["status"]["phase"] == "Verified"  # done by the former standby
        assert resumed in (tmp_path / "standby.log").read_text()
        assert len(cluster.list("Job", namespace, "gantry.dev/release=shop-v2")) == 1
    finally:
        active.stop()
        standby.stop()
