"""Production: promotion, the error-rate bake against a real Prometheus, the three buttons,
rollback by re-applying the previous Release, quarantine, and alerts in a real Alertmanager."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import FAST
from tests.e2e import manifests as m
from tests.harness.cluster import Cluster
from tests.harness.observability import Alertmanager, MetricsApp, Prometheus
from tests.harness.operator import OperatorThread

pytestmark = pytest.mark.e2e

BAKE_TIMEOUT = 60


@dataclass
class App:
    """The shop application: staging in the test namespace, production in its own namespace."""

    cluster: Cluster
    namespace: str
    prod: str
    metrics: MetricsApp
    prometheus: Prometheus
    alertmanager: Alertmanager
    released_count: int = 0

    def setup(self, **pipeline: Any) -> None:
        for workload in m.workloads(self.namespace) + m.workloads(self.prod):
            self.cluster.apply(workload)
        self.cluster.apply(
            m.production_pipeline(
                self.namespace, self.prod, self.prometheus.url, self.alertmanager.url, **pipeline
            )
        )

    def traffic(self, rps: float, error_ratio: float = 0.0, namespace: str | None = None) -> None:
        """Set production's traffic (or another namespace's) and wait until Prometheus's 5 s rates show it."""
        where = namespace or self.prod
        self.metrics.set(where, rps, error_ratio)
        selector = f'namespace="{where}"'
        errors = f'sum(rate(http_requests_total{{{selector},code=~"5.."}}[5s]))'
        total = f"sum(rate(http_requests_total{{{selector}}}[5s]))"

        def shows() -> bool:
            rate = self.prometheus.query(total)
            if not rate or abs(float(rate[0]["value"][1]) - rps) > max(rps * 0.3, 0.5):
                return False
            if rps == 0:
                return True
            ratio = self.prometheus.query(f"{errors} / {total}")
            return bool(ratio) and abs(float(ratio[0]["value"][1]) - error_ratio) < 0.15

        self.cluster.wait_for(
            f"Prometheus to show {rps} req/s at {error_ratio:.0%} errors", shows, timeout=30, interval=0.3
        )

    def release(self, name: str, seed: str, **fields: Any) -> dict[str, Any]:
        """Each Release a new minor version (v1.0.0, v1.1.0, ...): production only moves forward."""
        self.released_count += 1
        manifest = m.release(self.namespace, name, seed, version=f"v1.{self.released_count - 1}.0")
        manifest["spec"].update(fields)
        return self.cluster.apply(manifest)

    def decide(self, release: str, action: str, by: str = "bob", name: str | None = None) -> dict[str, Any]:
        return self.cluster.apply(m.decision(self.namespace, release, action, by=by, name=name))

    def wait(self, name: str, *phases: str, timeout: float = BAKE_TIMEOUT) -> dict[str, Any]:
        return self.cluster.wait_for_phase(self.namespace, name, *phases, timeout=timeout)

    def production_images(self) -> dict[str, str]:
        return self.images(self.prod)

    def images(self, namespace: str) -> dict[str, str]:
        """The application's own containers (not the mesh sidecar next to them)."""
        return {
            "web": self.cluster.images("Deployment", namespace, "web")["web"],
            "worker": self.cluster.images("Deployment", namespace, "worker")["worker"],
        }

    def wait_decision(self, decision: dict[str, Any], phase: str) -> None:
        """Wait until the operator has handled a ReleaseDecision with this result."""
        name = decision["metadata"]["name"]

        def handled() -> bool:
            status = self.cluster.must_get("ReleaseDecision", self.namespace, name).get("status") or {}
            return bool(status.get("phase") == phase)

        self.cluster.wait_for(f"ReleaseDecision {name} to be {phase}", handled)

    def verdicts(self, name: str) -> list[str]:
        runs = (self.cluster.release(self.namespace, name).get("status") or {}).get("stages") or [{}]
        return [e["verdict"] for e in (runs[-1].get("analysis") or {}).get("evaluations", [])]

    def ledger(self) -> dict[str, Any]:
        status: dict[str, Any] = self.cluster.must_get("Pipeline", self.namespace, "shop").get("status") or {}
        return status

    def released(self, name: str, seed: str) -> dict[str, Any]:
        self.release(name, seed)
        body = self.wait(name, "Released", "RolledBack", "Held", "Failed", "AwaitingDecision", "Blocked")
        assert body["status"]["phase"] == "Released", body["status"]["message"]
        return body


