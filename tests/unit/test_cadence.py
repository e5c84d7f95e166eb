"""How often a Release is looked at: in flight always, waiting only when something may have changed."""

from __future__ import annotations

from datetime import UTC, datetime

from gantry.domain.flow.cadence import LastLook, look_due

NOW = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
WAITING = {"phase": "Verified", "stages": [{"name": "staging"}]}


def due(status: dict[str, object], version: str, last: LastLook | None, after: float) -> bool:
    return look_due(status, version, last, 1000.0 + after, NOW, waiting_interval=10, resync=300)


def test_releases_in_flight_and_first_looks_are_always_due() -> None:
    assert due({"phase": "Deploying"}, "5", LastLook(1000.0, "5"), 0.1)
    assert due(WAITING, "5", None, 0)


def test_a_waiting_release_that_did_not_change_waits_for_the_resync() -> None:
    last = LastLook(1000.0, "5")
    assert not due(WAITING, "5", last, 5)
    assert not due(WAITING, "5", last, 299)
    assert due(WAITING, "5", last, 300)


def test_a_changed_object_a_held_lock_or_a_due_deadline_are_looked_at_after_the_waiting_interval() -> None:
    last = LastLook(1000.0, "5")
    assert not due(WAITING, "6", last, 9)  # a decision arrived: looked at, but not more than every 10 s
    assert due(WAITING, "6", last, 10)
    assert due({**WAITING, "lock": {"name": "staging"}}, "5", last, 10)  # the lease needs renewing
    deadline = {"phase": "AwaitingDecision", "stages": [{"decisionDeadline": "2026-05-01T08:59:00Z"}]}
    assert due(deadline, "5", last, 10)
    later = {"phase": "AwaitingDecision", "stages": [{"decisionDeadline": "2026-05-01T09:30:00Z"}]}
    assert not due(later, "5", last, 10)


def test_a_look_cut_short_is_followed_at_once_while_it_moves_the_release_on() -> None:
    from gantry.domain.flow.cadence import MAX_HURRIED, MAX_STALLED, Haste

    haste = Haste()
    assert not haste.again(True, "1")  # settled: wait for an event
    moving = [haste.again(False, str(v)) for v in range(2, 2 + MAX_HURRIED + 1)]
    assert all(moving[:MAX_HURRIED]) and not moving[-1]  # a flow, however long, then the timer
    stuck = Haste()
    stalled = [stuck.again(False, "7") for _ in range(MAX_STALLED + 2)]
    assert all(stalled[: MAX_STALLED + 1]) and not stalled[-1]  # the first look moved (from ""), then 5
    assert stuck.again(True, "7") is False and stuck.again(False, "8") is True  # settled resets it


def test_a_release_waiting_for_a_person_with_no_clock_running_needs_no_driver_of_its_own() -> None:
    from gantry.domain.flow.cadence import needs_driver

    meta = {"generation": 1}
    manual = {
        "stages": [{"name": "staging"}, {"name": "production", "production": True, "promotion": "Manual"}]
    }
    verified = {
        "phase": "Verified",
        "observedGeneration": 1,
        "pipeline": manual,
        "stages": [{"name": "staging"}],
    }
    assert not needs_driver(verified, meta)  # a decision is applied by the decision desk at once
    assert not needs_driver({**verified, "phase": "Held"}, meta)
    assert not needs_driver({**verified, "phase": "AwaitingApproval"}, meta)
    assert not needs_driver({"phase": "Released"}, meta)
    # ... but one whose clock or lease runs, or that something moved on, does.
    assert needs_driver({"phase": "Testing"}, meta) and needs_driver({}, meta)
    assert needs_driver({**verified, "lock": {"name": "staging"}}, meta)  # the lease needs renewing
    deciding = {
        **verified,
        "phase": "AwaitingDecision",
        "stages": [{"decisionDeadline": "2026-05-01T10:00:00Z"}],
    }
    assert needs_driver(deciding, meta)
    assert needs_driver({**verified, "decisions": [{"name": "d1"}], "decisionsApplied": 0}, meta)
    assert needs_driver(verified, {"generation": 2})  # an edit not looked at yet
    assert needs_driver(verified, {**meta, "annotations": {"gantry.dev/superseded-by": "shop-newer"}})
    auto = {"stages": [{"name": "staging"}, {"name": "production", "production": True, "promotion": "Auto"}]}
    assert needs_driver({**verified, "pipeline": auto}, meta)  # promotes by itself
