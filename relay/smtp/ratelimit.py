"""A token bucket per client address, for the reply address (the one door open to anyone).

In memory: a restart forgets, which costs an attacker nothing it did not have; what matters is
that one address cannot make the relay parse and store reply mail without end. Bounded: at most
MAX_ADDRESSES buckets; when full, the buckets that have refilled (idle clients) are dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable

MAX_ADDRESSES = 10_000


class RateLimiter:
    def __init__(self, per_minute: Callable[[], int], clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute  # the setting in force (SIGHUP may change it); 0: no limit
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, when)

    def allow(self, address: str) -> bool:
        """Take one token for `address`; False when it has none left."""
        rate = self.per_minute()
        if rate <= 0:
            return True
        now = self.clock()
        tokens, when = self._buckets.get(address, (float(rate), now))
        tokens = min(float(rate), tokens + (now - when) * rate / 60.0)
        if tokens < 1.0:
            self._buckets[address] = (tokens, now)
            return False
        if address not in self._buckets and len(self._buckets) >= MAX_ADDRESSES:
            self._forget_idle(rate, now)
        self._buckets[address] = (tokens - 1.0, now)
        return True

    def _forget_idle(self, rate: int, now: float) -> None:
        full = [a for a, (t, w) in self._buckets.items() if t + (now - w) * rate / 60.0 >= rate]
        for a in full or list(self._buckets)[: len(self._buckets) // 2]:
            del self._buckets[a]
