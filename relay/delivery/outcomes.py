"""What follows from a provider answer once the spool has applied it: the log line, the
metrics, the sender's notice and the queue-wide pause. One place for both channels the
provider answers on: reply mail (relay/smtp/intake.py) and the HTTP API (workers.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from relay import provider_errors
from relay.metrics import Metrics
from relay.model import ProviderReply, ReplyKind, ReplyOutcome
from relay.spool.interface import Applied

log = logging.getLogger("relay.delivery")
KNOWN_CODES = frozenset(provider_errors.ERRORS)


class Effects:
    def __init__(
        self,
        metrics: Metrics,
        *,
        pause: Callable[[float, str], None],
        on_failed: Callable[[str], None] = lambda relay_id: None,
    ) -> None:
        self.metrics = metrics
        self.pause = pause  # delivery's: an answer that stops the whole queue
        self.on_failed = on_failed  # a message failed for good: tell its sender

    def __call__(self, result: ProviderReply, applied: Applied, *, source: str, trusted: bool = True) -> None:
        outcome = applied.outcome
        quiet = result.kind is ReplyKind.OK and not outcome.changed_nothing
        log.log(
            logging.INFO if quiet else logging.WARNING,
            "event=provider_reply id=%s via=%s kind=%s code=%s outcome=%r line=%r",
            result.relay_id or "-", source, result.kind.value, "-" if result.code is None else result.code,
            applied.text, result.line,
        )  # fmt: skip
        if outcome.state is not None:
            self.metrics.requests.labels(outcome.state.value).inc()
        if result.code is not None and trusted:
            # A fixed set of labels: the documented codes, else "other" (a reply mail comes
            # from anyone and could otherwise mint one series per line it holds).
            label = str(result.code) if result.code in KNOWN_CODES else "other"
            self.metrics.provider_errors.labels(label).inc()
        if outcome is ReplyOutcome.CONFIRMED and applied.since_sent is not None:
            self.metrics.provider_to_confirmation.observe(applied.since_sent)
        if outcome in (ReplyOutcome.FAILED, ReplyOutcome.DUPLICATE):
            self.on_failed(result.relay_id)
        if applied.pause is not None:
            self.pause(applied.paused_until, applied.pause_reason)
