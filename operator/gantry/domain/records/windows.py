"""Freeze windows: recurring spans of time (an iCalendar RRULE from a first start, in a time zone)
during which an EnvironmentLock takes only hotfix Releases.

A window is written as people think of it, on the wall clock of its time zone: `start`
2026-01-02T18:00 in Europe/Berlin, `rrule` FREQ=WEEKLY;BYDAY=FR, `duration` 60h is every Friday
18:00 to Monday 06:00 Berlin time, summer and winter alike. So occurrences and their ends are
computed in local wall-clock time and only then placed on the time line: across a DST change a
window keeps its wall-clock bounds (and lasts an hour more or less). A local time that does not
exist (02:30 on the spring-forward night) is read with the offset before the change, as
zoneinfo does (fold=0: 03:30 summer time), and such an occurrence lasts its duration from
there; one that occurs twice is its first occurrence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrule, rrulestr

# Daily and coarser: a window is a change freeze, not a cron job (and an rrule is walked from
# its start, so a minutely one over years would be slow to evaluate).
FREQUENCIES = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$")


@dataclass(frozen=True)
class FreezeWindow:
    name: str
    start: datetime  # the first occurrence, naive, on the wall clock of `zone`
    rule: str  # the RRULE, e.g. FREQ=WEEKLY;BYDAY=FR
    zone: str  # an IANA time zone, e.g. Europe/Berlin
    duration: timedelta  # on the wall clock
    reason: str = ""

    def occurrences(self) -> rrule:
        parsed = rrulestr(self.rule, dtstart=self.start)
        assert isinstance(parsed, rrule)
        return parsed

    def opening(self, now: datetime) -> tuple[datetime, datetime] | None:
        """The occurrence that covers `now` (UTC start, UTC end), or None when the window is closed.
        Of overlapping occurrences the latest start also ends latest (the duration is constant)."""
        tz = ZoneInfo(self.zone)
        local = now.astimezone(tz).replace(tzinfo=None)
        began = self.occurrences().before(local, inc=True)
        if began is None:
            return None
        start, end = _placed(began, tz), _placed(began + self.duration, tz)
        if start.astimezone(tz).replace(tzinfo=None) != began:
            end = start + self.duration  # it began in the hour a clock skips: its length from there
        return (start, end) if start <= now < end else None

    def next_opening(self, now: datetime) -> datetime | None:
        tz = ZoneInfo(self.zone)
        after = self.occurrences().after(now.astimezone(tz).replace(tzinfo=None))
        return _placed(after, tz) if after is not None else None


class BadWindow(ValueError):
    """A window that cannot be read: the message names the field and the fix."""


def parse(raw: Sequence[Mapping[str, object]], where: str) -> tuple[FreezeWindow, ...]:
    """spec.freezeWindows (of an EnvironmentLock or a Pipeline) -> windows, or BadWindow naming
    the field. The CRD's schema refuses most mistakes at admission; a time zone's name cannot be
    checked there, nor an rrule's words."""
    return tuple(_one(item, f"{where}[{i}]") for i, item in enumerate(raw or ()))


def _one(item: Mapping[str, object], where: str) -> FreezeWindow:
    name = str(item.get("name") or "")
    zone = str(item.get("timeZone") or "UTC")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise BadWindow(
            f"{where}.timeZone: {zone!r} is not a time zone this operator knows; fix: an IANA name such "
            "as Europe/Berlin or UTC"
        ) from error
    try:
        start = datetime.fromisoformat(str(item.get("start")))
    except ValueError as error:
        raise BadWindow(
            f"{where}.start: {item.get('start')!r} is not a local date and time; fix: e.g. 2026-01-02T18:00"
        ) from error
    rule = str(item.get("rrule") or "")
    duration = _duration(str(item.get("duration") or ""))
    if duration is None or not duration:
        raise BadWindow(f"{where}.duration: {item.get('duration')!r} is no duration; fix: e.g. 60h or 1d12h")
    window = FreezeWindow(
        name, start.replace(tzinfo=None), rule, zone, duration, str(item.get("reason") or "")
    )
    freq = dict(part.split("=", 1) for part in rule.split(";") if "=" in part).get("FREQ")
    try:
        window.occurrences()
    except (ValueError, TypeError) as error:
        raise BadWindow(f"{where}.rrule: {rule!r}: {error}; fix: e.g. FREQ=WEEKLY;BYDAY=FR") from error
    if freq not in FREQUENCIES:
        raise BadWindow(
            f"{where}.rrule: FREQ is {freq}; fix: one of {', '.join(FREQUENCIES)} (a change freeze)"
        )
    return window


def _duration(text: str) -> timedelta | None:
    match = _DURATION.match(text)
    if match is None:
        return None
    days, hours, minutes = (int(g or 0) for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes)


def _placed(local: datetime, tz: ZoneInfo) -> datetime:
    """A wall-clock time in `tz` on the UTC time line (fold=0: see the module's note)."""
    return local.replace(tzinfo=tz).astimezone(UTC)


# What the windows say now: the open one (with its span), none, or why they cannot be read.
Found = tuple[FreezeWindow, datetime, datetime] | BadWindow | None


def look(raw: Sequence[Mapping[str, object]], where: str, now: datetime) -> Found:
    try:
        return open_now(parse(raw, where), now)
    except BadWindow as error:
        return error


def open_now(
    windows: Sequence[FreezeWindow], now: datetime
) -> tuple[FreezeWindow, datetime, datetime] | None:
    """The open window that stays open longest, with its occurrence's start and end (UTC)."""
    found = [(w, *span) for w in windows if (span := w.opening(now)) is not None]
    return max(found, key=lambda x: x[2]) if found else None
