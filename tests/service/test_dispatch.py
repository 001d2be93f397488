"""The broker dispatcher: fresh changes always go out, due work is re-sent when its stamp
changes or after the cooldown, memory stays bounded."""

from __future__ import annotations

import time

import pytest

from sync.clock import FakeClock
from sync.service.dispatch import QueueDispatcher


def test_sweep_resends_new_work_at_once_and_the_same_work_after_the_cooldown() -> None:
    sent: list[list[str]] = []
    clock = FakeClock()
    q = QueueDispatcher(send=lambda s, r: None, send_many=lambda s, refs, p: sent.append(refs),
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
    q = QueueDispatcher(send=lambda s, r: None, send_many=lambda s, refs, p: None, clock=clock,
                        cooldown=120)
    for i in range(100):
        q.dispatch("s", [f"{i}-{j}" for j in range(1000)])
        clock.advance(10)
    assert len(q._recent) <= 20_000 + 1000 * 13
    assert q.sent == 100_000


def test_a_backfill_sent_within_one_cooldown_costs_each_dispatch_little() -> None:
    """100,000 orders of one store sent within the cooldown, a page at a time: none is old
    enough to forget, and the memory of sends must not be copied over on every dispatch
    (it was, past 20,000: a backfilling store's loop then spent most of its time on it)."""
    clock = FakeClock()
    q = QueueDispatcher(send=lambda s, r: None, send_many=lambda s, refs, p: None, clock=clock,
                        cooldown=120)
    started = time.process_time()
    for i in range(2_000):
        q.dispatch("big", [f"{i}-{j}" for j in range(50)])
        clock.advance(0.05)  # 100 s in all: inside one cooldown
    took = time.process_time() - started
    assert q.sent == 100_000
    assert took < 5.0  # ~0.3 s; copying the map on each of the last 1,600 dispatches: minutes


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


def test_a_store_with_nothing_queued_goes_ahead_of_the_backlogs() -> None:
    """Priorities follow each store's own queue: its first batch goes first (0), a
    backfill's later batches last (9); another store's first batch is 0 again."""
    clock = FakeClock()
    q = _Queue()
    sent: list[tuple[str, int]] = []
    d = QueueDispatcher(send=q.send, clock=clock, batch=50, max_queued=1000,
                        still_queued=q.still_queued,
                        send_many=lambda s, refs, p: sent.append((s, p)))
    d.dispatch("big", [f"b{i}" for i in range(1000)])
    assert [p for _, p in sent] == [0] + [3] * 3 + [6] * 6 + [9] * 10
    sent.clear()
    d.dispatch("added", [f"a{i}" for i in range(120)])
    assert sent == [("added", 0), ("added", 3), ("added", 3)]


@pytest.mark.redis
def test_the_broker_hands_out_a_first_batch_before_a_backlog_queued_earlier() -> None:
    """The real Redis transport with the workers' settings: lower priority numbers are
    taken first whatever was queued before them."""
    import redis

    from workers.app import make_app

    broker = "redis://127.0.0.1:6379/9"
    try:
        redis.Redis.from_url(broker).flushdb()
    except redis.RedisError:
        pytest.skip("Redis is not running")
    app = make_app(broker)
    try:
        for i in range(5):
            app.send_task("ordersync.push_orders", args=["big", [f"b{i}"]], priority=9)
        app.send_task("ordersync.push_orders", args=["added", ["a0"]], priority=0)
        app.send_task("ordersync.push_orders", args=["big", ["b5"]], priority=6)
        order = []
        with app.connection_for_read() as conn:
            channel = conn.default_channel
            for _ in range(7):
                message = channel.basic_get("ordersync")
                assert message is not None
                order.append(message.decode()[0][1][0])
        assert order == ["a0", "b5", "b0", "b1", "b2", "b3", "b4"]
    finally:
        redis.Redis.from_url(broker).flushdb()
        app.close()