@pytest.fixture
def routed_operator(cluster: Cluster) -> Iterator[OperatorThread]:
    """The operator with its real alert router, so alerts reach the real Alertmanager."""
    running = OperatorThread(FAST).start()
    yield running
    running.stop()


@pytest.fixture
def app(
    cluster: Cluster,
    routed_operator: OperatorThread,
    namespace: str,
    observability_stack: tuple[MetricsApp, Prometheus, Alertmanager],
) -> Iterator[App]:
    metrics, prometheus, alertmanager = observability_stack
    prod = f"prod-{uuid.uuid4().hex[:8]}"  # its own metric series, whatever other tests did
    yield App(cluster, namespace, prod, metrics, prometheus, alertmanager)
    metrics.set(prod, 0)


def v(seed: str) -> dict[str, str]:
    return {"web": m.image("web", seed), "worker": m.image("worker", seed)}


def test_a_healthy_bake_releases_with_provenance_and_a_ledger_entry(app: App) -> None:
    app.setup(test=True)
    app.traffic(20)

    body = app.released("shop-v1", "v1")

    assert app.production_images() == v("v1")
    run = body["status"]["stages"][-1]
    assert run["name"] == "production"
    assert run["provenance"]["stage"] == "staging" and run["provenance"]["testResult"] == "Succeeded"
    assert run["provenance"]["testJob"] == body["status"]["stages"][0]["testJob"]
    assert set(app.verdicts("shop-v1")) == {"Healthy"}
    production = app.ledger()["production"]
    assert production["version"] == "v1.0.0"
    assert [(e["release"], e["result"]) for e in production["history"]] == [
        (f"{app.namespace}/shop-v1", "Released")
    ]
    assert {"Ready": "True"}.items() <= {c["type"]: c["status"] for c in body["status"]["conditions"]}.items()


def test_an_error_spike_rolls_back_to_the_previous_release_and_quarantines_it(app: App) -> None:
    app.setup()
    app.traffic(20)
    app.released("shop-v1", "v1")
    app.traffic(20, error_ratio=0.5)

    app.release("shop-v2", "v2")
    body = app.wait("shop-v2", "RolledBack", "Released", "Held", "Failed")

    status = body["status"]
    assert (status["phase"], status["reason"]) == ("RolledBack", "ErrorRateBreach")
    assert app.production_images() == v("v1")  # the previous tag, exactly
    assert app.images(app.namespace) == v("v1")
    ledger = app.ledger()
    assert [(e["release"].split("/")[1], e["result"]) for e in ledger["production"]["history"]] == [
        ("shop-v1", "Released"),
        ("shop-v2", "RolledBack"),
        ("shop-v1", "Restored"),
    ]
    assert ledger["production"]["version"] == "v1.0.0"
    assert {q["digest"] for q in ledger["quarantine"]} == {i.split("@")[1] for i in v("v2").values()}
    lock = app.cluster.must_get("EnvironmentLock", app.namespace, "staging")["status"]
    assert "holder" not in lock  # taken for the rollback, then given back
    app.cluster.wait_for(
        "the breach alert in Alertmanager",
        lambda: app.alertmanager.alerts(
            alertname="GantryErrorRateBreach", release=f"{app.namespace}/shop-v2", team="shop"
        ),
    )

    # A rollback stays rolled back: the same digests under a new Release are refused...
    app.traffic(20)
    app.release("shop-v2-again", "v2")
    again = app.wait("shop-v2-again", "Blocked", "Queued", "Deploying", "Released")
    assert again["status"]["reason"] == "Quarantined"
    assert (
        "spec.artifacts[0].image" in again["status"]["message"]
        and "LiftQuarantine" in again["status"]["message"]
    )
    assert app.production_images() == v("v1")
    # The team hears of it once, with the command that lifts it (a Blocked Release is never silent).
    (told,) = app.cluster.wait_for(
        "the Quarantined alert in Alertmanager",
        lambda: app.alertmanager.alerts(
            alertname="GantryQuarantined", release=f"{app.namespace}/shop-v2-again"
        ),
    )
    assert f"kubectl gantry -n {app.namespace} lift-quarantine shop-v2 " in told["annotations"]["description"]
    # ...until someone lifts the quarantine, on the record.
    decision = app.decide("shop-v2", "LiftQuarantine", by="carol")
    app.wait_decision(decision, "Applied")
    ledger = app.ledger()
    assert (ledger["quarantineLog"][-1]["action"], ledger["quarantineLog"][-1]["by"]) == ("Lifted", "carol")
    assert ledger["quarantine"] == []
    assert app.wait("shop-v2-again", "Released", "RolledBack", "Held")["status"]["phase"] == "Released"


