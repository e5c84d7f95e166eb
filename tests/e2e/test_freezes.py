"""Governance on the EnvironmentLock with the real operator: a freeze window that holds normal
Releases and admits a hotfix, a break-glass override, and a real Alertmanager whose alert
stops the line while it fires and lifts it when it resolves."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gantry.domain.inputs import incidents
from tests.conftest import FAST
from tests.e2e import manifests as m
from tests.e2e.test_staging_flow import setup_app
from tests.harness.cluster import Cluster
from tests.harness.observability import Alertmanager, binaries_missing, free_port, require_binaries
from tests.harness.operator import OperatorThread, RecordingAlerter

pytestmark = pytest.mark.e2e
TOKEN = "stop-the-line-token"


def release(namespace: str, name: str, version: str, hotfix: bool = False) -> dict[str, Any]:
    manifest = m.release(namespace, name, name, version=version)
    manifest["spec"]["hotfix"] = hotfix
    return manifest


def status_of(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return cluster.release(namespace, name).get("status") or {}


def frozen_out(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return cluster.wait_for(
        f"{name} to be held by the freeze",
        lambda: (s := status_of(cluster, namespace, name)).get("reason") == "LockFrozen" and s,
    )


def window_open_now(name: str) -> dict[str, Any]:
    """A daily window in New York that opened a minute ago and stays open two hours."""
    local = datetime.now(UTC).astimezone(ZoneInfo("America/New_York"))
    start = (local - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M")
    return {
        "name": name,
        "start": start,
        "rrule": "FREQ=DAILY",
        "timeZone": "America/New_York",
        "duration": "2h",
        "reason": "quarter-end change freeze",
    }


def test_a_freeze_window_holds_a_normal_release_admits_a_hotfix_and_an_override_and_closes_on_the_record(
    cluster: Cluster, operator: OperatorThread, alerts: RecordingAlerter, namespace: str
) -> None:
    setup_app(cluster, namespace)
    lock = m.environment_lock(namespace, lease_seconds=300)
    lock["spec"]["freezeWindows"] = [window_open_now("quarter-end")]
    cluster.apply(lock)

    cluster.apply(release(namespace, "shop-v2", "v1.1.0"))
    held = frozen_out(cluster, namespace, "shop-v2")
    assert "in the freeze window quarter-end (quarter-end change freeze) until" in held["message"]
    assert "override-freeze shop-v2" in held["message"]
    assert cluster.images("Deployment", namespace, "web")["web"] == m.OLD_WEB  # nothing deployed
    window = cluster.wait_for(
        "the window on the lock",
        lambda: (cluster.must_get("EnvironmentLock", namespace, "staging").get("status") or {}).get("window"),
    )
    assert window["by"] == "window quarter-end" and window["until"] > window["since"]

    cluster.apply(release(namespace, "shop-v2-1", "v1.0.1", hotfix=True))
    hotfix = cluster.wait_for_phase(namespace, "shop-v2-1", "Verified", "Failed")
    assert hotfix["status"]["phase"] == "Verified", hotfix["status"]["message"]
    assert cluster.images("Deployment", namespace, "web")["web"] == m.image("web", "shop-v2-1")
    assert status_of(cluster, namespace, "shop-v2")["reason"] == "LockFrozen"  # still held

    cluster.apply(m.decision(namespace, "shop-v2", "OverrideFreeze", by="alice", reason="sev2 fix, CAB-991"))
    passed = cluster.wait_for_phase(namespace, "shop-v2", "Verified", "Failed")
    assert passed["status"]["phase"] == "Verified", passed["status"]["message"]
    assert cluster.images("Deployment", namespace, "web")["web"] == m.image("web", "shop-v2")
    said = [a.message for a, _ in alerts.alerts if a.reason == "FreezeOverridden"]
    assert len(said) == 1 and "alice" in said[0] and "CAB-991" in said[0]
    assert [d["action"] for d in passed["status"]["decisions"]] == ["OverrideFreeze"]

    cluster.apply(release(namespace, "shop-v3", "v1.2.0"))
    frozen_out(cluster, namespace, "shop-v3")
    cluster.kube.merge_patch(  # the team ends the freeze early: the window goes from the lock's spec
        f"/apis/gantry.dev/v1alpha1/namespaces/{namespace}/environmentlocks/staging",
        {"spec": {"freezeWindows": None}},
    )
    after = cluster.wait_for_phase(namespace, "shop-v3", "Verified", "Failed")
    assert after["status"]["phase"] == "Verified", after["status"]["message"]
    history = cluster.must_get("EnvironmentLock", namespace, "staging")["status"]["history"]
    assert ("freeze window quarter-end", "FreezeWindowClosed") in [
        (h["release"], h["reason"]) for h in history
    ]


def test_an_alertmanager_alert_freezes_the_environment_it_names_until_it_resolves(
    cluster: Cluster, namespace: str, tmp_path: Path, alerts: RecordingAlerter
) -> None:
    require_binaries(binaries_missing(), "prometheus prometheus-alertmanager")
    port = free_port()
    running = OperatorThread(replace(FAST, webhook_port=port, webhook_address="127.0.0.1"), alerts).start()
    receiver = {
        "url": f"http://127.0.0.1:{port}/hooks/alertmanager/{namespace}",
        "send_resolved": True,
        "http_config": {"authorization": {"type": "Bearer", "credentials": TOKEN}},
    }
    config = {
        "route": {
            "receiver": "gantry",
            "group_by": ["alertname"],
            "group_wait": "1s",
            "group_interval": "1s",
        },
        "receivers": [{"name": "gantry", "webhook_configs": [receiver]}],
    }
    manager = Alertmanager(tmp_path / "alertmanager", config).start()
    try:
        setup_app(cluster, namespace)
        cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": incidents.SECRET, "namespace": namespace},
                "data": {incidents.SECRET_KEY: base64.b64encode(TOKEN.encode()).decode()},
            }
        )
        began = datetime.now(UTC)
        alert = {
            "labels": {
                "alertname": "CheckoutErrors",
                "severity": "critical",
                incidents.ENVIRONMENT_LABEL: "staging",
            },
            "annotations": {"summary": "checkout 5xx above 5% for 5m"},
            "startsAt": began.isoformat(),
            "endsAt": (began + timedelta(hours=1)).isoformat(),
        }
        manager.post([alert])
        incident = cluster.wait_for(
            "Alertmanager's notification to freeze staging",
            lambda: (
                (cluster.get("EnvironmentLock", namespace, "staging") or {}).get("status", {}).get("incident")
            ),
            timeout=30,
        )
        assert (incident["by"], incident["reason"]) == ("CheckoutErrors", "checkout 5xx above 5% for 5m")

        cluster.apply(release(namespace, "shop-v2", "v1.1.0"))
        held = frozen_out(cluster, namespace, "shop-v2")
        assert "frozen by the incident alert CheckoutErrors (checkout 5xx above 5% for 5m" in held["message"]
        assert "the alert resolves" in held["message"]
        cluster.apply(release(namespace, "shop-v2-1", "v1.0.1", hotfix=True))
        hotfix = cluster.wait_for_phase(namespace, "shop-v2-1", "Verified", "Failed")
        assert hotfix["status"]["phase"] == "Verified", hotfix["status"]["message"]
        assert status_of(cluster, namespace, "shop-v2")["reason"] == "LockFrozen"

        manager.post([{**alert, "endsAt": datetime.now(UTC).isoformat()}])  # the incident is over
        after = cluster.wait_for_phase(namespace, "shop-v2", "Verified", "Failed", timeout=60)
        assert after["status"]["phase"] == "Verified", after["status"]["message"]
        status = cluster.must_get("EnvironmentLock", namespace, "staging")["status"]
        assert "incident" not in status
        ended = [h for h in status["history"] if h["reason"] == "IncidentResolved"]
        assert [h["release"] for h in ended] == ["freeze by incident CheckoutErrors"]
    finally:
        manager.stop()
        running.stop()
