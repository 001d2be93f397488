"""Test-side fault: the shop changes between two pages of one scan, whatever the paging.

The sandbox's own ``Faults.shuffle_between_pages`` fires on list requests with ``offset > 0``,
i.e. only against offset paging; a client that pages by created date (keyset) never sends one,
so that fault would silently stop testing anything. :class:`BetweenPages` wraps the ShopWired
simulator's ``handle`` and recognises a *scan* — consecutive ``GET /v1/orders`` list requests
(no ``ids=``) with the same ``to`` and ``archived`` — whatever its ``from``/``offset``. Before
answering every request of a scan but the first, it changes the shop the way a live shop does:

* ``inserts`` new orders created inside the scan's window (anywhere in it, so also behind the
  cursor: such a back-dated order is a late arrival the product only owes if a later pass's
  window still covers it — the oracle judges that);
* with probability ``remove_probability``, one order the scan has *already returned* leaves the
  list being paged: deleted, or (regular list only) archived — the shift that makes offset
  paging skip a row.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx

from sync.sandbox.shopwired import ShopWiredSimulator


class BetweenPages:
    """``sim.handle`` replacement; install it before the sandbox starts serving."""

    def __init__(self, sim: ShopWiredSimulator, seed: int, *, inserts: int = 2,
                 remove_probability: float = 0.5) -> None:
        self.sim = sim
        self.inner = sim.handle
        self.rng = random.Random(seed)
        self.inserts = inserts
        self.remove_probability = remove_probability
        self.enabled = False
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._scan: tuple[str | None, str | None] | None = None
        self._scan_from: int | None = None
        self._returned: list[int] = []

    def install(self) -> BetweenPages:
        self.sim.handle = self  # type: ignore[method-assign]
        return self

    def __call__(self, request: httpx.Request) -> httpx.Response:
        p = request.url.params
        is_list = (request.method == "GET" and request.url.path.rstrip("/").endswith("/orders")
                   and not p.get("ids"))
        if not is_list:
            return self.inner(request)
        with self._lock:
            key = (p.get("to"), p.get("archived"))
            if key != self._scan:
                self._scan, self._returned = key, []
                self._scan_from = _int(p.get("from"))
            elif self.enabled:
                self._change(archived=p.get("archived") == "1", end=_int(p.get("to")))
            response = self.inner(request)
            if response.status_code == 200:
                try:
                    body = json.loads(response.read())
                except ValueError:
                    body = []
                self._returned += [o["id"] for o in body
                                   if isinstance(o, dict) and isinstance(o.get("id"), int)]
            return response

    def _change(self, *, archived: bool, end: int | None) -> None:
        start = self._scan_from
        if start is not None and end is not None and end >= start:
            for _ in range(self.inserts):
                created = datetime.fromtimestamp(self.rng.randint(start, end), UTC)
                (oid,) = self.sim.generate_orders(1, created_between=(created, created))
                if archived:
                    self.sim.archive(oid)
                self.counts["inserted"] += 1
        gone = [oid for oid in self._returned if oid in self.sim.orders]
        if gone and self.rng.random() < self.remove_probability:
            victim = self.rng.choice(gone)
            if not archived and self.rng.random() < 0.5:
                self.sim.archive(victim)
                self.counts["archived"] += 1
            else:
                self.sim.delete_order(victim)
                self.counts["deleted"] += 1


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
