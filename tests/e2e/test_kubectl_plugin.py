"""`kubectl gantry` against the API server while the real operator runs: status, history, the
buttons (a rollback through the plugin really rolls production back), locks, and clear errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gantry.plugin.main import main
from tests.e2e import manifests as m
from tests.harness.cluster import Cluster
from tests.harness.operator import OperatorThread

pytestmark = pytest.mark.e2e
PROD = "shop-prod"


def kubectl_gantry(*argv: str) -> tuple[int, str]:
    lines: list[str] = []
    code = main(list(argv), out=lines.append)
    return code, "\n".join(lines)


def setup(cluster: Cluster, namespace: str) -> None:
    for workload in m.workloads(namespace) + m.workloads(PROD):
        cluster.apply(workload)
    pipeline = m.pipeline(namespace)
    pipeline["spec"]["stages"][1].update(
        promotion="Auto", targets=[{"namespace": PROD, "name": "web"}, {"namespace": PROD, "name": "worker"}]
    )
    cluster.apply(pipeline)


def released(cluster: Cluster, namespace: str, name: str, version: str) -> dict[str, Any]:
    cluster.apply(m.release(namespace, name, name, version=version))
    body = cluster.wait_for_phase(namespace, name, "Released", "Failed", "Blocked", timeout=60)
    assert body["status"]["phase"] == "Released", body["status"]["message"]
    return body


def test_status_history_and_a_rollback_pressed_from_the_plugin(
    cluster: Cluster, namespace: str, operator: OperatorThread
) -> None:
    setup(cluster, namespace)
    released(cluster, namespace, "shop-v1", "v1.0.0")
    released(cluster, namespace, "shop-v2", "v1.1.0")

    code, table = kubectl_gantry("-n", namespace, "status", "shop")
    assert code == 0
    lines = table.splitlines()
    assert lines[0].startswith("shop (") and lines[1].split() == [
        "ENVIRONMENT",
        "VERSION",
        "RELEASE",
        "DIGEST",
        "SINCE",
        "LOCK",
        "HOLDER",
        "QUEUE",
    ]
    staging, production = lines[2].split(), lines[3].split()
    assert staging[:3] == ["staging", "v1.1.0", "shop-v2"] and production[:3] == [
        "production",
        "v1.1.0",
        "shop-v2",
    ]
    digest = m.digest("shop-v2").removeprefix("sha256:")[:12]
    assert digest in staging[3] and digest in production[3]
    assert len({line.index("VERSION") for line in lines[1:2]}) == 1  # aligned columns

    code, raw = kubectl_gantry("-n", namespace, "-o", "json", "status", "shop")
    rows = json.loads(raw)["rows"]
    assert [(r["environment"], r["version"], r["lock_holder"]) for r in rows] == [
        ("staging", "v1.1.0", "-"),
        ("production", "v1.1.0", "-"),
    ]

    code, said = kubectl_gantry("-n", namespace, "rollback", "shop", "--reason", "checkout errors")
    assert code == 0 and "Rollback on shop-v2" in said
    rolled_back = cluster.wait_for_phase(namespace, "shop-v2", "RolledBack", "Failed", timeout=60)
    assert rolled_back["status"]["phase"] == "RolledBack"
    assert cluster.images("Deployment", PROD, "web")["web"] == m.image("web", "shop-v1")

    code, raw = kubectl_gantry("-n", namespace, "-o", "yaml", "history", "shop")
    assert code == 0
    import yaml

    history = yaml.safe_load(raw)
    assert [(h["version"], h["result"]) for h in history] == [
        ("v1.0.0", "Released"),
        ("v1.1.0", "RolledBack"),
        ("v1.0.0", "Restored"),
    ]
    code, table = kubectl_gantry("-n", namespace, "status", "shop")
    assert table.splitlines()[3].split()[:3] == ["production", "v1.0.0", "shop-v1"]


def test_freezing_a_lock_holds_new_releases_until_it_is_unfrozen(
    cluster: Cluster, namespace: str, operator: OperatorThread
) -> None:
    setup(cluster, namespace)
    released(cluster, namespace, "shop-v1", "v1.0.0")
    code, said = kubectl_gantry("-n", namespace, "lock", "freeze", "staging", "--reason", "change freeze")
    assert code == 0 and "frozen" in said
    code, table = kubectl_gantry("-n", namespace, "lock", "status")
    assert "change freeze" in table and table.splitlines()[1].split()[0] == "staging"

    cluster.apply(m.release(namespace, "shop-v2", "v2", version="v1.1.0"))
    cluster.wait_for(
        "shop-v2 to wait on the frozen lock",
        lambda: (cluster.release(namespace, "shop-v2").get("status") or {}).get("reason") == "LockFrozen",
        timeout=30,
    )
    assert cluster.images("Deployment", namespace, "web")["web"] == m.image("web", "shop-v1")
    code, _ = kubectl_gantry("-n", namespace, "lock", "unfreeze", "staging")
    assert code == 0
    body = cluster.wait_for_phase(namespace, "shop-v2", "Released", "Failed", timeout=60)
    assert body["status"]["phase"] == "Released"


def test_mistakes_get_an_error_that_says_what_to_do(
    cluster: Cluster, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    setup(cluster, namespace)
    assert kubectl_gantry("-n", namespace, "approve", "shop-v9")[0] == 1
    assert "Release 'shop-v9' not found" in capsys.readouterr().err
    assert kubectl_gantry("-n", namespace, "rollback", "shop")[0] == 1
    assert "nothing in production yet" in capsys.readouterr().err
    assert kubectl_gantry("-n", namespace, "status", "nope")[0] == 1
    assert "no Pipeline for application 'nope'" in capsys.readouterr().err
    assert kubectl_gantry("-n", namespace, "lock", "freeze")[0] == 1
    assert "needs an ENVIRONMENT" in capsys.readouterr().err


def test_a_freeze_by_hand_is_the_locks_spec_and_leaves_its_status_to_gantry(
    cluster: Cluster, namespace: str, operator: OperatorThread
) -> None:
    setup(cluster, namespace)
    released(cluster, namespace, "shop-v1", "v1.0.0")
    history = cluster.must_get("EnvironmentLock", namespace, "staging")["status"]["history"]
    assert kubectl_gantry("-n", namespace, "lock", "freeze", "staging", "--reason", "quarter end")[0] == 0
    lock = cluster.must_get("EnvironmentLock", namespace, "staging")
    assert lock["spec"]["freeze"]["reason"] == "quarter end" and lock["spec"]["freeze"]["by"]
    assert "frozen" not in lock["status"]  # status.frozen is an emergency's, set only by Gantry
    assert lock["status"]["history"] == history
    cluster.apply(m.release(namespace, "shop-v2", "v2", version="v1.1.0"))
    cluster.wait_for(
        "shop-v2 to say who froze the lock and how to lift it",
        lambda: (
            "kubectl gantry lock unfreeze staging"
            in ((cluster.release(namespace, "shop-v2").get("status") or {}).get("message") or "")
        ),
        timeout=30,
    )
    assert kubectl_gantry("-n", namespace, "lock", "unfreeze", "staging")[0] == 0
    assert "freeze" not in cluster.must_get("EnvironmentLock", namespace, "staging")["spec"]
