"""The provider's limits per phone, and quiet hours: when a phone may get its next SMS (pure).

- the provider refuses an identical request repeated within a minute (error 9);
- it blocks a subscriber after 50 messages sent with gaps under 2 minutes (the SMTP page; the
  HTTP and SMPP pages say 60 and 30 seconds, the strictest wins).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from relay.config.schema import StormSettings
from relay.model import Entry

REPEAT_WINDOW = 60.0  # provider: an identical request within a minute is refused (error 9)
FLOOD_GAP = 120.0  # provider: SMS to one subscriber with gaps shorter than this count as a run...
FLOOD_LIMIT = 50  # ...and a run longer than this blocks the subscriber
SAFETY = 5.0  # seconds added to the provider's windows: our clock and theirs differ


@dataclass(frozen=True, slots=True)
class Send:
    """An SMS that went (or is queued) to one phone."""

    at: float
    digest: str  # text_digest() of what it said


def next_allowed(history: Sequence[Send], gap: float, burst: int) -> float:
    """When a phone with this send history (oldest first) may get its next SMS."""
    if not history:
        return 0.0
    last = history[-1].at
    run = 1
    for earlier, later in zip(reversed(history[:-1]), reversed(history[1:]), strict=True):
        if later.at - earlier.at >= FLOOD_GAP:
            break
        run += 1
    allowed = last + gap
    if run >= min(burst, FLOOD_LIMIT - 1):
        allowed = max(allowed, last + FLOOD_GAP + SAFETY)
    return allowed


def quiet_until(now: float, settings: StormSettings) -> float | None:
    """The end of the quiet hours `now` falls in, or None."""
    if not settings.quiet_hours:
        return None
    start, end = settings.quiet_hours
    tz = ZoneInfo(settings.quiet_tz) if settings.quiet_tz else None
    local = datetime.fromtimestamp(now, tz) if tz else datetime.fromtimestamp(now).astimezone()
    hour = local.hour
    inside = start <= hour < end if start < end else (hour >= start or hour < end)
    if not inside:
        return None
    end_at = local.replace(hour=end, minute=0, second=0, microsecond=0)
    if end_at <= local:
        end_at += timedelta(days=1)
    return end_at.timestamp()


def text_digest(text: str) -> str:
    """What "the same text" means to the provider's minute rule (white space folded)."""
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Protection:
    """What the provider's limits make of one request to some phones (any route, storm or not)."""

    repeat: bool = False  # every phone got this very text within the minute: count it, send nothing
    not_before: float = 0.0  # hold it until then (0: no need)
    reason: str = ""


def protect(entries: Sequence[Entry], history: Mapping[str, Sequence[Send]], now: float) -> Protection:
    """Never the same text to a phone again within the provider's minute (+ margin): a repeat;
    never the 50th SMS of a short-gap run to one phone: held until the run is broken."""
    since = now - REPEAT_WINDOW - SAFETY
    pairs = [(p, text_digest(e.text)) for e in entries for p in e.phones]
    if not pairs:
        return Protection()
    same = [[x.at for x in history.get(p, ()) if x.digest == d and x.at > since] for p, d in pairs]
    if all(same):
        return Protection(
            repeat=True, reason="the same text went to these phones within the provider's minute"
        )
    not_before, reason = 0.0, ""
    for (phone, _), earlier in zip(pairs, same, strict=True):
        if earlier and max(earlier) + REPEAT_WINDOW + SAFETY > not_before:
            not_before, reason = (
                max(earlier) + REPEAT_WINDOW + SAFETY,
                "the same text went to a phone within a minute",
            )
        allowed = next_allowed(history.get(phone, ()), 0.0, FLOOD_LIMIT - 1)
        if allowed > now and allowed > not_before:
            not_before, reason = (
                allowed,
                f"{FLOOD_LIMIT - 1} SMS to a phone with short gaps: the provider would block it",
            )
    return Protection(
        not_before=not_before if not_before > now else 0.0, reason=reason if not_before > now else ""
    )
