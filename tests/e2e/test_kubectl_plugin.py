"""`kubectl gantry` against the API server while the real operator runs: status, history, the
buttons (a rollback through the plugin really rolls production back), locks, and clear errors."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from gantry.domain.records import locks
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
    digest = "sha256:" + m.digest("shop-v2").removeprefix("sha256:")[:12]  # the one shortening rule
    assert digest in staging[3] and digest in production[3]
    assert len({line.index("VERSION") for line in lines[1:2]}) == 1  # aligned columns

    # kubectl's convention: flags after the command too; -o json gives raw values for scripts.
    code, raw = kubectl_gantry("status", "shop", "-n", namespace, "-o", "json")
    document = json.loads(raw)
    assert document["schema"] == "gantry.dev/status/v1"  # a stable schema, not the display tables
    (shop,) = document["applications"]
    assert (shop["application"], shop["namespace"], shop["pipeline"]) == ("shop", namespace, "shop")
    rows = shop["environments"]
    assert [(r["environment"], r["version"], r["lockHolder"]) for r in rows] == [
        ("staging", "v1.1.0", None),
        ("production", "v1.1.0", None),
    ]
    assert m.digest("shop-v2") in rows[1]["digests"] and rows[1]["since"].endswith("Z")  # RFC 3339
    assert shop["releases"] == []

    code, said = kubectl_gantry("rollback", "shop", "-n", namespace, "--reason", "checkout errors")
    assert code == 1  # changes production: no terminal here, so it asks for --yes and does nothing
    assert not cluster.list("ReleaseDecision", namespace)
    code, said = kubectl_gantry("rollback", "shop", "-n", namespace, "--reason", "checkout errors", "--yes")
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

    # The rolled-back digests are quarantined; lift-quarantine is a decision on the record.
    ledger = cluster.must_get("ProductionLedger", namespace, "shop")["status"]
    assert m.digest("shop-v2") in json.dumps(ledger.get("quarantine"))
    code, said = kubectl_gantry("lift-quarantine", "shop-v2", "-n", namespace, "--reason", "false alarm")
    assert code == 0 and "LiftQuarantine on shop-v2" in said
    cluster.wait_for(
        "the quarantine lifted",
        lambda: (
            m.digest("shop-v2")
            not in json.dumps(
                cluster.must_get("ProductionLedger", namespace, "shop")["status"].get("quarantine")
            )
        ),
        timeout=30,
    )


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
    assert kubectl_gantry("-n", "nope-no-such-namespace", "status")[0] == 1  # not "No Pipelines", exit 0
    assert "namespace 'nope-no-such-namespace' does not exist" in capsys.readouterr().err


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


def test_an_incidents_freeze_is_lifted_only_with_a_reason_and_a_window_is_not_lifted_by_hand(
    cluster: Cluster, namespace: str, operator: OperatorThread, capsys: pytest.CaptureFixture[str]
) -> None:
    setup(cluster, namespace)
    released(cluster, namespace, "shop-v1", "v1.0.0")
    incident = locks.incident_fires(
        locks.LockState(), "CheckoutErrors", "f1", "checkout 5xx", datetime.now(UTC)
    )
    path = f"/apis/gantry.dev/v1alpha1/namespaces/{namespace}/environmentlocks/staging"
    cluster.kube.merge_patch(
        f"{path}/status", {"status": {"incident": locks.to_status(incident)["incident"]}}
    )
    assert kubectl_gantry("-n", namespace, "lock", "unfreeze", "staging")[0] == 1
    assert "frozen by the incident alert CheckoutErrors" in capsys.readouterr().err
    assert kubectl_gantry("-n", namespace, "lock", "unfreeze", "staging", "--reason", "false alarm")[0] == 0
    status = cluster.must_get("EnvironmentLock", namespace, "staging")["status"]
    assert status["incident"]["liftedBy"] and status["history"][-1]["reason"].endswith(": false alarm")
    assert released(cluster, namespace, "shop-v2", "v1.1.0")  # the line moves again

    start = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M")  # a UTC window open since this minute
    window = {"name": "quarter-end", "start": start, "rrule": "FREQ=DAILY", "duration": "1h"}
    cluster.kube.merge_patch(path, {"spec": {"freezeWindows": [window]}})
    assert kubectl_gantry("-n", namespace, "lock", "unfreeze", "staging")[0] == 1
    assert "it is in the freeze window quarter-end until it closes" in capsys.readouterr().err
    code, table = kubectl_gantry("-n", namespace, "lock", "status")
    assert (
        code == 0
        and "NEXT WINDOW" in table
        and "window quarter-end (a recurring freeze window; until" in table
    )


def test_status_shows_what_is_in_flight_and_what_waits_on_a_person(
    cluster: Cluster, namespace: str, operator: OperatorThread
) -> None:
    setup(cluster, namespace)
    pipeline = cluster.must_get("Pipeline", namespace, "shop")
    pipeline["spec"]["stages"][1]["promotion"] = "Manual"
    cluster.apply(pipeline)
    cluster.apply(m.release(namespace, "shop-v1", "v1", version="v1.0.0"))
    cluster.wait_for_phase(namespace, "shop-v1", "Verified", timeout=60)
    code, table = kubectl_gantry("status", "-n", namespace)
    assert code == 0
    flight = table.split("in flight: shop")[1].splitlines()
    assert flight[2].split()[:5] == ["shop-v1", "v1.0.0", "staging", "Verified", "Passed"]
    assert "shop-v1 waits for approval to go to production:" in table
    assert f"  | web: nothing in production → sha256:{m.digest('v1')[7:19]}" in table  # what it decides
    assert f"kubectl gantry -n {namespace} approve shop-v1 --reason" in table
    _, raw = kubectl_gantry("status", "-n", namespace, "-o", "yaml")
    import yaml

    (record,) = yaml.safe_load(raw)["applications"][0]["releases"]
    assert record["waitsOnAPerson"] is True and record["phase"] == "Verified"
    assert f"worker: nothing in production → sha256:{m.digest('v1')[7:19]}" in record["changes"]
    assert record["commands"] == [f"kubectl gantry -n {namespace} approve shop-v1 --reason '…'"]


def test_a_stage_that_asks_for_approval_says_so_and_approve_lets_the_release_in(
    cluster: Cluster, namespace: str, operator: OperatorThread, capsys: pytest.CaptureFixture[str]
) -> None:
    setup(cluster, namespace)
    pipeline = cluster.must_get("Pipeline", namespace, "shop")
    pipeline["spec"]["stages"][0]["promotion"] = "Manual"  # staging: approval to enter
    cluster.apply(pipeline)
    cluster.apply(m.release(namespace, "shop-v1", "v1", version="v1.0.0"))
    cluster.wait_for_phase(namespace, "shop-v1", "AwaitingApproval", timeout=60)
    code, table = kubectl_gantry("status", "-n", namespace)
    assert code == 0
    assert "shop-v1 waits for approval to enter stage staging:" in table
    assert f"kubectl gantry -n {namespace} approve shop-v1 --reason" in table
    assert cluster.images("Deployment", namespace, "web")["web"] == m.OLD_WEB  # nothing deployed yet
    code, said = kubectl_gantry("-n", namespace, "fail-forward", "shop-v1", "--reason", "not yet")
    refused = capsys.readouterr().err
    assert code == 1, said
    assert refused.startswith("error: FailForward Rejected: FailForward applies to a Release that is ")
    assert "this one is AwaitingApproval" in refused  # said at once, not only in kubectl get rd
    code, said = kubectl_gantry("-n", namespace, "approve", "shop-v1", "--reason", "change window open")
    assert code == 0, said
    assert said.splitlines()[-1] == "Applied: Approve recorded on Release shop-v1"
    passed = cluster.wait_for_phase(namespace, "shop-v1", "Released", "Failed", "Blocked", timeout=60)
    assert passed["status"]["phase"] == "Released"  # production: promotion Auto in this Pipeline
    assert passed["status"]["stages"][0]["decidedBy"]  # who let it into staging, on the record
    assert cluster.images("Deployment", namespace, "web")["web"] == m.image("web", "v1")


def test_all_namespaces_watch_and_completion(
    cluster: Cluster, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup(cluster, namespace)
    cluster.apply(m.pipeline("other-team", name="cart"))
    code, table = kubectl_gantry("status", "-A")
    assert code == 0 and f"shop ({namespace}/shop)" in table and "(other-team/cart)" in table

    frames: list[str] = []

    def interrupted() -> None:
        raise KeyboardInterrupt  # Ctrl-C after the first frame

    import gantry.plugin.main as plugin

    # Only the watch's own pause: patching time.sleep would reach every thread of the test process.
    monkeypatch.setattr(plugin, "between_frames", interrupted)
    assert plugin.main(["status", "shop", "-n", namespace, "--watch"], out=frames.append) == 130
    assert len(frames) == 1 and frames[0].startswith("shop (")

    assert kubectl_gantry("__complete", "st")[1] == "status"
    cluster.apply(m.release(namespace, "shop-v7", "shop-v7", version="v1.7.0"))
    assert "shop-v7" in kubectl_gantry("__complete", "approve", "-n", namespace, "shop-")[1].split()
    assert kubectl_gantry("__complete", "-n", namespace, "rollback", "sh")[1].split() == ["shop"]
    after_name = kubectl_gantry("__complete", "-n", namespace, "approve", "shop-v7", "")[1].split()
    assert "--reason" in after_name and "shop-v7" not in after_name  # its name is typed already
    assert "--yes" in kubectl_gantry("__complete", "rollback", "--")[1].split()
    assert kubectl_gantry("__complete", "lock", "")[1].split()[-3:] == ["freeze", "status", "unfreeze"]
    code, script = kubectl_gantry("completion", "bash")
    assert code == 0 and "kubectl-gantry __complete" in script and "complete -F" in script


def test_a_deleted_production_ledger_keeps_counting_and_the_plugin_acts_on_what_production_runs(
    cluster: Cluster, namespace: str, operator: OperatorThread
) -> None:
    setup(cluster, namespace)
    released(cluster, namespace, "shop-v1", "v1.0.0")
    released(cluster, namespace, "shop-v2", "v1.1.0")
    before = cluster.must_get("ProductionLedger", namespace, "shop")["status"]["revision"]

    cluster.delete("ProductionLedger", namespace, "shop")  # by hand, or a pruning GitOps sync
    cluster.wait_for(
        "the ledger to be gone", lambda: cluster.get("ProductionLedger", namespace, "shop") is None
    )
    released(cluster, namespace, "shop-v3", "v1.2.0")

    ledger = cluster.must_get("ProductionLedger", namespace, "shop")["status"]
    assert ledger["revision"] > before  # the revision never goes back, so the Pipeline's mirror follows
    assert [(e["version"], e["result"]) for e in ledger["production"]["history"]][-3:] == [
        ("v1.0.0", "Released"),
        ("v1.1.0", "Released"),
        ("v1.2.0", "Released"),
    ]
    cluster.wait_for(
        "the Pipeline to mirror the newest ledger",
        lambda: (
            (cluster.must_get("Pipeline", namespace, "shop").get("status") or {}).get("ledgerRevision")
            == ledger["revision"]
        ),
    )
    import yaml

    _, raw = kubectl_gantry("-n", namespace, "-o", "yaml", "history", "shop")
    assert [h["version"] for h in yaml.safe_load(raw)][-1] == "v1.2.0"
    code, said = kubectl_gantry("rollback", "shop", "-n", namespace, "--reason", "errors", "--yes")
    assert code == 0 and "Rollback on shop-v3" in said  # what production runs, not a stale copy
    body = cluster.wait_for_phase(namespace, "shop-v3", "RolledBack", "Failed", timeout=60)
    assert body["status"]["phase"] == "RolledBack"
    assert cluster.images("Deployment", PROD, "web")["web"] == m.image("web", "shop-v2")


def test_the_reason_given_with_a_button_is_kept_in_the_ledger_and_shown_by_history(
    cluster: Cluster, namespace: str, operator: OperatorThread
) -> None:
    import yaml

    setup(cluster, namespace)
    released(cluster, namespace, "shop-v1", "v1.0.0")
    pipeline = cluster.must_get("Pipeline", namespace, "shop")
    pipeline["spec"]["stages"][1]["promotion"] = "Manual"
    cluster.apply(pipeline)
    cluster.apply(m.release(namespace, "shop-v2", "shop-v2", version="v1.1.0"))
    cluster.wait_for_phase(namespace, "shop-v2", "Verified", timeout=60)
    code, _ = kubectl_gantry("-n", namespace, "approve", "shop-v2", "--reason", "CHG-42 signed off")
    assert code == 0
    assert (
        cluster.wait_for_phase(namespace, "shop-v2", "Released", "Failed", timeout=60)["status"]["phase"]
        == "Released"
    )
    _, raw = kubectl_gantry("-n", namespace, "-o", "yaml", "history", "shop")
    assert [(h["version"], h["result"], h["reason"]) for h in yaml.safe_load(raw)][-1] == (
        "v1.1.0",
        "Released",
        "CHG-42 signed off",
    )
    _, table = kubectl_gantry("-n", namespace, "history", "shop")
    assert "CHG-42 signed off" in table
    code, _ = kubectl_gantry("-n", namespace, "rollback", "shop", "--reason", "checkout 500s", "--yes")
    assert code == 0
    cluster.wait_for_phase(namespace, "shop-v2", "RolledBack", "Failed", timeout=60)

    _, raw = kubectl_gantry("-n", namespace, "-o", "yaml", "history", "shop")
    rows = [(h["version"], h["result"], h["reason"]) for h in yaml.safe_load(raw)]
    assert rows[-2:] == [  # the Release's entry, updated in place: the rollback's reason now
        ("v1.1.0", "RolledBack", "checkout 500s"),
        ("v1.0.0", "Restored", "rollback of " + namespace + "/shop-v2: checkout 500s"),
    ]


def test_a_rollback_with_nothing_earlier_is_refused_up_front_by_the_button_and_the_operator(
    cluster: Cluster, namespace: str, operator: OperatorThread, capsys: pytest.CaptureFixture[str]
) -> None:
    setup(cluster, namespace)
    released(cluster, namespace, "shop-v1", "v1.0.0")
    code, _ = kubectl_gantry("-n", namespace, "rollback", "shop", "--reason", "errors", "--yes")
    said = capsys.readouterr().err
    assert code == 1 and "nothing earlier to roll back to" in said and "emergency shop" in said
    assert not cluster.list("ReleaseDecision", namespace)

    cluster.apply(m.decision(namespace, "shop-v1", "Rollback"))  # pressed without the plugin
    cluster.wait_for(
        "the decision to be refused",
        lambda: (cluster.list("ReleaseDecision", namespace)[0].get("status") or {}).get("phase") == "Ignored",
        timeout=30,
    )
    message = cluster.list("ReleaseDecision", namespace)[0]["status"]["message"]
    assert "nothing to roll back to" in message and "Emergency" in message
    body = cluster.release(namespace, "shop-v1")
    assert body["status"]["phase"] == "Released"  # not Held: nothing changed
    assert cluster.images("Deployment", PROD, "web")["web"] == m.image("web", "shop-v1")


def test_during_an_emergency_only_a_hotfix_may_enter_production(
    cluster: Cluster, namespace: str, operator: OperatorThread, capsys: pytest.CaptureFixture[str]
) -> None:
    setup(cluster, namespace)
    pipeline = cluster.must_get("Pipeline", namespace, "shop")
    pipeline["spec"]["stages"][1]["promotion"] = "Manual"
    cluster.apply(pipeline)
    cluster.apply(m.release(namespace, "shop-v1", "shop-v1", version="v1.0.0"))
    cluster.wait_for_phase(namespace, "shop-v1", "Verified", timeout=60)
    assert kubectl_gantry("-n", namespace, "approve", "shop-v1")[0] == 0
    cluster.wait_for_phase(namespace, "shop-v1", "Released", timeout=60)
    cluster.apply(m.release(namespace, "shop-v2", "shop-v2", version="v1.1.0"))
    cluster.wait_for_phase(namespace, "shop-v2", "Verified", timeout=60)  # passed staging before

    assert kubectl_gantry("-n", namespace, "emergency", "shop", "--reason", "data loss", "--yes")[0] == 0
    cluster.wait_for_phase(namespace, "shop-v1", "Emergency", timeout=60)
    # The button waits for the verdict: refused, it says why and exits 1 (not "created", exit 0).
    assert kubectl_gantry("-n", namespace, "approve", "shop-v2", "--reason", "it was ready")[0] == 1
    refused = capsys.readouterr().err
    assert refused.startswith("error: Approve Ignored: ") and "only hotfix Releases" in refused

    def outcome() -> dict[str, Any]:
        results = (cluster.release(namespace, "shop-v2").get("status") or {}).get("decisionResults") or []
        return results[-1] if results else {}

    cluster.wait_for("the approval to be refused", lambda: outcome().get("result") == "Ignored", timeout=30)
    assert "only hotfix Releases" in outcome()["message"] and f"{namespace}/shop-v1" in outcome()["message"]
    assert "lock unfreeze staging" in outcome()["message"]
    assert cluster.release(namespace, "shop-v2")["status"]["phase"] == "Verified"
    assert cluster.images("Deployment", PROD, "web")["web"] == m.image("web", "shop-v1")

    code, _ = kubectl_gantry("-n", namespace, "lock", "unfreeze", "staging")  # an override: why?
    said = capsys.readouterr().err
    assert code == 1 and "say why with --reason" in said and f"{namespace}/shop-v1" in said
    assert (
        kubectl_gantry("-n", namespace, "lock", "unfreeze", "staging", "--reason", "the fix is config")[0]
        == 0
    )
    history = cluster.must_get("EnvironmentLock", namespace, "staging")["status"]["history"]
    assert "FreezeLifted by " in history[-1]["reason"] and history[-1]["reason"].endswith(
        ": the fix is config"
    )
    assert kubectl_gantry("-n", namespace, "approve", "shop-v2")[0] == 0
    body = cluster.wait_for_phase(namespace, "shop-v2", "Released", "Failed", "Blocked", timeout=60)
    assert body["status"]["phase"] == "Released", body["status"]["message"]


def test_the_rollback_button_leaves_staging_on_what_production_returned_to(
    cluster: Cluster, namespace: str, operator: OperatorThread
) -> None:
    setup(cluster, namespace)
    released(cluster, namespace, "shop-v1", "v1.0.0")
    released(cluster, namespace, "shop-v2", "v1.1.0")
    pipeline = cluster.must_get("Pipeline", namespace, "shop")
    pipeline["spec"]["stages"][0]["test"]["jobTemplate"] = m.test_job_template("sleep infinity")
    cluster.apply(pipeline)
    cluster.apply(m.release(namespace, "shop-v3", "shop-v3", version="v1.2.0"))
    cluster.wait_for_phase(namespace, "shop-v3", "Testing", timeout=60)  # holds staging, on v3

    code, _ = kubectl_gantry("-n", namespace, "rollback", "shop", "--reason", "errors", "--yes")
    assert code == 0
    assert (
        cluster.wait_for_phase(namespace, "shop-v2", "RolledBack", "Failed", timeout=60)["status"]["phase"]
        == "RolledBack"
    )
    cluster.wait_for_phase(namespace, "shop-v3", "Failed", "Verified", timeout=60)
    good = {"web": m.image("web", "shop-v1"), "worker": m.image("worker", "shop-v1")}
    cluster.wait_for(
        "staging to run what production returned to",
        lambda: {w: cluster.images("Deployment", namespace, w)[w] for w in good} == good,
        timeout=30,
    )
    time.sleep(1)  # nothing puts the rolled-back version back a moment later
    assert {w: cluster.images("Deployment", namespace, w)[w] for w in good} == good
    assert cluster.images("Deployment", PROD, "web")["web"] == good["web"]
