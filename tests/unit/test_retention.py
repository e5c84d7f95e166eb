"""Retention of finished Releases: the newest N kept, referenced ones kept whatever their age,
nothing finished recently deleted, and a one-line summary of each deleted one in the ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gantry.domain.records import retention
from gantry.domain.records.retention import Finished, Policy
from gantry.domain.vocabulary.problems import Problem

NOW = datetime(2026, 12, 3, tzinfo=UTC)
DAY = timedelta(days=1)


def finished(name: str, days_ago: float, passed: tuple[str, ...] = (), phase: str = "Failed") -> Finished:
    return Finished(name, f"uid-{name}", "v1.0.0", phase, "TestFailed", NOW - days_ago * DAY, passed)


def ledger_of(*releases: str, quarantined: tuple[str, ...] = ()) -> dict[str, Any]:
    history = [{"release": f"team/{r}", "result": "Released", "version": "v1.0.0"} for r in releases]
    return {
        "production": {"history": history},
        "quarantine": [{"digest": "sha256:" + "a" * 64, "release": f"team/{q}"} for q in quarantined],
    }


def test_the_newest_are_kept_and_older_ones_go_oldest_first() -> None:
    found = [finished(f"r{i}", days_ago=10 - i) for i in range(6)]  # r5 newest
    sweep = retention.plan(Policy(2, DAY), found, {}, NOW)
    assert [f.name for f in sweep.deleted] == ["r0", "r1", "r2", "r3"]
    assert sweep.kept == {"r5": "one of the newest 2", "r4": "one of the newest 2"}


def test_referenced_releases_stay_whatever_their_age() -> None:
    found = [
        finished("released-v1", 30, ("staging", "production"), "Released"),
        finished("released-v2", 20, ("staging", "production"), "Released"),
        finished("quarantined", 25, ("staging", "production"), "RolledBack"),
        finished("staging-only", 15, ("staging",)),
        finished("old-failure", 40),
        finished("new-1", 2),
        finished("new-2", 1),
    ]
    ledger = ledger_of("released-v1", "released-v2", quarantined=("quarantined",))
    sweep = retention.plan(Policy(2, DAY), found, ledger, NOW)
    assert [f.name for f in sweep.deleted] == ["old-failure"]
    assert sweep.kept["released-v1"].startswith("in production's history")  # a rollback target
    assert sweep.kept["quarantined"] == "evidence of a quarantined digest"
    assert sweep.kept["staging-only"] == "the newest to have passed stage staging"


def test_nothing_finished_within_the_grace_period_is_deleted() -> None:
    found = [finished("a", 0.5), finished("b", 0.2), finished("c", 3)]
    sweep = retention.plan(Policy(0, DAY), found, {}, NOW)
    assert [f.name for f in sweep.deleted] == ["c"]


def test_the_ledger_keeps_one_line_each_once_and_counts_them_all() -> None:
    lines = [retention.summary(finished(f"r{i}", 5), "shop", NOW) for i in range(3)]
    status = retention.retire({}, lines)
    again = retention.retire(status, lines[1:])  # a sweep killed half-way and run again
    assert again["retiredCount"] == 3 and [r["release"] for r in again["retired"]] == ["r0", "r1", "r2"]
    assert lines[0]["phase"] == "Failed" and lines[0]["deletedAt"] == "2026-12-03T00:00:00.000Z"
    many = retention.retire(again, [retention.summary(finished(f"x{i}", 5), "shop", NOW) for i in range(300)])
    assert len(many["retired"]) == retention.RETIRED_LIMIT and many["retiredCount"] == 303


def test_the_policy_comes_from_the_pipeline_over_the_operators_defaults() -> None:
    assert retention.policy_of(None, 0, DAY) is None  # off
    assert retention.policy_of(None, 100, DAY) == Policy(100, DAY)
    assert retention.policy_of({"keepFinished": 5, "dryRun": True}, 100, DAY) == Policy(5, DAY, True)
    assert retention.policy_of({"keepFinished": 0}, 0, DAY) == Policy(0, DAY)  # the Pipeline asks for it
    assert isinstance(retention.policy_of({"keepFinished": -1}, 100, DAY), Problem)


@settings(max_examples=200, deadline=None)
@given(
    ages=st.lists(st.floats(0, 100), min_size=0, max_size=40),
    keep=st.integers(0, 10),
    in_ledger=st.sets(st.integers(0, 39), max_size=8),
)
def test_never_deleted_the_newest_the_recent_or_the_referenced(
    ages: list[float], keep: int, in_ledger: set[int]
) -> None:
    found = [finished(f"r{i}", age, ("staging",) if i % 3 == 0 else ()) for i, age in enumerate(ages)]
    ledger = ledger_of(*(f"r{i}" for i in in_ledger if i < len(ages)))
    sweep = retention.plan(Policy(keep, DAY), found, ledger, NOW)
    gone = {f.name for f in sweep.deleted}
    newest = sorted(found, key=lambda f: (f.finished_at, f.name), reverse=True)
    assert not gone & {f.name for f in newest[:keep]}
    assert not gone & {f.name for f in found if NOW - f.finished_at < DAY}
    assert not gone & {f"r{i}" for i in in_ledger}
    stage_passers = [f for f in newest if f.passed]
    assert not stage_passers or stage_passers[0].name not in gone
    assert gone | set(sweep.kept) == {f.name for f in found} and not gone & set(sweep.kept)


def test_a_listed_release_that_is_not_final_is_no_candidate() -> None:
    body = {"metadata": {"name": "x", "uid": "u"}, "status": {"phase": "Testing"}}
    assert Finished.from_body(body) is None
    done = {
        "metadata": {"name": "y", "uid": "u", "creationTimestamp": "2026-12-01T00:00:00Z"},
        "status": {
            "phase": "Failed",
            "history": [{"time": "2026-12-02T10:00:00.000Z"}],
            "stages": [{"name": "dev", "step": "Passed"}, {"name": "staging", "step": "Failed"}],
        },
    }
    parsed = Finished.from_body(done)
    assert (
        parsed is not None
        and parsed.passed == ("dev",)
        and parsed.finished_at == datetime(2026, 12, 2, 10, tzinfo=UTC)
    )