def test_zero_traffic_is_inconclusive_holds_and_waits_for_a_person(app: App) -> None:
    app.setup()
    app.traffic(0)

    app.release("shop-v1", "v1")
    held = app.wait("shop-v1", "Held", "Released", "RolledBack")

    assert (held["status"]["phase"], held["status"]["reason"]) == ("Held", "MetricsInconclusive")
    assert "too little traffic" in held["status"]["message"]
    app.cluster.wait_for(
        "the hold alert",
        lambda: app.alertmanager.alerts(
            alertname="GantryMetricsInconclusive", release=f"{app.namespace}/shop-v1"
        ),
    )
    app.decide("shop-v1", "Approve", by="bob")
    released = app.wait("shop-v1", "Released")
    assert released["status"]["reason"] == "Approved"
    assert app.ledger()["production"]["history"][-1]["decidedBy"] == "bob"


def test_prometheus_going_away_mid_bake_holds_and_alerts(app: App, tmp_path: Any) -> None:
    own = Prometheus(tmp_path / "prometheus", app.metrics.port).start()
    try:
        app.prometheus = own
        app.setup(bakeSeconds=60)
        app.traffic(20)
        app.release("shop-v1", "v1")
        app.cluster.wait_for(
            "a healthy evaluation", lambda: "Healthy" in app.verdicts("shop-v1"), timeout=BAKE_TIMEOUT
        )
    finally:
        own.stop()
    held = app.wait("shop-v1", "Held", "Released", "RolledBack")
    assert (held["status"]["phase"], held["status"]["reason"]) == ("Held", "MetricsInconclusive")
    assert "no metrics" in held["status"]["message"]
    assert app.production_images() == v("v1")  # neither promoted further nor rolled back: a person decides


def test_a_breach_with_no_earlier_release_in_production_holds_with_a_clear_error(app: App) -> None:
    app.setup()
    app.traffic(20, error_ratio=0.6)

    app.release("shop-v1", "v1")
    held = app.wait("shop-v1", "Held", "RolledBack", "Released")

    assert (held["status"]["phase"], held["status"]["reason"]) == ("Held", "NoPreviousRelease")
    assert "cannot roll back" in held["status"]["message"]


def test_manual_promotion_waits_for_approval(app: App) -> None:
    app.setup(promotion="Manual")
    app.traffic(20)
    app.release("shop-v1", "v1")
    verified = app.wait("shop-v1", "Verified")
    assert "waiting for approval" in verified["status"]["message"]
    assert app.production_images() == {"web": m.OLD_WEB, "worker": m.OLD_WORKER}

    early = app.decide("shop-v1", "FailForward", name="too-early")
    app.wait_decision(early, "Rejected")
    app.decide("shop-v1", "Approve")
    assert app.wait("shop-v1", "Released", "Held", "RolledBack")["status"]["phase"] == "Released"
    assert app.production_images() == v("v1")


