"""Run-time switchable fault injection shared by both simulators.

Contract
--------
Each simulator owns one :class:`Faults` instance as its ``faults`` attribute. Tests flip its
fields while traffic is flowing; every request reads the current values (under the
simulator's lock), so a change applies from the next request on. All faults are off by
default. Random decisions use the seeded ``rng`` only, so a run with the same seed and the same
request sequence injects the same faults.

Order in which a simulator applies faults to one request (before authentication and before the
rate limit, so a faulted request never consumes rate-limit budget):

1. ``latency_seconds``: ``clock.sleep(latency_seconds)`` (a FakeClock just advances);
2. ``timeout_rate``: ``handle`` raises :class:`httpx.ReadTimeout` (nothing is processed); over
   real HTTP :mod:`sync.sandbox.server` stalls and then closes the connection;
   ``reset_rate``: ``handle`` raises :class:`httpx.RemoteProtocolError` (nothing is processed);
   over real HTTP the server closes the connection without answering (a reset);
3. ``throttle_storm_until``: while ``clock.monotonic() < throttle_storm_until`` every request
   is answered 429 with ``Retry-After`` = whole seconds until the storm ends (at least 1);
4. ``error_rate``: the request is answered with one of ``error_statuses``; 500 carries the
   API's JSON error body, 502/503 carry an HTML page the way a load balancer would, so clients
   must not assume error bodies are JSON.

After processing:

* ``drop_after_write_rate`` (WiredPlus only): a *successful* write is stored, then the
  response is lost: ``handle`` raises :class:`httpx.RemoteProtocolError`; the HTTP server closes
  the connection without answering.
* ``shuffle_between_pages`` (ShopWired only): on every list request with ``offset > 0`` (that
  is, between two pages of one paging run) the shop inserts ``shuffle_inserts`` new orders
  with ``created`` inside the requested ``from``/``to`` window and, with probability
  ``shuffle_delete_probability``, deletes one order of that window already paged over. This
  emulates a live shop changing under offset paging (rows repeat or are skipped).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Faults:
    """Mutable fault switches; see the module docstring for their exact effect."""

    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500, 502, 503)
    throttle_storm_until: float = 0.0
    latency_seconds: float = 0.0
    timeout_rate: float = 0.0
    reset_rate: float = 0.0
    drop_after_write_rate: float = 0.0
    shuffle_between_pages: bool = False
    shuffle_inserts: int = 2
    shuffle_delete_probability: float = 0.5
    seed: int = 0
    rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def roll(self, rate: float) -> bool:
        """True with probability ``rate`` (never when ``rate <= 0``; always when ``>= 1``)."""
        if rate <= 0:
            return False
        if rate >= 1:
            return True
        return self.rng.random() < rate

    def clear(self) -> None:
        """Switch every fault off (the rng keeps its state)."""
        self.error_rate = 0.0
        self.throttle_storm_until = 0.0
        self.latency_seconds = 0.0
        self.timeout_rate = 0.0
        self.reset_rate = 0.0
        self.drop_after_write_rate = 0.0
        self.shuffle_between_pages = False

    @property
    def any_active(self) -> bool:
        """Whether any fault could fire (a storm counts as active until it has ended)."""
        return bool(
            self.error_rate > 0
            or self.throttle_storm_until > 0
            or self.latency_seconds > 0
            or self.timeout_rate > 0
            or self.reset_rate > 0
            or self.drop_after_write_rate > 0
            or self.shuffle_between_pages
        )
