"""How often a Release is looked at: in flight always, waiting only when something may have changed."""

from __future__ import annotations

from datetime import UTC, datetime

from gantry.domain.cadence import LastLook, first_look, look_due

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


def test_first_looks_after_a_start_are_spread_over_one_waiting_interval() -> None:
    assert first_look({"phase": "Deploying"}, "uid", 1000.0, 10) is None
    firsts = [first_look(WAITING, f"uid-{i}", 1000.0, 10) for i in range(200)]
    delays = []
    for last in firsts:
        assert last is not None
        delays.append(next(t / 10 for t in range(0, 101) if due(WAITING, "5", last, t / 10)))
    assert min(delays) < 1 and max(delays) > 9 and max(delays) <= 10


def test_after_a_start_a_waiting_release_holding_nothing_is_first_looked_at_within_one_resync() -> None:
    """It changes only by an event (which wakes it at once) or a deadline (due on its own)."""
    firsts = [first_look(WAITING, f"uid-{i}", 1000.0, 10, "5", resync=300) for i in range(200)]
    delays = []
    for last in firsts:
        assert last is not None
        delays.append(next(t for t in range(0, 302) if due(WAITING, "5", last, t)))
    assert min(delays) < 15 and max(delays) > 280 and max(delays) <= 300
    holder = first_look({**WAITING, "lock": {"name": "staging"}}, "uid-0", 1000.0, 10, "5", resync=300)
    assert holder is not None and due({**WAITING, "lock": {"name": "staging"}}, "5", holder, 10)


def test_a_look_cut_short_is_followed_at_once_while_it_moves_the_release_on() -> None:
    from gantry.domain.cadence import MAX_HURRIED, MAX_STALLED, Haste

    haste = Haste()
    assert not haste.again(True, "1")  # settled: wait for an event
    moving = [haste.again(False, str(v)) for v in range(2, 2 + MAX_HURRIED + 1)]
    assert all(moving[:MAX_HURRIED]) and not moving[-1]  # a flow, however long, then the timer
    stuck = Haste()
    stalled = [stuck.again(False, "7") for _ in range(MAX_STALLED + 2)]
    assert all(stalled[: MAX_STALLED + 1]) and not stalled[-1]  # the first look moved (from ""), then 5
    assert stuck.again(True, "7") is False and stuck.again(False, "8") is True  # settled resets it