@pytest.mark.parametrize("action", ["Rollback", "FailForward"])
def test_decide_policy_buttons(app: App, action: str) -> None:
    app.setup(onBreach="Decide")
    app.traffic(20)
    app.released("shop-v1", "v1")
    app.traffic(20, error_ratio=0.5)
    app.release("shop-v2", "v2")
    waiting = app.wait("shop-v2", "AwaitingDecision", "RolledBack", "Released")
    assert waiting["status"]["phase"] == "AwaitingDecision"
    assert "decide Rollback, Emergency or FailForward" in waiting["status"]["message"]

    app.decide("shop-v2", action, by="bob")
    if action == "Rollback":
        body = app.wait("shop-v2", "RolledBack")
        assert app.production_images() == v("v1")
        assert app.ledger()["production"]["history"][-2]["decidedBy"] == "bob"
    else:
        body = app.wait("shop-v2", "Released")
        assert body["status"]["reason"] == "FailForward"
        assert app.production_images() == v("v2")  # nothing else happens
        entry = app.ledger()["production"]["history"][-1]
        assert (entry["result"], entry["decidedBy"]) == ("FailedForward", "bob")
    assert [d["decidedBy"] for d in body["status"]["decisions"]] == ["bob"]


def test_without_a_decision_the_deadline_default_applies(app: App) -> None:
    app.setup(onBreach="Decide", decision={"deadlineSeconds": 2, "default": "Rollback"})
    app.traffic(20)
    app.released("shop-v1", "v1")
    app.traffic(20, error_ratio=0.5)
    app.release("shop-v2", "v2")

    body = app.wait("shop-v2", "RolledBack", "Released")

    assert body["status"]["phase"] == "RolledBack"
    assert app.production_images() == v("v1")
    assert app.ledger()["production"]["history"][-2]["decidedBy"].startswith("gantry (deadline")


def test_emergency_freezes_staging_for_hotfixes_until_one_reaches_production(app: App) -> None:
    app.setup(onBreach="Decide")
    app.traffic(20)
    app.released("shop-v1", "v1")
    app.traffic(20, error_ratio=0.5)
    app.release("shop-v2", "v2")
    app.wait("shop-v2", "AwaitingDecision")

    app.decide("shop-v2", "Emergency", by="bob")
    body = app.wait("shop-v2", "Emergency")
    assert app.production_images() == v("v2")  # production keeps it until the hotfix
    lock = app.cluster.must_get("EnvironmentLock", app.namespace, "staging")["status"]
    assert lock["frozen"]["by"] == f"{app.namespace}/shop-v2"
    app.cluster.wait_for(
        "the critical alert",
        lambda: app.alertmanager.alerts(
            alertname="GantryEmergency", severity="critical", release=f"{app.namespace}/shop-v2"
        ),
    )
    assert "Emergency" in body["status"]["message"]

    app.release("shop-v3", "v3")  # ordinary work waits
    frozen = app.cluster.wait_for(
        "v3 to be held by the freeze",
        lambda: (
            (app.cluster.release(app.namespace, "shop-v3").get("status") or {}).get("reason") == "LockFrozen"
        ),
    )
    assert frozen
    app.traffic(20)
    app.release("shop-v2-1", "v2-1", hotfix=True, version="v1.1.1")  # patches v1.1.0, the emergency
    hotfix = app.wait("shop-v2-1", "Released", "RolledBack", "Held")
    assert hotfix["status"]["phase"] == "Released"
    assert "frozen" not in app.cluster.must_get("EnvironmentLock", app.namespace, "staging")["status"]
    assert app.wait("shop-v3", "Released", "RolledBack", "Held")["status"]["phase"] == "Released"


def test_the_operator_exports_when_each_version_became_active(
    app: App, routed_operator: OperatorThread
) -> None:
    from prometheus_client import generate_latest

    app.setup()
    app.traffic(20)
    app.released("shop-v1", "v1")
    metrics = routed_operator.memo.metrics
    assert metrics is not None

    def exported() -> str:
        return generate_latest(metrics.registry).decode()

    line = app.cluster.wait_for(
        "the deployed-at sample",
        lambda: next(
            (
                row
                for row in exported().splitlines()
                if row.startswith("gantry_release_deployed_timestamp_seconds")
                and f'namespace="{app.namespace}"' in row  # not another test's row
                and 'version="v1.0.0"' in row
                and 'result="Released"' in row
            ),
            None,
        ),
    )
    deployed_at = app.ledger()["production"]["history"][-1]["deployedAt"]
    from datetime import datetime

    assert (
        float(line.rsplit(" ", 1)[1])
        == datetime.fromisoformat(deployed_at.replace("Z", "+00:00")).timestamp()
    )
    text = exported()
    assert (
        f'gantry_promotions_total{{application="shop",namespace="{app.namespace}",stage="production"}} 1.0'
        in text
    )
    assert "gantry_lock_wait_seconds_count" in text


