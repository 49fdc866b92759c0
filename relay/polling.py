"""When to ask the provider's status.php about a message, and about which phones: the policy of
delivery tracking, pure (relay/spool/tracking.py keeps the state, relay/delivery/tracker.py asks)."""

from __future__ import annotations

from collections.abc import Sequence

from relay import fields

FIRST_POLL = 20.0  # seconds after the provider took it: -1/0 before that, and -3 often
MAX_INTERVAL = 900.0
MAX_PHONES = 5  # status.php answers five requests per message per minute


def interval(polls: int) -> float:
    """Seconds until the next poll of a message asked `polls` times: a minute, then doubling to
    15 minutes (most SMS are delivered within seconds; the rest can take the whole lifetime)."""
    return float(min(MAX_INTERVAL, 60.0 * 2 ** max(0, polls - 2)))


def trackable_phones(phones: Sequence[str]) -> list[str]:
    """Group recipients (G<n>) cannot be asked for by phone."""
    return [p for p in phones if not fields.GROUP.fullmatch(p)]
