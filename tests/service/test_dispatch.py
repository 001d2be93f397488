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


class _Queue:
    """What the workers have not taken yet, per store (the ledger's view)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.taken: set[tuple[str, str]] = set()

    def send(self, store: str, ref: str) -> None:
        self.sent.append((store, ref))

    def still_queued(self, store: str, refs: list[str]) -> set[str]:
        return {r for r in refs if (store, r) not in self.taken}

    def take(self, store: str, n: int) -> None:
        waiting = [k for k in self.sent if k[0] == store and k not in self.taken]
        self.taken.update(waiting[:n])


def test_a_store_backfilling_holds_at_most_its_share_of_the_queue() -> None:
    clock = FakeClock()
    q = _Queue()
    d = QueueDispatcher(send=q.send, clock=clock, max_queued=100,
                        still_queued=q.still_queued)
    d.dispatch("big", [f"b{i}" for i in range(1000)])
    assert len(q.sent) == 100 and d.waiting("big") == 900  # the rest wait in the ledger
    d.dispatch("small", ["s1", "s2"])  # another store's change is not behind the backlog
    assert q.sent[-2:] == [("small", "s1"), ("small", "s2")]
    d.dispatch("big", ["b1000"])
    assert len(q.sent) == 102  # still at its share: nothing more of big
    q.take("big", 60)
    clock.advance(0.5)
    d.dispatch("big", [])
    assert len([k for k in q.sent if k[0] == "big"]) == 160  # as the workers take them
    assert [r for s, r in q.sent if s == "big"][100:160] == [f"b{i}" for i in range(100, 160)]
    # Nothing is lost: every order is sent once, in order, as the workers keep up.
    for _ in range(40):
        q.take("big", 100)
        clock.advance(0.5)
        d.sweep("big", [])
    big = [r for s, r in q.sent if s == "big"]
    assert big == [f"b{i}" for i in range(1001)]


def test_a_lost_message_stops_counting_against_the_share_after_the_cooldown() -> None:
    clock = FakeClock()
    q = _Queue()
    d = QueueDispatcher(send=q.send, clock=clock, max_queued=50, still_queued=q.still_queued,
                        cooldown=120.0)
    d.dispatch("a", [f"r{i}" for i in range(80)])
    assert len(q.sent) == 50
    clock.advance(121)  # the broker was flushed: those 50 are never taken
    d.sweep("a", [(f"r{i}", (1, 0, "")) for i in range(80)])
    assert len(q.sent) == 100  # 30 waiting + 20 of the lost ones re-sent


def test_only_the_oldest_sends_are_looked_up_and_a_backlog_is_reported() -> None:
    clock = FakeClock()
    q = _Queue()
    looked: list[int] = []

    def still_queued(store: str, refs: list[str]) -> set[str]:
        looked.append(len(refs))
        return q.still_queued(store, refs)

    d = QueueDispatcher(send=q.send, clock=clock, max_queued=2000, still_queued=still_queued)
    assert not d.backlogged("big")
    d.dispatch("big", [f"b{i}" for i in range(3000)])
    assert d.backlogged("big") and len(q.sent) == 2000
    q.take("big", 2000)
    clock.advance(0.5)
    d.dispatch("big", [])
    assert looked == [500] and len(q.sent) == 2500  # bounded query, the oldest freed first