def with_canary(app: App, bake_seconds: int, **stage: Any) -> str:
    """The app with a canary stage (its own namespace, returned) between staging and production,
    baking like production but for `bake_seconds`."""
    canary = f"canary-{uuid.uuid4().hex[:6]}"
    for workload in m.workloads(canary):
        app.cluster.apply(workload)
    app.setup()
    pipeline = app.cluster.must_get("Pipeline", app.namespace, "shop")
    production = pipeline["spec"]["stages"][1]
    targets = [{"namespace": canary, "name": "web"}, {"namespace": canary, "name": "worker"}]
    analysis = {**production["analysis"], "bakeSeconds": bake_seconds}
    pipeline["spec"]["stages"].insert(
        1, {"name": "canary", "targets": targets, "analysis": analysis, **stage}
    )
    app.cluster.apply(pipeline)
    return canary


def test_a_canary_breach_rolls_back_the_canary_only_and_writes_no_production_record(app: App) -> None:
    """A stage before production with `analysis` is a canary: it bakes against its own series; a
    breach rolls back that stage alone, production and its ledger are never touched."""
    canary = with_canary(app, bake_seconds=3)
    app.traffic(20)
    app.traffic(20, namespace=canary)
    first = app.released("shop-v1", "v1")
    assert [r["name"] for r in first["status"]["stages"]] == ["staging", "canary", "production"]
    assert set(e["verdict"] for e in first["status"]["stages"][1]["analysis"]["evaluations"]) == {"Healthy"}
    history = app.ledger()["production"]["history"]
    assert [(e["release"].split("/")[1], e["result"]) for e in history] == [("shop-v1", "Released")]

    app.traffic(20, error_ratio=0.5, namespace=canary)  # v2 breaks the canary's requests
    app.release("shop-v2", "v2")
    body = app.wait("shop-v2", "Failed", "Released", "RolledBack", "Held")
    assert (body["status"]["phase"], body["status"]["reason"]) == ("Failed", "ErrorRateBreach")
    assert body["status"]["stages"][-1]["name"] == "canary"
    assert app.images(canary) == v("v1")  # the canary back on what it ran before
    assert app.images(app.namespace) == v("v2")  # staging passed and keeps v2
    assert app.production_images() == v("v1")  # production never saw v2
    assert app.ledger()["production"]["history"] == history  # and its record is unchanged
    app.cluster.wait_for(
        "the canary alert",
        lambda: app.alertmanager.alerts(
            alertname="GantryErrorRateBreach", release=f"{app.namespace}/shop-v2"
        ),
    )
    app.traffic(0, namespace=canary)


def test_the_canary_example_pipeline_is_admitted(cluster: Cluster) -> None:
    import yaml

    from tests.harness.cluster import ROOT

    body = cluster.apply(yaml.safe_load((ROOT / "examples" / "pipeline-canary.yaml").read_text()))
    assert [s["name"] for s in body["spec"]["stages"]] == ["dev", "staging", "canary", "production"]


