"""The order lifecycle state machine (sync.domain.lifecycle), directly and by property tests
over random outcome sequences: every order ends delivered or dead-lettered with a reason, a
throttle or an outage never spends an attempt, no event is ever sent twice."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.domain.lifecycle import (
    Deferred,
    Delivered,
    Failed,
    OrderSnapshot,
    PushOutcome,
    Rejected,
    RetryPolicy,
    after_event,
    after_push,
)

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy()  # the product defaults: 8 attempts, 5 s base

outcomes = st.one_of(
    st.builds(Delivered, version_now=st.sampled_from([1, 2]), events_pending=st.booleans()),
    st.builds(Rejected, reason=st.text(min_size=1, max_size=20)),
    st.builds(Deferred, retry_after=st.floats(0, 3600), reason=st.just("429")),
    st.builds(Failed, reason=st.text(min_size=1, max_size=20),
              retry_after=st.none() | st.floats(0, 600)),
)


def _run(sequence: list[PushOutcome], seed: int) -> tuple[str, int, str | None, datetime]:
    """Apply the outcomes while the order is pending; (state, attempts, error, now)."""
    rng = random.Random(seed)
    row = OrderSnapshot("pending", 0, 1)
    now = NOW
    error: str | None = None
    for outcome in sequence:
        t = after_push(row, outcome, now=now, policy=POLICY, rng=rng)
        assert t.attempts >= row.attempts
        assert t.attempts <= POLICY.max_attempts
        if t.next_attempt_at is not None:
            assert t.next_attempt_at >= now
            assert t.next_attempt_at - now <= timedelta(hours=15)
            now = t.next_attempt_at
        row, error = OrderSnapshot(t.state, t.attempts, row.version), t.last_error
        if t.state != "pending":
            break
    return row.state, row.attempts, error, now


@settings(max_examples=300, deadline=None)
@given(st.lists(outcomes, max_size=30), st.integers(0, 2**16))
def test_every_order_ends_delivered_or_dead_lettered_with_a_reason(
    prefix: list[PushOutcome], seed: int
) -> None:
    # Whatever happened so far, failing for ever ends in the dead letters within the attempts
    # (about a day), and a delivery of the unchanged order ends synced.
    state, attempts, error, _ = _run(prefix, seed)
    if state == "pending":
        state, attempts, error, _ = _run([*prefix, *[Failed("down")] * POLICY.max_attempts],
                                         seed)
        assert state == "dead" and error and error.startswith("gave up after")
        assert attempts == POLICY.max_attempts
        synced, *_ = _run([*prefix, Delivered(1)], seed)
        assert synced == "synced"
    if state == "dead":
        assert error


@settings(max_examples=300, deadline=None)
@given(st.lists(st.builds(Deferred, retry_after=st.floats(0, 3600), reason=st.just("x")),
                max_size=50), st.integers(0, 2**16))
def test_throttles_and_outages_never_spend_an_attempt(
    deferrals: list[PushOutcome], seed: int
) -> None:
    state, attempts, _, _ = _run(deferrals, seed)
    assert state == "pending" and attempts == 0


def test_delivery_while_the_order_changed_stays_pending() -> None:
    t = after_push(OrderSnapshot("pending", 2, 1), Delivered(2), now=NOW, policy=POLICY,
                   rng=random.Random(1))
    assert t.state == "pending" and t.next_attempt_at is None and t.attempts == 2
    t = after_push(OrderSnapshot("pending", 2, 1), Delivered(1, events_pending=True),
                   now=NOW, policy=POLICY, rng=random.Random(1))
    assert t.state == "pending"


def test_only_a_pending_order_is_pushed() -> None:
    with pytest.raises(ValueError):
        after_push(OrderSnapshot("synced", 0, 1), Delivered(1), now=NOW, policy=POLICY,
                   rng=random.Random(1))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.booleans()), max_size=60))
def test_no_event_is_ever_sent_twice(tries: list[tuple[int, bool]]) -> None:
    # Five events of one order; random pushes try each (a pusher only sends pending ones;
    # a second pusher racing it would find it sent and be refused).
    states = ["pending"] * 5
    attempts = [0] * 5
    sent = [0] * 5
    for index, accepted in tries:
        if states[index] != "pending":
            with pytest.raises(ValueError):
                after_event(states[index], attempts[index], sent=accepted)  # type: ignore[arg-type]
            continue
        t = after_event("pending", attempts[index], sent=accepted, reason="bad")
        states[index], attempts[index] = t.state, t.attempts
        sent[index] += t.state == "sent"
        if t.state == "dead":
            assert t.last_error
    assert all(n <= 1 for n in sent)
