"""Lock arbitration: one holder, FIFO queue, leases; checked case by case and by property."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from gantry.domain.records import locks
from gantry.domain.records.locks import Claimant, Granted, LockState, Waiting
from gantry.plugin.views import queue_cell

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LEASE = timedelta(seconds=60)
A, B, C = Claimant("ns/a", "uid-a"), Claimant("ns/b", "uid-b"), Claimant("ns/c", "uid-c")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_first_claimant_gets_a_free_lock() -> None:
    state, outcome = locks.acquire(LockState(), A, at(0), LEASE)
    assert outcome == Granted(at(0))
    assert state.holder is not None and state.holder.claimant == A and state.queue == ()


def test_second_claimant_waits_behind_the_holder() -> None:
    state, _ = locks.acquire(LockState(), A, at(0), LEASE)
    state, outcome = locks.acquire(state, B, at(1), LEASE)
    assert outcome == Waiting(position=1, holder=A)
    assert [w.claimant for w in state.queue] == [B]


def test_holder_renewing_keeps_its_since_and_moves_renew_time() -> None:
    state, _ = locks.acquire(LockState(), A, at(0), LEASE)
    state, outcome = locks.acquire(state, A, at(30), LEASE)
    assert outcome == Granted(at(0))
    assert state.holder is not None and state.holder.renew_time == at(30)


def test_release_hands_over_in_queue_order_not_to_whoever_asks_first() -> None:
    state, _ = locks.acquire(LockState(), A, at(0), LEASE)
    state, _ = locks.acquire(state, B, at(1), LEASE)
    state, _ = locks.acquire(state, C, at(2), LEASE)
    state = locks.release(state, A, at(3), "Passed")
    state, outcome_c = locks.acquire(state, C, at(4), LEASE)
    assert outcome_c == Waiting(position=2, holder=None)
    state, outcome_b = locks.acquire(state, B, at(5), LEASE)
    assert outcome_b == Granted(at(5))
    assert [w.claimant for w in state.queue] == [C]
    assert [(t.claimant, t.reason) for t in state.history] == [(A, "Passed")]


def test_a_holder_that_stops_renewing_expires_and_is_recorded() -> None:
    state, _ = locks.acquire(LockState(), A, at(0), LEASE)
    state, outcome = locks.acquire(state, B, at(61), LEASE)
    assert outcome == Granted(at(61))
    assert [(t.claimant, t.reason, t.released_at) for t in state.history] == [(A, "LeaseExpired", at(61))]


def test_a_dead_waiter_at_the_head_of_the_queue_does_not_block_the_rest() -> None:
    state, _ = locks.acquire(LockState(), A, at(0), LEASE)
    state, _ = locks.acquire(state, B, at(1), LEASE)  # B then dies and never renews
    state, _ = locks.acquire(state, C, at(2), LEASE)
    state = locks.release(state, A, at(50), "Passed")
    state, outcome = locks.acquire(state, C, at(62), LEASE)
    assert outcome == Granted(at(62))


def test_releasing_a_lock_you_do_not_hold_only_leaves_the_queue() -> None:
    state, _ = locks.acquire(LockState(), A, at(0), LEASE)
    state, _ = locks.acquire(state, B, at(1), LEASE)
    after = locks.release(state, B, at(2), "Blocked")
    assert after.holder == state.holder and after.queue == () and after.history == ()


def test_renewal_is_due_at_a_third_of_the_lease() -> None:
    state, _ = locks.acquire(LockState(), A, at(0), LEASE)
    assert state.holder is not None
    assert not locks.renewal_due(state.holder, at(19), LEASE)
    assert locks.renewal_due(state.holder, at(20), LEASE)


def test_history_is_bounded() -> None:
    state = LockState()
    for i in range(locks.HISTORY_LIMIT + 5):
        who = Claimant(f"ns/r{i}", f"uid-{i}")
        state, _ = locks.acquire(state, who, at(i), LEASE)
        state = locks.release(state, who, at(i), "Passed")
    assert len(state.history) == locks.HISTORY_LIMIT
    assert state.history[-1].claimant.uid == f"uid-{locks.HISTORY_LIMIT + 4}"


def test_status_round_trip() -> None:
    state, _ = locks.acquire(LockState(), A, at(0), LEASE)
    state, _ = locks.acquire(state, B, at(1.5), LEASE)
    state = locks.release(state, A, at(2), "Passed")
    assert locks.from_status(locks.to_status(state)) == state
    assert "holder" not in locks.to_status(state)


# --- properties ----------------------------------------------------------------------------------

CLAIMANTS = [Claimant(f"ns/r{i}", f"uid-{i}") for i in range(5)]
operations = st.lists(
    st.tuples(st.sampled_from(["acquire", "release"]), st.integers(0, 4), st.integers(0, 40)),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_any_interleaving_keeps_one_holder_a_unique_queue_and_fifo_grants(
    ops: list[tuple[str, int, int]],
) -> None:
    state = LockState()
    now = T0
    first_queued: dict[str, datetime] = {}
    grants: list[str] = []
    for op, who, step in ops:
        now += timedelta(seconds=step)
        claimant = CLAIMANTS[who]
        if op == "acquire":
            before = state
            state, outcome = locks.acquire(state, claimant, now, LEASE)
            if isinstance(outcome, Granted) and (before.holder is None or before.holder.claimant != claimant):
                grants.append(claimant.uid)
                # Whoever gets a free lock was at the head of the live queue, or the queue was empty.
                live = locks.expire(before, now, LEASE).queue
                assert not live or live[0].claimant == claimant
            if isinstance(outcome, Waiting):
                first_queued.setdefault(claimant.uid, now)
                assert state.queue[outcome.position - 1].claimant == claimant
        else:
            state = locks.release(state, claimant, now, "Passed")
        uids = [w.claimant.uid for w in state.queue]
        assert len(uids) == len(set(uids)), "nobody is queued twice"
        assert state.holder is None or state.holder.claimant.uid not in uids, "the holder does not also wait"
        enqueued = [w.enqueued_at for w in state.queue]
        assert enqueued == sorted(enqueued), "the queue stays in arrival order"
    assert len(state.history) <= locks.HISTORY_LIMIT


def test_a_freeze_by_hand_lives_in_spec_holds_everyone_but_hotfixes_and_outlives_a_hotfix() -> None:
    lease = timedelta(minutes=5)
    a, hot = Claimant("ns/a", "a"), Claimant("ns/hot", "hot")
    body = {"spec": {"freeze": locks.freeze_by_hand("alice", "change freeze", T0)}, "status": {}}
    state = locks.from_object(body)
    assert state.freeze is not None and state.freeze.by_hand and state.frozen is None
    state, outcome = locks.acquire(state, a, T0, lease)
    assert isinstance(outcome, Waiting) and outcome.frozen is not None and outcome.frozen.by == "alice"
    state, outcome = locks.acquire(state, hot, T0, lease, hotfix=True)
    assert isinstance(outcome, Granted)
    assert "frozen" not in locks.to_status(state)  # a person's freeze is never copied into status
    lifted = locks.unfreeze(state, "FreezeLifted: hotfix released", T0)  # the emergency's only
    assert lifted.freeze is not None and lifted.freeze.by == "alice"


def test_an_emergency_freeze_is_told_apart_from_a_freeze_by_hand() -> None:
    emergency = locks.preempt(LockState(), Claimant("ns/v2", "v2"), T0, "emergency", hold=False, freeze=True)
    both = locks.from_object({"spec": {"freeze": {"by": "alice"}}, "status": locks.to_status(emergency)})
    assert both.freeze is not None and both.freeze.by == "ns/v2" and not both.freeze.by_hand
    assert both.manual is not None and both.manual.by_hand


def test_a_renew_time_in_the_future_is_aged_from_now_so_a_skewed_clock_cannot_hold_a_lock_for_ever() -> None:
    skewed, _ = locks.acquire(LockState(), A, at(3600), LEASE)  # the holder's clock is an hour ahead
    seen = locks.expire(skewed, at(0), LEASE)
    assert seen.holder is not None and seen.holder.renew_time == at(0)
    assert locks.expire(seen, at(61), LEASE).holder is None  # one lease after we first saw it


def test_a_holder_whose_clock_is_behind_ours_keeps_the_lock_while_it_renews() -> None:
    """Leases are judged like Kubernetes leader election: by when we saw the renewal, not by its stamp."""
    seen: locks.Sightings = {}
    state = LockState()
    for minute in range(5):  # it renews every 20 s by its clock, which is 10 minutes behind ours
        ours = at(minute * 60 + 20)
        state, _ = locks.acquire(state, A, ours - timedelta(minutes=10), LEASE)
        seen = locks.sight(seen, state, ours)
        assert locks.expire(state, ours, LEASE, seen).holder is not None
    assert locks.expire(state, ours, LEASE).holder is None  # by its timestamp it looked long dead


def test_a_lease_nobody_renews_runs_out_one_lease_after_we_first_saw_it_whatever_its_stamp() -> None:
    for stamp in (at(-3600), at(0), at(3600)):  # long ago, now, an hour ahead of our clock
        state, _ = locks.acquire(LockState(), A, stamp, LEASE)
        seen = locks.sight({}, state, at(0))  # first seen now (after a restart, say)
        assert locks.expire(state, at(59), LEASE, locks.sight(seen, state, at(59))).holder is not None
        expired = locks.expire(state, at(61), LEASE, locks.sight(seen, state, at(61)))
        assert expired.holder is None and expired.history[-1].reason == "LeaseExpired"


def test_a_waiter_is_judged_by_its_sightings_too() -> None:
    state, _ = locks.acquire(LockState(), A, at(0), LEASE)
    state, _ = locks.acquire(state, B, at(-600), LEASE)  # B's clock is ten minutes behind
    seen = locks.sight({}, state, at(0))
    assert [w.claimant for w in locks.expire(state, at(30), LEASE, seen).queue] == [B]
    assert locks.expire(state, at(61), LEASE, locks.sight(seen, state, at(61))).queue == ()


def test_a_lost_lock_is_described_as_it_happened() -> None:
    state, _ = locks.acquire(LockState(), A, at(0), LEASE)
    expired = locks.expire(state, at(120), LEASE)
    assert "lease ran out (60s" in locks.why_lost(expired, A, LEASE)
    taken, _ = locks.acquire(expired, B, at(121), LEASE)
    assert locks.why_lost(taken, A, LEASE).endswith("ns/b holds it now")
    by_hand = locks.release(state, A, at(5), "edited")
    assert "removed this Release as its holder" in locks.why_lost(by_hand, A, LEASE)


def test_a_release_refused_the_lock_on_every_tick_leaves_one_history_entry_not_twenty() -> None:
    """Reported: a lease too short to renew made its Release take the free lock and give it back
    (Blocked) on every tick: 20 identical entries in 25 s pushed the real history out."""
    from datetime import UTC, datetime, timedelta

    from gantry.domain.records import locks

    start = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
    other = locks.Claimant("team/shop-v0", "uid-0")
    state = locks.LockState(None, (), ())
    state, _ = locks.acquire(state, other, start, timedelta(seconds=300))
    state = locks.release(state, other, start + timedelta(seconds=1), "Released")
    churner = locks.Claimant("team/shop-v1", "uid-1")
    for tick in range(20):
        now = start + timedelta(seconds=2 + tick)
        state, _ = locks.acquire(state, churner, now, timedelta(seconds=300))
        state = locks.release(state, churner, now + timedelta(milliseconds=500), "Blocked")
    assert [(t.claimant.release, t.reason) for t in state.history] == [
        ("team/shop-v0", "Released"),
        ("team/shop-v1", "Blocked"),
    ]
    assert state.history[-1].released_at == start + timedelta(seconds=21, milliseconds=500)


def test_a_hotfix_waits_ahead_of_normal_releases_and_behind_earlier_hotfixes() -> None:
    fix1, fix2 = Claimant("ns/fix1", "uid-f1"), Claimant("ns/fix2", "uid-f2")
    state, _ = locks.acquire(LockState(), A, at(0), LEASE)
    state, _ = locks.acquire(state, B, at(1), LEASE)
    state, _ = locks.acquire(state, fix1, at(2), LEASE, hotfix=True)
    state, _ = locks.acquire(state, C, at(3), LEASE)
    state, outcome = locks.acquire(state, fix2, at(4), LEASE, hotfix=True)
    assert [w.claimant for w in state.queue] == [fix1, fix2, B, C]
    assert outcome == Waiting(position=2, holder=A)
    assert [locks.hotfixes_ahead(state, c) for c in (fix1, fix2, B, C)] == [0, 0, 2, 2]  # why B waits
    again = locks.from_status(locks.to_status(state))  # the class is on the record
    assert [(w.claimant, w.hotfix) for w in again.queue] == [
        (fix1, True),
        (fix2, True),
        (B, False),
        (C, False),
    ]


@settings(max_examples=300, deadline=None)
@given(
    arrivals=st.lists(st.booleans(), min_size=1, max_size=12),
    handovers=st.lists(st.integers(0, 3), max_size=12),
)
def test_the_queue_goes_by_class_then_first_come_and_everyone_is_served_once_arrivals_stop(
    arrivals: list[bool], handovers: list[int]
) -> None:
    """Claimants arrive (True: a hotfix), and between arrivals the holder lets go some times; once
    nobody new arrives, every claimant gets the lock, exactly once: hotfixes in the order they
    came, then normal Releases in the order they came, for those still waiting."""
    claimants = [Claimant(f"ns/r{i}", f"uid-{i}") for i in range(len(arrivals))]
    hotfix = {c.uid: h for c, h in zip(claimants, arrivals, strict=True)}
    state, clock, granted = LockState(), 0.0, []

    def tick(state: LockState) -> LockState:
        """Every waiter asks again (as each Release's driver does); whoever is granted holds."""
        nonlocal clock
        for waiter in state.queue:
            clock += 1
            state, outcome = locks.acquire(state, waiter.claimant, at(clock), LEASE, hotfix=waiter.hotfix)
            if isinstance(outcome, Granted):
                granted.append(waiter.claimant.uid)
        return state

    for i, claimant in enumerate(claimants):
        clock += 1
        state, outcome = locks.acquire(state, claimant, at(clock), LEASE, hotfix=arrivals[i])
        if isinstance(outcome, Granted):
            granted.append(claimant.uid)
        for _ in range(handovers[i] if i < len(handovers) else 0):
            if state.holder is not None:
                state = locks.release(state, state.holder.claimant, at(clock), "Passed")
            state = tick(state)
        queued = [w.hotfix for w in state.queue]
        assert queued == sorted(queued, reverse=True), "a normal Release waits ahead of a hotfix"
    waiting = [w.claimant.uid for w in state.queue]
    expected = [u for u in waiting if hotfix[u]] + [u for u in waiting if not hotfix[u]]
    assert waiting == expected  # by class, then in the order they came (arrival order is uid order)
    assert [u for u in waiting if hotfix[u]] == sorted(
        (u for u in waiting if hotfix[u]), key=lambda u: int(u[4:])
    )
    assert [u for u in waiting if not hotfix[u]] == sorted(
        (u for u in waiting if not hotfix[u]), key=lambda u: int(u[4:])
    )
    served_before = len(granted)
    for _ in range(len(claimants) + 1):  # arrivals stopped: hand over until the queue is empty
        if state.holder is not None:
            state = locks.release(state, state.holder.claimant, at(clock), "Passed")
        state = tick(state)
    assert granted[served_before:] == waiting  # each served, in that order
    assert sorted(granted) == sorted(c.uid for c in claimants)  # nobody starved, nobody twice


def test_the_plugin_marks_a_hotfix_in_the_queue() -> None:
    queue = [{"release": "ns/shop-v1.4.1", "hotfix": True}, {"release": "ns/shop-v2"}]
    assert queue_cell({"queue": queue}) == "shop-v1.4.1 (hotfix),shop-v2"


def test_a_newer_release_of_the_same_source_takes_the_place_of_the_one_it_supersedes() -> None:
    state, _ = locks.acquire(LockState(), A, at(0), LEASE)
    state, _ = locks.acquire(state, B, at(1), LEASE)  # shop's older Release
    state, _ = locks.acquire(state, C, at(2), LEASE)  # another application's
    newer = Claimant("ns/b2", "uid-b2")
    state, outcome = locks.acquire(state, newer, at(3), LEASE, heir_of=frozenset({"ns/b"}))
    assert outcome == Waiting(position=1, holder=A)
    state = locks.release(state, B, at(4), "Superseded")  # the older one gives way
    assert [(w.claimant, w.enqueued_at) for w in state.queue] == [(newer, at(1)), (C, at(2))]


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(
        st.one_of(st.tuples(st.just("commit"), st.sampled_from("xyz")), st.just(("handover", ""))),
        min_size=1,
        max_size=60,
    )
)
def test_newest_wins_never_sends_an_application_to_the_back_of_the_line(
    events: list[tuple[str, str]],
) -> None:
    """Applications x, y, z keep receiving commits (NewestOnly: each new Release supersedes the
    application's older one waiting, which gives way) while the holder hands over now and then.
    However fast commits come, an application's place in the queue only moves forward, and each
    handover serves the head: so every application waiting is served within as many handovers
    as there are applications ahead of it (no starvation)."""
    state, clock, count = LockState(), 0.0, 0
    served: list[str] = []

    def app(claimant: Claimant) -> str:
        return claimant.release.split("/")[1][0]

    def places(state: LockState) -> dict[str, int]:
        return {app(w.claimant): i for i, w in reversed(list(enumerate(state.queue)))}

    for kind, application in events:
        clock += 1
        before = places(state)
        if kind == "commit":
            count += 1
            newer = Claimant(f"ns/{application}{count}", f"uid-{count}")
            older = {w.claimant for w in state.queue if app(w.claimant) == application}
            state, outcome = locks.acquire(
                state, newer, at(clock), LEASE, heir_of=frozenset(c.release for c in older)
            )
            if isinstance(outcome, Granted):
                served.append(application)
            for claimant in older:  # each gives way on its next look
                state = locks.release(state, claimant, at(clock), "Superseded")
            after = places(state)
            assert all(after[a] <= place for a, place in before.items() if a in after), (before, after)
        else:
            if state.holder is not None:
                state = locks.release(state, state.holder.claimant, at(clock), "Passed")
            if state.queue:
                head = state.queue[0].claimant
                state, outcome = locks.acquire(state, head, at(clock), LEASE)
                assert isinstance(outcome, Granted)
                served.append(app(head))
            after = places(state)
            assert all(after[a] < place for a, place in before.items() if a in after), (before, after)
        assert len({app(w.claimant) for w in state.queue}) == len(state.queue)  # one place per application