def test_a_canary_takes_a_release_only_when_approved_and_passes_it_on_only_after_its_soak(
    app: App,
) -> None:
    """promotion: Manual and soakSeconds on a canary: the Release waits before it (nothing deployed
    there, no lock, an alert with the command), enters when a person approves, bakes, then runs
    healthy for the soak before production takes it."""
    from gantry.domain.vocabulary.timefmt import from_rfc3339

    canary = with_canary(app, bake_seconds=2, lock=True, promotion="Manual", soakSeconds=3)
    app.traffic(20)
    app.traffic(20, namespace=canary)

    app.release("shop-v1", "v1")
    waiting = app.wait("shop-v1", "AwaitingApproval", "Failed", "Blocked", "Released")
    assert waiting["status"]["phase"] == "AwaitingApproval" and waiting["status"]["stage"] == "canary"
    assert f"kubectl gantry -n {app.namespace} approve shop-v1" in waiting["status"]["message"]
    assert app.images(app.namespace) == v("v1")  # staging passed
    assert app.images(canary) == {"web": m.OLD_WEB, "worker": m.OLD_WORKER}  # the canary untouched
    lock = app.cluster.get("EnvironmentLock", app.namespace, "canary")
    assert not ((lock or {}).get("status") or {}).get("holder")  # waiting holds nothing
    [alert] = app.cluster.wait_for(
        "the approval alert",
        lambda: app.alertmanager.alerts(
            alertname="GantryAwaitingApproval", release=f"{app.namespace}/shop-v1"
        ),
    )
    assert alert["labels"]["severity"] == "info"

    app.decide("shop-v1", "Approve", by="carol")
    released = app.wait("shop-v1", "Released", "Failed", "RolledBack", "Held", "Blocked")
    assert released["status"]["phase"] == "Released", released["status"]["message"]
    _, canary_run, production_run = released["status"]["stages"]
    assert canary_run["decidedBy"] == "carol" and canary_run["reason"] == "Soaked"
    # carol approved the canary, not production (promotion Auto here): the records say who did what.
    assert production_run["decidedBy"] == "gantry (automatic promotion)"
    assert app.ledger()["production"]["history"][-1]["decidedBy"] == "gantry (automatic promotion)"
    soaked = from_rfc3339(production_run["startedAt"]) - from_rfc3339(canary_run["soakStartedAt"])
    assert soaked.total_seconds() >= 3  # production took it only after the soak
    assert from_rfc3339(canary_run["soakStartedAt"]) > from_rfc3339(
        canary_run["rolledOutAt"]
    )  # after the bake
    phases = [h["phase"] for h in released["status"]["history"]]
    assert phases.index("AwaitingApproval") < phases.index("Baking") < phases.index("Soaking")
    assert app.images(canary) == v("v1") and app.production_images() == v("v1")
    app.traffic(0, namespace=canary)


def test_production_stays_guarded_after_its_release_and_a_later_breach_offers_the_buttons(app: App) -> None:
    app.setup(guard={"decision": {"deadlineSeconds": 600}})  # the bake's queries, 1 s apart
    app.traffic(20)
    app.released("shop-v1", "v1")
    app.released("shop-v2", "v2")

    def guard_of(name: str) -> dict[str, Any]:
        return dict((app.cluster.release(app.namespace, name).get("status") or {}).get("guard") or {})

    # The Release production ran before is watched no more; the one it runs now is.
    replaced = app.cluster.wait_for("v1's guard to end", lambda: guard_of("shop-v1").get("state") == "Ended")
    assert replaced and f"{app.namespace}/shop-v2 (v1.1.0)" in guard_of("shop-v1")["ended"]
    app.cluster.wait_for(
        "v2's guard to see healthy traffic",
        lambda: [e["verdict"] for e in guard_of("shop-v2").get("evaluations", [])][-2:] == ["Healthy"] * 2,
    )

    # Well after its bake, production's error rate climbs: the team is alerted with the buttons.
    app.traffic(20, error_ratio=0.5)
    app.cluster.wait_for(
        "v2's guard to breach", lambda: guard_of("shop-v2").get("state") == "Breached", timeout=30
    )
    body = app.cluster.release(app.namespace, "shop-v2")
    assert body["status"]["phase"] == "Released" and body["status"]["reason"] == "ErrorRateBreach"
    assert app.production_images() == v("v2")  # nobody decided yet: nothing moves
    entry = app.ledger()["production"]["history"][-1]
    assert (entry["release"], entry["result"]) == (f"{app.namespace}/shop-v2", "Breached")

    def guard_alerts() -> list[dict[str, Any]]:
        found = app.alertmanager.alerts(alertname="GantryErrorRateBreach", release=f"{app.namespace}/shop-v2")
        return [a for a in found if "guard:" in a["annotations"]["description"]]

    (told,) = app.cluster.wait_for("the guard's breach alert in Alertmanager", guard_alerts)
    assert f"kubectl gantry -n {app.namespace} rollback shop" in told["annotations"]["description"]

    # Someone presses Rollback: production runs v1's digests again, on the record.
    app.decide("shop-v2", "Rollback", by="bob")
    body = app.wait("shop-v2", "RolledBack")
    assert app.production_images() == v("v1")
    assert body["status"]["guard"]["state"] == "Ended"
    results = [(e["release"].split("/")[1], e["result"]) for e in app.ledger()["production"]["history"]]
    assert results[-2:] == [("shop-v2", "RolledBack"), ("shop-v1", "Restored")]
    assert app.ledger()["production"]["history"][-2]["decidedBy"] == "bob"


