"""The one interface every way out implements: hand one provider mail over, say what happened.

SMTP to the provider's gateway (smtp.py), the provider's HTTP API (http.py), its SMPP server
(smpp.py), one of those with another as its failover (failover.py), and the dry-run outbox
(outbox.py). A failure is a
relay.errors.DeliveryError: `temporary` says whether to retry, `connection` whether the
upstream (not the message) is at fault, `uncertain` whether it may have gone through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from relay.model import ProviderReply, TransportKind


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One provider mail as delivery hands it to a transport."""

    relay_id: str
    mail_from: str  # envelope sender upstream (the reply address)
    rcpt_to: str  # envelope recipient upstream
    message: bytes = field(repr=False)  # RFC 5322, CRLF; holds the password unless masked
    uncertain: bool = False  # an earlier attempt may have reached the provider: ask before resending


@dataclass(frozen=True, slots=True)
class Accepted:
    """The upstream took the mail."""

    reply: str  # its words, for the log ("2.0.0 Ok: queued as ...")
    dry_run: bool = False  # nothing went to the provider (the outbox): no reply will ever come
    # The provider's own answer when the transport gets one at once (the HTTP API): applied like
    # a reply mail (relay/spool/replies.py), kept with `raw` as its words.
    answer: ProviderReply | None = None
    raw: bytes = field(default=b"", repr=False)
    via: TransportKind = TransportKind.SMTP
    # SMPP: each part's (phone, provider message id), which its delivery receipt names, and how
    # long after the send status.php is first asked about a phone without one (None: the
    # default for polled transports; inf: never, the receipts alone settle it).
    parts: tuple[tuple[str, str], ...] = ()
    poll_after: float | None = None


class Transport(Protocol):
    # False for the outbox: it gets the mail as spooled, password masked, so that a dry run
    # leaves no secret on disk.
    needs_credentials: bool
    # False for the HTTP API: no mail to DKIM-sign or to give a tagged return path.
    carries_mail: bool

    async def send(self, mail: Outgoing) -> Accepted:
        """Deliver one mail, or raise DeliveryError."""

    async def close(self) -> None: ...
