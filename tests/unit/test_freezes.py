"""Freeze windows (time zones, DST), incident freezes from Alertmanager, and the break-glass
override: the pure rules, case by case and by property."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gantry.domain.inputs import incidents
from gantry.domain.inputs.release_sources import Hook
from gantry.domain.records import decisions, locks, windows
from gantry.domain.records.locks import Claimant, Granted, LockState, Waiting
from gantry.plugin.views import lock_table

BERLIN = ZoneInfo("Europe/Berlin")
WEEKEND = {
    "name": "weekend",
    "start": "2026-01-02T18:00",
    "rrule": "FREQ=WEEKLY;BYDAY=FR",
    "timeZone": "Europe/Berlin",
    "duration": "60h",
    "reason": "no deploys over the weekend",
}
LEASE = timedelta(seconds=60)
A, B = Claimant("ns/a", "uid-a"), Claimant("ns/b", "uid-b")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def weekend() -> windows.FreezeWindow:
    return windows.parse([WEEKEND], "spec.freezeWindows")[0]


@pytest.mark.parametrize(
    ("now", "opening"),
    [
        # Winter (CET, UTC+1): Friday 18:00 is 17:00 UTC; Monday 06:00 is 05:00 UTC.
        ("2026-01-09T16:59:59", None),
        ("2026-01-09T17:00:00", ("2026-01-09T17:00:00", "2026-01-12T05:00:00")),
        ("2026-01-12T04:59:59", ("2026-01-09T17:00:00", "2026-01-12T05:00:00")),
        ("2026-01-12T05:00:00", None),
        # Clocks go forward on Sunday 29 March: opens at 18:00 CET, closes at 06:00 CEST (59 h).
        ("2026-03-27T17:00:00", ("2026-03-27T17:00:00", "2026-03-30T04:00:00")),
        ("2026-03-30T04:00:00", None),
        # Clocks go back on Sunday 25 October: opens at 18:00 CEST, closes at 06:00 CET (61 h).
        ("2026-10-23T15:59:59", None),
        ("2026-10-23T16:00:00", ("2026-10-23T16:00:00", "2026-10-26T05:00:00")),
        ("2026-10-26T04:59:59", ("2026-10-23T16:00:00", "2026-10-26T05:00:00")),
    ],
)
def test_a_weekly_window_keeps_its_wall_clock_bounds_across_dst(
    now: str, opening: tuple[str, str] | None
) -> None:
    expected = (utc(opening[0]), utc(opening[1])) if opening else None
    assert weekend().opening(utc(now)) == expected


def test_a_window_before_its_first_start_is_closed_and_says_when_it_opens() -> None:
    window = weekend()
    assert window.opening(utc("2026-01-01T12:00:00")) is None
    assert window.next_opening(utc("2026-01-01T12:00:00")) == utc("2026-01-02T17:00:00")


def test_a_daily_window_on_the_night_the_clock_skips_its_start_opens_by_the_offset_before() -> None:
    """02:30 does not exist in Berlin on 29 March 2026: read with the offset before (fold=0), it is
    01:30 UTC, i.e. 03:30 CEST, and lasts its hour from there (not zero: 03:30 is also its end on
    the wall clock)."""
    night = windows.parse(
        [
            {
                "name": "n",
                "start": "2026-03-01T02:30",
                "rrule": "FREQ=DAILY",
                "timeZone": "Europe/Berlin",
                "duration": "1h",
            }
        ],
        "w",
    )[0]
    assert night.opening(utc("2026-03-29T01:45:00")) == (
        utc("2026-03-29T01:30:00"),
        utc("2026-03-29T02:30:00"),
    )


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime(2026, 1, 3), max_value=datetime(2031, 12, 31), timezones=st.just(UTC)))
def test_any_moment_is_inside_the_occurrence_it_reports_and_the_weekend_is_friday_to_monday_local(
    now: datetime,
) -> None:
    window = weekend()
    opening = window.opening(now)
    local = now.astimezone(BERLIN)
    friday_evening = local.weekday() == 4 and local.hour >= 18
    monday_morning = local.weekday() == 0 and local.hour < 6
    assert (opening is not None) == (friday_evening or local.weekday() in (5, 6) or monday_morning)
    if opening is not None:
        start, end = (t.astimezone(BERLIN) for t in opening)
        assert start <= local < end
        assert (start.weekday(), start.hour, start.minute) == (4, 18, 0)
        assert (end.weekday(), end.hour, end.minute) == (0, 6, 0)
    following = window.next_opening(now)
    assert following is not None and following > now


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"timeZone": "Mars/Olympus"}, "spec.freezeWindows[0].timeZone"),
        ({"start": "friday"}, "spec.freezeWindows[0].start"),
        ({"duration": "soon"}, "spec.freezeWindows[0].duration"),
        ({"rrule": "FREQ=WEEKLY;BYDAY=XX"}, "spec.freezeWindows[0].rrule"),
        ({"rrule": "FREQ=MINUTELY"}, "spec.freezeWindows[0].rrule"),
    ],
)
def test_a_window_that_cannot_be_read_names_its_field_and_freezes_the_lock(
    change: dict[str, str], field: str
) -> None:
    raw = [{**WEEKEND, **change}]
    found = windows.look(raw, "spec.freezeWindows", utc("2026-01-07T12:00:00"))
    assert isinstance(found, windows.BadWindow) and str(found).startswith(field) and "fix" in str(found)
    state = locks.settle_window(LockState(), found, utc("2026-01-07T12:00:00"))
    assert state.freeze is not None and state.freeze.kind == locks.FreezeKind.WINDOW
    assert field in state.freeze.reason


def test_an_open_window_holds_normal_releases_admits_hotfixes_and_overrides_and_closes_on_the_record() -> (
    None
):
    friday = utc("2026-01-09T18:00:00")
    state = locks.settle_window(LockState(), windows.look([WEEKEND], "w", friday), friday)
    assert state.window is not None and state.window.until == utc("2026-01-12T05:00:00")
    assert "until 2026-01-12T05:00:00.000Z" in state.window.describe()
    held, outcome = locks.acquire(state, A, friday, LEASE)
    assert isinstance(outcome, Waiting) and outcome.frozen == state.window and held.holder is None
    _, hotfix = locks.acquire(held, B, friday, LEASE, hotfix=True)
    assert isinstance(hotfix, Granted)
    _, overridden = locks.acquire(held, B, friday, LEASE, overridden=True)
    assert isinstance(overridden, Granted)
    monday = utc("2026-01-12T05:00:00")
    closed = locks.settle_window(held, windows.look([WEEKEND], "w", monday), monday)
    assert closed.window is None and closed.freeze is None
    assert [(t.claimant.release, t.reason) for t in closed.history] == [
        ("freeze window weekend", "FreezeWindowClosed")
    ]
    assert locks.from_status(locks.to_status(state)).window == state.window  # round trip
    _, granted = locks.acquire(closed, A, monday, LEASE)
    assert isinstance(granted, Granted)


def alert(
    status: str = "firing", environments: str = "production", fingerprint: str = "f1"
) -> dict[str, object]:
    return {
        "status": status,
        "labels": {"alertname": "CheckoutErrors", incidents.ENVIRONMENT_LABEL: environments},
        "annotations": {"summary": "checkout 5xx over 5%"},
        "startsAt": "2026-12-03T10:00:00.123456789Z",
        "fingerprint": fingerprint,
    }


def test_an_alertmanager_payload_names_each_environment_of_each_alert() -> None:
    body = json.dumps(
        {
            "version": "4",
            "alerts": [alert(environments="staging, production"), alert("resolved", "dev", "f2")],
        }
    )
    signals = incidents.read(body.encode())
    assert not isinstance(signals, Hook)
    assert [(s.environment, s.firing, s.alert, s.reason) for s in signals] == [
        ("staging", True, "CheckoutErrors", "checkout 5xx over 5%"),
        ("production", True, "CheckoutErrors", "checkout 5xx over 5%"),
        ("dev", False, "CheckoutErrors", "checkout 5xx over 5%"),
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"alerts": {}}',
        json.dumps({"alerts": [alert(environments="../kube-system")]}).encode(),
        json.dumps({"alerts": [{**alert(), "status": "pending"}]}).encode(),
        json.dumps({"alerts": [{**alert(), "startsAt": "yesterday"}]}).encode(),
    ],
)
def test_a_bad_payload_is_refused_before_it_names_anything(body: bytes) -> None:
    answer = incidents.read(body)
    assert isinstance(answer, Hook) and answer.status == 400


def test_the_receiver_needs_the_namespaces_token() -> None:
    assert incidents.unauthenticated(None, {"Authorization": "Bearer x"}) == incidents.NO_RECEIVER
    assert incidents.unauthenticated("s3cret", {"Authorization": "Bearer x"}).status == 401  # type: ignore[union-attr]
    assert incidents.unauthenticated("s3cret", {}).status == 401  # type: ignore[union-attr]
    assert incidents.unauthenticated("s3cret", {"authorization": "Bearer s3cret"}) is None


def test_an_incident_freezes_while_any_of_its_alerts_fires_and_a_persons_lift_holds_for_those_alerts() -> (
    None
):
    t0 = utc("2026-12-03T10:00:00")
    state = locks.incident_fires(LockState(), "CheckoutErrors", "f1", "checkout 5xx", t0)
    state = locks.incident_fires(state, "CheckoutErrors", "f2", "checkout 5xx", t0)
    assert state.freeze is not None and state.freeze.kind == locks.FreezeKind.INCIDENT
    assert locks.incident_fires(state, "CheckoutErrors", "f1", "again", t0) == state  # re-sent: no change
    state = locks.incident_resolves(state, "f1", t0 + timedelta(minutes=5))
    assert state.freeze is not None  # f2 still fires
    lifted = locks.lift_incident(
        state, "alice", "FreezeLifted by alice: false alarm", t0 + timedelta(minutes=6)
    )
    assert lifted.freeze is None and lifted.history[-1].reason.startswith("FreezeLifted by alice")
    assert locks.incident_fires(lifted, "CheckoutErrors", "f2", "re-sent", t0) == lifted
    again = locks.incident_fires(lifted, "LatencyBurn", "f3", "p99 over 2s", t0)
    assert again.freeze is not None  # a new alert freezes again
    ended = locks.incident_resolves(locks.incident_resolves(again, "f2", t0), "f3", t0 + timedelta(minutes=9))
    assert ended.incident is None and ended.history[-1].reason == "IncidentResolved"
    assert locks.from_status(locks.to_status(again)).incident == again.incident


def test_an_override_counts_once_applied_and_not_when_ignored() -> None:
    decision = {"name": "d1", "action": "OverrideFreeze", "decidedBy": "alice", "reason": "sev1 fix"}
    assert not decisions.overridden({"decisions": [decision], "decisionsApplied": 0})
    assert decisions.overridden({"decisions": [decision], "decisionsApplied": 1})
    ignored = {
        "decisions": [decision],
        "decisionsApplied": 1,
        "decisionResults": [{"name": "d1", "result": "Ignored"}],
    }
    assert not decisions.overridden(ignored)


def test_kubectl_gantry_lock_status_shows_the_freeze_in_force_and_the_next_window() -> None:
    friday = utc("2026-01-09T18:00:00")
    lock = {"metadata": {"name": "production", "namespace": "shop"}, "spec": {"freezeWindows": [WEEKEND]}}
    table = lock_table([lock], friday)
    row = dict(zip(table.headers, table.rows[0], strict=True))
    assert row["FROZEN BY"] == "window weekend (no deploys over the weekend; until 2026-01-12T05:00:00.000Z)"
    assert row["NEXT WINDOW"] == "weekend at 2026-01-16T17:00:00.000Z"
    incident = locks.incident_fires(LockState(), "CheckoutErrors", "f1", "checkout 5xx", friday)
    lock["status"] = locks.to_status(incident)
    row = dict(zip(table.headers, lock_table([lock], friday).rows[0], strict=True))
    assert row["FROZEN BY"] == "CheckoutErrors (incident: checkout 5xx)"  # the incident says more
    assert lock_table([lock], friday).records[0]["freeze"]["kind"] == "Incident"
