"""Gantry's alert rules and Grafana dashboard, as the chart ships them: the rules pass
`promtool check rules` and fire (and stay quiet) as `promtool test rules` scenarios say, with the
messages a person reads; the dashboard is a well-formed Grafana dashboard whose every query names
a variable the dashboard defines. (The queries themselves run against a real Prometheus scraping
a real operator in tests/e2e/test_production.py.)"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.harness import services
from tests.harness.cluster import ROOT
from tests.helm.test_chart import by_kind, render

RULES = ROOT / "helm" / "gantry" / "files" / "prometheus-rules.yaml"
DASHBOARD = ROOT / "helm" / "gantry" / "files" / "grafana-dashboard.json"
PROMTOOL = Path(services.program("prometheus")).with_name("promtool")  # Debian's prometheus brings it


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if not PROMTOOL.exists():
        pytest.fail(f"{PROMTOOL} is missing: .ci/install-services --for tests installs it")
    return subprocess.run([str(PROMTOOL), *args], capture_output=True, text=True, timeout=60, check=False)


def test_the_rules_pass_promtool_check() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 6 rules found" in done.stdout


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


RELEASE = {"namespace": "shop", "application": "shop"}
# What a person reads in each alert, its labels filled in.
STUCK = (
    "Its status says why: kubectl gantry -n shop status shop. A rollout that never completes, a"
    " test Job that never ends or a Blocked reason that needs fixing keep a Release here."
)
LAPSED_SUMMARY = "EnvironmentLock shop/staging is held by shop/r1 5 minutes past its lease"
LAPSED = (
    "The lock sweep should have freed it: is the operator running? The queue waits behind it: "
    "kubectl gantry -n shop lock status staging. Deleting the lock frees it by hand; its holder"
    " then rolls back what it changed."
)
HELD = (
    "It needs a decision: kubectl gantry -n shop status shop shows what it waits for and the command to run."
)
ERRORS_SUMMARY = "Gantry failed to reconcile Release objects 15 times in 15 minutes"
ROLLED_BACK = (
    "The previous version runs again and the digests are quarantined. The ledger says why: "
    "kubectl gantry -n shop history shop."
)


def scenarios() -> list[dict[str, Any]]:
    up = series("gantry_build_info", "1x400", version="1")
    stuck = series(
        "gantry_release_phase_since_timestamp_seconds", "0x400", release="r1", phase="Deploying", **RELEASE
    )
    approving = series(
        "gantry_release_phase_since_timestamp_seconds",
        "0x400",
        release="r2",
        phase="AwaitingApproval",
        **RELEASE,
    )
    held = series(
        "gantry_release_phase_since_timestamp_seconds", "0x400", release="r3", phase="Held", **RELEASE
    )
    lapsed = series(
        "gantry_lock_lease_expiry_timestamp_seconds",
        "600x60",
        namespace="shop",
        environment="staging",
        holder="shop/r1",
    )
    leased = series(
        "gantry_lock_lease_expiry_timestamp_seconds",
        "100000x60",
        namespace="shop",
        environment="prod",
        holder="shop/r4",
    )
    return [
        {  # a Release stuck deploying for an hour raises an alert; one awaiting approval does not
            "interval": "1m",
            "input_series": [up, stuck, approving, lapsed, leased],
            "alert_rule_test": [
                {"eval_time": "50m", "alertname": "GantryReleaseStuck", "exp_alerts": []},
                {
                    "eval_time": "2h",
                    "alertname": "GantryReleaseStuck",
                    "exp_alerts": [
                        {
                            "exp_labels": {
                                "severity": "warning",
                                "release": "r1",
                                "phase": "Deploying",
                                **RELEASE,
                            },
                            "exp_annotations": {
                                "summary": "Release shop/r1 has been Deploying for over an hour",
                                "description": STUCK,
                            },
                        }
                    ],
                },
                {"eval_time": "2h", "alertname": "GantryOperatorDown", "exp_alerts": []},
                {  # only the lock whose lease ran out 5 minutes ago and more
                    "eval_time": "30m",
                    "alertname": "GantryLockHeldPastLease",
                    "exp_alerts": [
                        {
                            "exp_labels": {
                                "severity": "warning",
                                "namespace": "shop",
                                "environment": "staging",
                                "holder": "shop/r1",
                            },
                            "exp_annotations": {
                                "summary": LAPSED_SUMMARY,
                                "description": LAPSED,
                            },
                        }
                    ],
                },
            ],
        },
        {  # a hold waits on a person: told after 4 hours, not before
            "interval": "1m",
            "input_series": [up, held],
            "alert_rule_test": [
                {"eval_time": "3h", "alertname": "GantryReleaseWaitingOnPerson", "exp_alerts": []},
                {
                    "eval_time": "5h",
                    "alertname": "GantryReleaseWaitingOnPerson",
                    "exp_alerts": [
                        {
                            "exp_labels": {"severity": "info", "release": "r3", "phase": "Held", **RELEASE},
                            "exp_annotations": {
                                "summary": "Release shop/r3 has waited 5h 0m 0s for a person (Held)",
                                "description": HELD,
                            },
                        }
                    ],
                },
            ],
        },
        {  # no operator scraped for 10 minutes; errors that keep coming; a production rollback
            "interval": "1m",
            "input_series": [
                series("gantry_reconcile_errors_total", "0+1x60", kind="Release"),
                series(
                    "gantry_rollbacks_total",
                    "0 0 1 1 1",
                    stage="production",
                    reason="ErrorRateBreach",
                    **RELEASE,
                ),
            ],
            "alert_rule_test": [
                {"eval_time": "5m", "alertname": "GantryOperatorDown", "exp_alerts": []},
                {
                    "eval_time": "15m",
                    "alertname": "GantryOperatorDown",
                    "exp_alerts": [
                        {
                            "exp_labels": {"severity": "critical"},
                            "exp_annotations": annotations("GantryOperatorDown"),
                        }
                    ],
                },
                {
                    "eval_time": "30m",
                    "alertname": "GantryReconcileErrors",
                    "exp_alerts": [
                        {
                            "exp_labels": {"severity": "warning", "kind": "Release"},
                            "exp_annotations": {
                                **annotations("GantryReconcileErrors"),
                                "summary": ERRORS_SUMMARY,
                            },
                        }
                    ],
                },
                {
                    "eval_time": "3m",
                    "alertname": "GantryProductionRolledBack",
                    "exp_alerts": [
                        {
                            "exp_labels": {"severity": "info", **RELEASE},
                            "exp_annotations": {
                                "summary": "Production of shop (shop) was rolled back",
                                "description": ROLLED_BACK,
                            },
                        }
                    ],
                },
            ],
        },
    ]


def annotations(alert: str) -> dict[str, str]:
    """An alert's annotations as written in the file (for those without templated labels)."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rule = next(r for g in groups for r in g["rules"] if r.get("alert") == alert)
    return {k: " ".join(v.split()) for k, v in rule["annotations"].items()}