def concrete(query: str, namespace: str) -> str:
    """A dashboard query as Grafana sends it for one namespace and application, and a template
    variable's label_values(...) as the series query Grafana makes of it."""
    found = re.fullmatch(r"label_values\((.*), *(\w+)\)", query)
    if found:
        query = found[1]
    for name, value in (
        ("$__rate_interval", "1m"),
        ("$__interval", "1m"),
        ("$__range", "1h"),
        ("$namespace", namespace),
        ("$application", "shop"),
    ):
        query = query.replace(name, value)
    return query


def test_the_dashboard_and_the_alert_rules_run_on_what_the_operator_exports(
    app: App, routed_operator: OperatorThread, tmp_path: Path
) -> None:
    """A real Prometheus scrapes the real operator through a release and a rolled-back one:
    every query of the Grafana dashboard and every alert rule runs there without an error, and
    what the dashboard draws is there (deploys in each environment, the bake against its
    threshold, the DORA measures)."""
    from prometheus_client import start_http_server

    from tests.harness.observability import free_port
    from tests.helm.test_monitoring import DASHBOARD, RULES, dashboard_queries

    metrics = routed_operator.memo.metrics
    assert metrics is not None
    port = free_port()
    server, _ = start_http_server(port, "127.0.0.1", metrics.registry)
    prometheus = Prometheus(tmp_path / "prometheus", port).start()
    try:
        app.setup(consecutiveBreaches=4)  # a bake of seconds: Prometheus scrapes it every second
        app.traffic(20)
        app.released("shop-v1", "v1")
        app.traffic(20, error_ratio=0.5)
        app.release("shop-v2", "v2")
        assert (
            app.wait("shop-v2", "RolledBack", "Released", "Held", "Failed")["status"]["phase"] == "RolledBack"
        )
        ns = f'namespace="{app.namespace}"'
        app.cluster.wait_for(
            "Prometheus to scrape the rollback's record",
            lambda: prometheus.query(f"gantry_dora_time_to_restore_seconds{{{ns}}}"),
            timeout=30,
        )
        board = json.loads(DASHBOARD.read_text())
        rules = [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
        for query in [*dashboard_queries(board), *rules]:
            prometheus.query(concrete(query, app.namespace))  # a query Prometheus refuses raises here

        def seen(query: str) -> list[dict[str, Any]]:
            return prometheus.query(f"max_over_time(({query})[10m:1s])")

        environments = {
            s["metric"]["environment"]
            for s in seen(f'gantry_release_deployed_timestamp_seconds{{{ns}, application="shop"}}')
        }
        assert environments == {"staging", "production"}  # an annotation for every environment
        (bake,) = seen(f'gantry_bake_error_ratio{{{ns}, release="shop-v2"}}')
        (threshold,) = seen(f'gantry_bake_threshold_ratio{{{ns}, release="shop-v2"}}')
        assert float(bake["value"][1]) > float(threshold["value"][1])  # the breach, drawn
        assert seen(
            f'gantry_release_phase_since_timestamp_seconds{{{ns}, release="shop-v2", phase="Baking"}}'
        )

        def value(metric: str) -> float:
            (sample,) = prometheus.query(f'{metric}{{{ns}, application="shop", environment="production"}}')
            return float(sample["value"][1])

        assert value("gantry_dora_deployments") == 2
        assert value("gantry_dora_change_failure_ratio") == 0.5  # one of two rolled back
        assert 0 < value("gantry_dora_time_to_restore_seconds") < 120  # the bake's breach to v1 again
        assert 0 < value("gantry_dora_lead_time_seconds") < 300  # created to production, here
        assert value("gantry_dora_deployment_frequency_per_day") == 2  # two today
        assert prometheus.query("gantry_build_info")
    finally:
        prometheus.stop()
        server.shutdown()
