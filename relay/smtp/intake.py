"""Provider replies: mail to provider.reply_address, read, checked and applied to its message.

The reply address takes mail from any client (the provider's servers are in no trusted
network), so nothing here may trust the mail: DKIM verification (provider.verify_replies)
decides whether a reply may change anything; an untrusted one is kept and logged only.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable, Sequence

from relay import ids
from relay.config.schema import Config
from relay.delivery import dkim
from relay.delivery.outcomes import Effects
from relay.errors import ContentError, TemporaryError, TooBigError
from relay.metrics import Metrics
from relay.model import ProviderReply, ReplyKind
from relay.parsers import mimescan
from relay.parsers import reply as reply_parser
from relay.provider_errors import account_cause, pause_length
from relay.spool.interface import Replies

log = logging.getLogger("relay.listener")
# The reply address takes mail from anyone: the provider's replies are a few lines, so what it
# takes is bounded before anything is decoded, and what it keeps is bounded too.
MAX_REPLY_BYTES = 32 * 1024
MAX_HEADER_BYTES = 16 * 1024
MAX_ENCODED_WORDS = 50  # RFC 2047 words in the headers (the stdlib's decoding is quadratic)
MAX_RESULTS = 1000  # result lines applied from one mail
KEEP_RAW_BYTES = 4096  # of each reply, stored with it
PARSE_BUDGET = 5.0  # seconds: parsing runs in a thread, never on the event loop


REPLY_MIME_DEPTH, REPLY_MIME_PARTS = 4, 20


def check_reply_size(raw: bytes, size: int | None = None) -> None:
    """Refuse what no provider reply looks like, before any decoding. `size`: the mail's size
    when the listener did not keep it (over MAX_REPLY_BYTES, only counted)."""
    size = len(raw) if size is None else size
    if size > MAX_REPLY_BYTES:
        raise TooBigError(
            f"provider replies are small: this mail is {size} bytes (at most {MAX_REPLY_BYTES})"
        )
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    if len(head) > MAX_HEADER_BYTES:
        raise TooBigError(f"headers of {len(head)} bytes (at most {MAX_HEADER_BYTES} at the reply address)")
    if head.count(b"=?") > MAX_ENCODED_WORDS:
        raise ContentError(
            f"more than {MAX_ENCODED_WORDS} encoded words in the headers: not a provider reply"
        )
    # A provider reply is one text part, perhaps with an HTML twin.
    mimescan.check(raw, max_depth=REPLY_MIME_DEPTH, max_parts=REPLY_MIME_PARTS)


class ReplyIntake:
    def __init__(
        self,
        spool: Replies,
        *,
        metrics: Metrics,
        pause: Callable[[float, str], None],
        on_failed: Callable[[str], None] = lambda relay_id: None,
        dnsfunc: dkim.DnsFunc | None = None,
        reply_key: Callable[[], bytes] = lambda: b"",
    ) -> None:
        self.spool = spool
        self.effects = Effects(metrics, pause=pause, on_failed=on_failed)
        self.dnsfunc = dnsfunc  # DKIM key lookups; None: real DNS (tests pass a fixed key)
        self.reply_key = reply_key  # the reply tags' key (the spool's)

    def _tag_verdict(self, result: ProviderReply, tags: Sequence[str]) -> str:
        """ "" when the reply came to the address tagged for the message it names, else why not."""
        if result.kind is ReplyKind.UNKNOWN:
            return ""  # unreadable: kept as such, it changes nothing anyway
        if not tags:
            return "no reply tag: mail to the untagged reply address"
        if not result.relay_id:
            return "no message id to check the reply tag against"
        want = ids.reply_tag(self.reply_key(), result.relay_id)
        if any(hmac.compare_digest(want, t) for t in tags):
            return ""
        return "the reply tag is not the one of that message"

    async def take(self, raw: bytes, mail_from: str, cfg: Config, tags: Sequence[str] = ()) -> None:
        """Record every result in a provider reply mail and apply it to its message. `tags`: the
        reply tags of the addresses it came to."""
        untrusted = ""
        if cfg.provider.verify_replies:
            # DNS lookups and RSA in dkimpy block: never on the event loop.
            verdict = await asyncio.to_thread(
                dkim.verify, raw, domains=cfg.provider.reply_dkim_domains, dnsfunc=self.dnsfunc
            )
            untrusted = "" if verdict.trusted else verdict.reason
            if untrusted:
                log.warning("event=reply_untrusted from=%s reason=%r", mail_from, untrusted)

        try:
            results = await asyncio.wait_for(
                asyncio.to_thread(reply_parser.parse, raw, settings=cfg.parsing), PARSE_BUDGET
            )
        except TimeoutError:
            raise TemporaryError("reply not read in time; try again later") from None
        if len(results) > MAX_RESULTS:
            log.warning(
                "event=reply_truncated from=%s results=%d kept=%d", mail_from, len(results), MAX_RESULTS
            )
        kept = raw[:KEEP_RAW_BYTES]
        for result in results[:MAX_RESULTS]:
            doubt = untrusted or (self._tag_verdict(result, tags) if cfg.provider.reply_tags else "")
            if doubt and not untrusted:
                log.warning(
                    "event=reply_untrusted from=%s id=%s reason=%r", mail_from, result.relay_id or "-", doubt
                )
            applied = await self.spool.record_reply(
                result, mail_from=mail_from, raw=kept, untrusted=doubt, pause_for=pause_length(cfg.provider),
                cause=lambda: account_cause(cfg.provider, cfg.provider.password.value, self.spool.reply_key),
            )  # fmt: skip
            self.effects(result, applied, source=f"mail from {mail_from}", trusted=not doubt)
