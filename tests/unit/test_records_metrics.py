"""The gauges read from the records (adapters.records_metrics): what a scrape shows for the
ledger, a Release in flight and a lock, and that it forgets what left the watch."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gantry.adapters.records_metrics import RecordsCollector


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def scrape(collector: RecordsCollector) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(collector)
    samples = {}  # name{labels in alphabetical order} -> value
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def baking() -> dict[str, Any]:
    at = "2026-12-03T10:00:00Z"
    return {
        "metadata": {"name": "shop-v2", "namespace": "team", "creationTimestamp": at},
        "spec": {"application": "shop", "version": "v1.1.0"},
        "status": {
            "phase": "Baking",
            "history": [
                {"time": "2026-12-03T10:00:05Z", "phase": "Deploying"},
                {"time": "2026-12-03T10:01:00Z", "phase": "Baking"},
                {"time": "2026-12-03T10:01:30Z", "phase": "Baking"},
            ],
            "stages": [
                {"name": "staging", "environment": "staging", "deployedAt": "2026-12-03T10:00:10Z"},
                {
                    "name": "production",
                    "environment": "production",
                    "deployedAt": "2026-12-03T10:00:50Z",
                    "spec": {"analysis": {"threshold": 0.1}},
                    "analysis": {
                        "evaluations": [{"errorRate": 0.02}, {"errorRate": None}, {"errorRate": 0.4}]
                    },
                },
            ],
        },
    }


def test_a_release_in_flight_shows_its_phase_its_deploys_and_its_bake_until_it_leaves() -> None:
    collector = RecordsCollector()
    collector.release("team", "shop-v2", baking())
    shown = scrape(collector)
    where = 'application="shop",namespace="team",release="shop-v2"'
    phase = 'application="shop",namespace="team",phase="Baking",release="shop-v2"'
    assert shown[f"gantry_release_phase_since_timestamp_seconds{{{phase}}}"] == ts(
        "2026-12-03T10:01:00Z"
    )  # the first of its Baking entries
    assert shown[f'gantry_bake_error_ratio{{{where},stage="production"}}'] == 0.4  # the last one with a rate
    assert shown[f'gantry_bake_threshold_ratio{{{where},stage="production"}}'] == 0.1
    staging = [k for k in shown if k.startswith("gantry_release_deployed") and 'environment="staging"' in k]
    assert staging == [
        'gantry_release_deployed_timestamp_seconds{application="shop",environment="staging",namespace="team",'
        'release="team/shop-v2",result="InFlight",version="v1.1.0"}'
    ]
    assert not [k for k in shown if 'environment="production"' in k]  # production's come from the ledger
    collector.release("team", "shop-v2", None)
    assert not [k for k in scrape(collector) if "shop-v2" in k]


def test_the_ledger_gives_one_series_per_version_and_result_and_the_dora_measures() -> None:
    collector = RecordsCollector()
    first = {"release": "team/shop-v1", "uid": "1", "version": "v1.0.0"}
    history = [
        {**first, "result": "Released", "deployedAt": "2026-12-01T10:00:00Z"},
        {
            "release": "team/shop-v2",
            "uid": "2",
            "version": "v1.1.0",
            "result": "RolledBack",
            "deployedAt": "2026-12-02T10:00:00Z",
        },
        {**first, "result": "Restored", "deployedAt": "2026-12-02T10:05:00Z"},
        {
            "release": "team/shop-v3",
            "uid": "3",
            "version": "v1.2.0",
            "result": "RolledBack",
            "deployedAt": "2026-12-02T11:00:00Z",
        },
        {**first, "result": "Restored", "deployedAt": "2026-12-02T11:05:00Z"},  # the same labels again
    ]
    collector.ledger("team", "shop", "shop", history)
    shown = scrape(collector)
    restored = [k for k in shown if 'result="Restored"' in k]
    assert len(restored) == 1 and shown[restored[0]] == ts(
        "2026-12-02T11:05:00Z"
    )  # the latest, once: no duplicate series
    where = 'application="shop",environment="production",namespace="team"'
    assert shown[f"gantry_dora_deployments{{{where}}}"] == 3
    assert shown[f"gantry_dora_change_failure_ratio{{{where}}}"] == 2 / 3
    collector.forget_ledger("team", "shop")
    assert not [k for k in scrape(collector) if "shop" in k]


def test_a_lock_shows_its_holder_its_lease_and_its_queue() -> None:
    collector = RecordsCollector()
    lock = {
        "metadata": {"name": "staging", "namespace": "team"},
        "spec": {"leaseSeconds": 60},
        "status": {
            "holder": {
                "release": "team/shop-v2",
                "uid": "2",
                "since": "2026-12-03T10:00:00Z",
                "renewTime": "2026-12-03T10:05:00Z",
            },
            "queue": [
                {
                    "release": "team/shop-v3",
                    "uid": "3",
                    "enqueuedAt": "2026-12-03T10:01:00Z",
                    "renewTime": "2026-12-03T10:05:00Z",
                }
            ],
        },
    }
    collector.environment_lock("team", "staging", lock)
    shown = scrape(collector)
    held = 'environment="staging",holder="team/shop-v2",namespace="team"'
    assert shown[f"gantry_lock_lease_expiry_timestamp_seconds{{{held}}}"] == ts(
        "2026-12-03T10:06:00Z"
    )  # renewed + 60 s
    assert shown[f"gantry_lock_held_since_timestamp_seconds{{{held}}}"] == ts("2026-12-03T10:00:00Z")
    assert shown['gantry_lock_queue_length{environment="staging",namespace="team"}'] == 1
