"""The DORA measures read from a production ledger (domain.records.dora)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gantry.domain.records import dora

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def at(hours_ago: float) -> str:
    return (NOW - timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def entry(uid: str, result: str, deployed: float | None, **more: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"release": f"shop/{uid}", "uid": uid, "result": result, **more}
    if deployed is not None:
        out["deployedAt"] = at(deployed)
    return out


def test_an_empty_ledger_measures_nothing_rather_than_zeros() -> None:
    measured = dora.measure([], NOW)
    assert measured.deployments == 0 and measured.lead_time_seconds is None
    assert measured.change_failure_ratio is None and measured.restore_seconds is None


def test_frequency_lead_time_failure_rate_and_restore_from_one_ledger() -> None:
    history = [
        # 10 days ago: released; its first commit 30 h before the deploy
        entry("a", "Released", 240, committedAt=at(270), createdAt=at(250)),
        # 5 days ago: breached 1 h after its deploy, rolled back; the previous one restored 20 min later
        entry("b", "RolledBack", 120, createdAt=at(122), breachedAt=at(119)),
        entry("a", "Restored", 118.6667),
        # 1 day ago: an emergency Release, made 2 h before
        entry("c", "Emergency", 24, createdAt=at(26)),
        # now: still deploying (no deploy time yet): not counted
        entry("d", "Deploying", None, createdAt=at(1)),
    ]
    measured = dora.measure(history, NOW)
    assert measured.deployments == 3  # a, b, c: the restore is not a new deployment
    assert measured.per_day == pytest.approx(3 / 10)
    assert measured.lead_time_seconds == pytest.approx(2 * 3600)  # median of 30 h, 2 h, 2 h
    assert measured.change_failure_ratio == pytest.approx(2 / 3)  # b rolled back, c an emergency
    assert measured.restore_seconds == pytest.approx(0.3333 * 3600, rel=1e-3)


def test_a_breach_is_restored_by_the_next_deploy_that_stood_whatever_it_is() -> None:
    history = [
        entry("a", "Breached", 10, breachedAt=at(9)),
        entry("b", "Released", 8),
    ]
    assert dora.measure(history, NOW).restore_seconds == pytest.approx(3600)


def test_entries_older_than_the_window_are_left_out() -> None:
    history = [entry("old", "RolledBack", 24 * 40), entry("new", "Released", 2)]
    measured = dora.measure(history, NOW)
    assert measured.deployments == 1 and measured.change_failure_ratio == 0
    assert measured.per_day == 1.0  # one day at least: a first deploy today is not 12 per day


def test_unreadable_times_are_skipped_not_fatal() -> None:
    history = [entry("a", "Released", 5, committedAt="yesterday", createdAt="not a time")]
    measured = dora.measure(history, NOW)
    assert measured.deployments == 1 and measured.lead_time_seconds is None
