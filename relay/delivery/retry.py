"""When to try a message again: exponential backoff with jitter, up to a maximum age."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    min_backoff: float = 30.0
    max_backoff: float = 3600.0
    max_age: float = 86400.0  # an SMS alert older than a day is noise
    jitter: float = 0.2  # +-20%: retries of messages deferred together spread out

    def delay(self, attempts: int) -> float:
        base = min(self.max_backoff, self.min_backoff * 2 ** max(0, attempts - 1))
        return float(base * random.uniform(1 - self.jitter, 1 + self.jitter))

    def upstream_pause(self, current: float) -> float:
        """The next pause of all workers while the upstream stays unusable: it grows."""
        return min(self.max_backoff, max(self.min_backoff / 6, current * 2))