def test_the_alerts_fire_and_stay_quiet_as_they_should(tmp_path: Path) -> None:
    tests = {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": scenarios()}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, width=1000))
    done = promtool("test", "rules", str(tmp_path / "tests.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_says_what_to_do() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    assert len(alerts) == 6
    for rule in alerts:
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert "kubectl" in rule["annotations"]["description"], rule["alert"]


def test_the_chart_ships_the_rules_and_the_dashboard_only_when_asked() -> None:
    docs = render()
    assert not by_kind(docs, "PrometheusRule")
    assert not [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
    docs = render(
        {
            "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "grafanaDashboard": {"enabled": True, "namespace": "monitoring"},
        }
    )
    (rule,) = by_kind(docs, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES.read_text())  # the file, byte for byte in meaning
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (board,) = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
    assert board["metadata"]["namespace"] == "monitoring"
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"  # the sidecar's default label
    assert json.loads(board["data"]["gantry.json"]) == json.loads(DASHBOARD.read_text())


# The part of Grafana's dashboard model (schemaVersion 39) this dashboard uses: what Grafana needs
# to load it, every panel placed on the 24-column grid, every query with its datasource and refId.
PANEL = {
    "type": "object",
    "required": ["id", "type", "title", "gridPos", "datasource", "targets"],
    "properties": {
        "id": {"type": "integer"},
        "type": {"enum": ["stat", "timeseries", "table"]},
        "title": {"type": "string", "minLength": 1},
        "description": {"type": "string", "minLength": 1},
        "gridPos": {
            "type": "object",
            "required": ["x", "y", "w", "h"],
            "properties": {
                "x": {"type": "integer", "minimum": 0, "maximum": 23},
                "y": {"type": "integer", "minimum": 0},
                "w": {"type": "integer", "minimum": 1, "maximum": 24},
                "h": {"type": "integer", "minimum": 1},
            },
        },
        "datasource": {"$ref": "#/$defs/datasource"},
        "targets": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["refId", "expr", "datasource"],
                "properties": {
                    "refId": {"type": "string", "pattern": "^[A-Z]$"},
                    "expr": {"type": "string", "minLength": 1},
                    "datasource": {"$ref": "#/$defs/datasource"},
                },
            },
        },
        "fieldConfig": {"type": "object", "required": ["defaults", "overrides"]},
    },
}
SCHEMA = {
    "$defs": {
        "datasource": {
            "type": "object",
            "required": ["type", "uid"],
            "properties": {"type": {"const": "prometheus"}, "uid": {"const": "${datasource}"}},
        }
    },
    "type": "object",
    "required": ["uid", "title", "schemaVersion", "panels", "templating", "annotations", "time"],
    "properties": {
        "uid": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,40}$"},
        "schemaVersion": {"type": "integer", "minimum": 36},
        "panels": {"type": "array", "minItems": 1, "items": PANEL},
        "templating": {
            "type": "object",
            "required": ["list"],
            "properties": {
                "list": {"type": "array", "items": {"type": "object", "required": ["name", "type"]}}
            },
        },
        "annotations": {
            "type": "object",
            "required": ["list"],
            "properties": {
                "list": {"type": "array", "items": {"type": "object", "required": ["name", "datasource"]}}
            },
        },
        "time": {"type": "object", "required": ["from", "to"]},
    },
}


def dashboard_queries(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression in the dashboard: panels, annotations and variables."""
    found = [t["expr"] for p in board["panels"] for t in p["targets"]]
    found += [a["expr"] for a in board["annotations"]["list"] if "expr" in a]
    found += [v["query"]["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    return found


def test_the_dashboard_is_a_well_formed_grafana_dashboard() -> None:
    board = json.loads(DASHBOARD.read_text())
    jsonschema.validate(board, SCHEMA)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:  # on the grid, and not on top of one another
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & mine, panel["title"]
        cells |= mine
    defined = {v["name"] for v in board["templating"]["list"]} | {"__rate_interval", "__interval", "__range"}
    for query in dashboard_queries(board):
        used = set(re.findall(r"\$(\w+)", query))
        assert used <= defined, (query, used - defined)
    metrics = " ".join(dashboard_queries(board))
    for name in (  # what the issue asks it to draw
        "gantry_release_deployed_timestamp_seconds",
        "gantry_promotions_total",
        "gantry_rollbacks_total",
        "gantry_lock_wait_seconds_bucket",
        "gantry_bake_error_ratio",
        "gantry_dora_lead_time_seconds",
        "gantry_dora_change_failure_ratio",
        "gantry_dora_time_to_restore_seconds",
        "gantry_dora_deployment_frequency_per_day",
    ):
        assert name in metrics, name
    deploys = next(a for a in board["annotations"]["list"] if a["name"] == "Deploys")
    assert "environment" in deploys["tagKeys"] and deploys["useValueForTime"] == "on"


def test_the_web_view_is_read_only_unless_a_proxy_names_the_person() -> None:
    docs = render({"web": {"enabled": True}})
    (deployment,) = by_kind(docs, "Deployment")
    gantry = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in gantry["env"]}
    assert (env["GANTRY_WEB_PORT"], env["GANTRY_WEB_ADDRESS"], env["GANTRY_WEB_PROXY_HEADERS"]) == (
        "8090",
        "0.0.0.0",
        "false",
    )
    rules = [r for role in by_kind(docs, "ClusterRole") for r in role["rules"]]
    assert not [r for r in rules if "impersonate" in r["verbs"]]  # read-only: nobody to act as
    (service,) = [s for s in by_kind(docs, "Service") if s["metadata"]["name"].endswith("-web")]
    assert service["spec"]["ports"][0]["targetPort"] == "web"

    sidecar = {"name": "oauth2-proxy", "image": "quay.io/oauth2-proxy/oauth2-proxy:v7.6.0"}
    sidecar["ports"] = [{"name": "web-proxy", "containerPort": 4180}]
    proxied = {"web": {"enabled": True, "proxy": {"enabled": True, "container": sidecar}}}
    proxied["web"]["proxy"]["impersonateGroups"] = ["shop-oncall"]
    docs = render(proxied)
    (deployment,) = by_kind(docs, "Deployment")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["gantry", "oauth2-proxy"]
    env = {e["name"]: e.get("value") for e in containers[0]["env"]}
    assert (env["GANTRY_WEB_ADDRESS"], env["GANTRY_WEB_PROXY_HEADERS"]) == ("127.0.0.1", "true")
    assert "web" not in {p["name"] for p in containers[0]["ports"]}  # only the proxy reaches it
    rules = [r for role in by_kind(docs, "ClusterRole") for r in role["rules"]]
    impersonation = [r for r in rules if "impersonate" in r["verbs"]]
    assert impersonation == [
        {"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"]},
        {
            "apiGroups": [""],
            "resources": ["groups"],
            "verbs": ["impersonate"],
            "resourceNames": ["shop-oncall"],
        },
    ]
    (service,) = [s for s in by_kind(docs, "Service") if s["metadata"]["name"].endswith("-web")]
    assert service["spec"]["ports"][0]["targetPort"] == "web-proxy"
