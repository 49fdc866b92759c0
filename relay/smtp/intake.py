"""Provider replies: mail to provider.reply_address, read, checked and applied to its message.

The reply address takes mail from any client (the provider's servers are in no trusted
network), so nothing here may trust the mail: DKIM verification (provider.verify_replies)
decides whether a reply may change anything; an untrusted one is kept and logged only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from relay import provider_errors
from relay.config.schema import Config
from relay.delivery import dkim
from relay.metrics import Metrics
from relay.model import ReplyKind, ReplyOutcome
from relay.parsers import reply as reply_parser
from relay.provider_errors import Action, Rule
from relay.spool.interface import Spool

log = logging.getLogger("relay.listener")
KNOWN_CODES = frozenset(provider_errors.ERRORS)


class ReplyIntake:
    def __init__(
        self,
        spool: Spool,
        *,
        metrics: Metrics,
        pause: Callable[[float, str], None],
        on_failed: Callable[[str], None] = lambda relay_id: None,
        dnsfunc: dkim.DnsFunc | None = None,
    ) -> None:
        self.spool = spool
        self.metrics = metrics
        self.pause = pause  # delivery's: a reply that stops the whole queue
        self.on_failed = on_failed  # a message failed for good: tell its sender
        self.dnsfunc = dnsfunc  # DKIM key lookups; None: real DNS (tests pass a fixed key)

    async def take(self, raw: bytes, mail_from: str, cfg: Config) -> None:
        """Record every result in a provider reply mail and apply it to its message."""
        untrusted = ""
        if cfg.provider.verify_replies:
            # DNS lookups and RSA in dkimpy block: never on the event loop.
            verdict = await asyncio.to_thread(
                dkim.verify, raw, domains=cfg.provider.reply_dkim_domains, dnsfunc=self.dnsfunc
            )
            untrusted = "" if verdict.trusted else verdict.reason
            if untrusted:
                log.warning("event=reply_untrusted from=%s reason=%r", mail_from, untrusted)

        def pause_for(rule: Rule) -> float:
            p = cfg.provider
            return p.block_backoff if rule.action is Action.BACKOFF else p.pause_interval

        for result in reply_parser.parse(raw, settings=cfg.parsing):
            applied = await self.spool.record_reply(
                result, mail_from=mail_from, raw=raw, untrusted=untrusted, pause_for=pause_for
            )
            outcome = applied.outcome
            quiet = result.kind is ReplyKind.OK and not outcome.changed_nothing
            log.log(
                logging.INFO if quiet else logging.WARNING,
                "event=provider_reply id=%s kind=%s code=%s outcome=%r line=%r",
                result.relay_id or "-", result.kind.value, "-" if result.code is None else result.code,
                applied.text, result.line,
            )  # fmt: skip
            if outcome.state is not None:
                self.metrics.requests.labels(outcome.state.value).inc()
            if result.code is not None and not untrusted:
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
