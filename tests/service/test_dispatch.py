"""The broker dispatcher: fresh changes always go out, due work is re-sent when its stamp
changes or after the cooldown, memory stays bounded."""

from __future__ import annotations

from sync.clock import FakeClock
from sync.service.dispatch import QueueDispatcher


def test_sweep_resends_new_work_at_once_and_the_same_work_after_the_cooldown() -> None:
    sent: list[list[str]] = []
    clock = FakeClock()
    q = QueueDispatcher(send=lambda s, r: None, send_many=lambda s, refs: sent.append(refs),
                        clock=clock, cooldown=120, batch=2)
    q.dispatch("s", ["a", "b", "c"])
    assert sent == [["a", "b"], ["c"]]  # one message per batch
    sent.clear()
    q.sweep("s", [("a", (1, 0)), ("b", (1, 0))])
    assert sent == [["a", "b"]]  # first sweep records the stamps
    sent.clear()
    q.sweep("s", [("a", (1, 0)), ("b", (1, 1))])  # b failed once: its retry is new work
    assert sent == [["b"]]
    sent.clear()
    clock.advance(121)
    q.sweep("s", [("a", (1, 0))])  # same work, but its message may be lost: re-send
    assert sent == [["a"]]


def test_memory_is_bounded_over_a_long_backfill() -> None:
    clock = FakeClock()
    q = QueueDispatcher(send=lambda s, r: None, send_many=lambda s, refs: None, clock=clock,
                        cooldown=120)
    for i in range(100):
        q.dispatch("s", [f"{i}-{j}" for j in range(1000)])
        clock.advance(10)
    assert len(q._recent) <= 20_000 + 1000 * 13
    assert q.sent == 100_000
