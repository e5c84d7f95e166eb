"""Newest wins (a ReleaseSource's NewestOnly) without starvation: a Release at a stage's door
gives way only to a newer one that has come as far (domain.flow.steps.gives_way).

A small model of a pipeline: stages that each take a few ticks and serve one Release at a time,
commits arriving on any tick. With the naive rule ("give way whenever a newer Release exists")
and commits faster than a stage, nothing ever passes the second stage; with the rule as built,
the last stage keeps passing Releases however fast commits come."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from gantry.domain.flow.steps import gives_way


@dataclass
class Flight:
    stage: int = 0  # the stage it is at (the door, or in it)
    begun: bool = False
    left: int = 0
    over: bool = False  # passed the last stage, or gave way


def run(
    arrivals: list[bool],
    durations: list[int],
    rule: Callable[[int, int | None], bool],
    busy: list[int] | None = None,
) -> list[int]:
    """The ticks at which a Release passed the last stage (and, in `busy`, the ticks at which some
    Release was in flight)."""
    stages, flights, passed = len(durations), [], []
    for tick, arrives in enumerate(arrivals):
        if arrives:
            flights.append(Flight())
        if busy is not None and any(not f.over for f in flights):
            busy.append(tick)
        newest = flights[-1] if flights else None
        for flight in [f for f in flights if not f.over]:
            if flight.begun:
                flight.left -= 1
                if flight.left == 0:
                    flight.stage, flight.begun = flight.stage + 1, False
                    if flight.stage == stages:
                        flight.over = True
                        passed.append(tick)
                continue
            reached = None if newest is None or (newest.over and newest.stage < stages) else newest.stage
            if flight is not newest and rule(flight.stage, reached):
                flight.over = True  # superseded
                continue
            occupied = any(f.begun and f.stage == flight.stage for f in flights if not f.over)
            if not occupied:
                flight.begun, flight.left = True, durations[flight.stage]
    return passed


def naive(at: int, newer_reached: int | None) -> bool:
    return newer_reached is not None


def test_the_naive_rule_starves_the_later_stages_when_commits_come_faster_than_a_stage() -> None:
    assert run([True] * 200, [3, 3, 3], naive) == []


def test_the_rule_as_built_keeps_releasing_when_commits_come_on_every_tick() -> None:
    passed = run([True] * 200, [3, 3, 3], gives_way)
    assert len(passed) >= 200 // 3 - 4


@settings(max_examples=300, deadline=None)
@given(
    durations=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    arrivals=st.lists(st.booleans(), min_size=30, max_size=200),
)
def test_while_anything_is_in_flight_a_release_passes_the_last_stage_soon(
    durations: list[int], arrivals: list[bool]
) -> None:
    """At any tick at which some Release is in flight, one passes the last stage within
    sum(durations) + len(durations) ticks, however commits arrive: the stages always serve the
    furthest Release there is, and a newer one takes over only once it has come as far."""
    busy: list[int] = []
    passed = set(run(arrivals, durations, gives_way, busy))
    bound = sum(durations) + len(durations)
    for tick in busy:
        if tick + bound < len(arrivals):
            assert passed & set(range(tick, tick + bound + 1)), (tick, sorted(passed))
