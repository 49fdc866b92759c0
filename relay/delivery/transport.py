"""The one interface every way out implements: hand one provider mail over, say what happened.

Today: SMTP to the provider's gateway (smtp.py) and the dry-run outbox (outbox.py). Another
transport (the provider's HTTP API) is one more module with a class that satisfies `Transport`.
A failure is a relay.errors.DeliveryError: `temporary` says whether to retry, `connection`
whether the upstream (not the message) is at fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One provider mail as delivery hands it to a transport."""

    relay_id: str
    mail_from: str  # envelope sender upstream (the reply address)
    rcpt_to: str  # envelope recipient upstream
    message: bytes = field(repr=False)  # RFC 5322, CRLF; holds the password unless masked


@dataclass(frozen=True, slots=True)
class Accepted:
    """The upstream took the mail."""

    reply: str  # its words, for the log ("2.0.0 Ok: queued as ...")
    dry_run: bool = False  # nothing went to the provider (the outbox): no reply will ever come


class Transport(Protocol):
    # False for the outbox: it gets the mail as spooled, password masked, so that a dry run
    # leaves no secret on disk.
    needs_credentials: bool

    async def send(self, mail: Outgoing) -> Accepted:
        """Deliver one mail, or raise DeliveryError."""

    async def close(self) -> None: ...
