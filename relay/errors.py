"""The relay's exception tree; the listener maps it to SMTP replies in one place.

    RelayError                      carries .reply (code, enhanced code, text)
    ├── TemporaryError              451 4.3.0: the client keeps the mail and retries
    │   └── SpoolError              the spool could not commit (disk full, locked, corrupt)
    ├── PermanentError              5xx: retrying the same mail cannot help
    │   ├── NoRouteError            550 5.1.1 no route for <addr>
    │   ├── AddressError            553 5.1.3 a phone or address that fails validation
    │   ├── TooBigError             552 5.3.4 inbound mail or provider mail over its limit
    │   ├── ContentError            554 5.6.0 nothing usable to send, bad command line, bad field
    │   └── LoopError               554 5.4.6 too many Received: headers
    └── DeliveryError               handing a mail to the provider failed (delivery/; its reply
        │                           is the provider's, never sent to our client: the message is
        │                           already spooled, and the retry policy reads .temporary)
        ├── UpstreamRefused         5xx to MAIL/RCPT/DATA: the message fails, no retry
        ├── UpstreamDeferred        4xx: retried with backoff
        └── UpstreamUnavailable     also a ConnectionError: the provider is unusable now, not the
            └── UpstreamTimeout     message (pause, retry); the timeout is also a TimeoutError

    ConfigError                     not an SMTP error: `check` prints it, `serve` exits 78

Like aiosmtplib's, the delivery errors inherit the builtins they stand for, so `except
TimeoutError` still catches a timeout. Exit codes of the command line are `Exit`, below.

Exception text never reaches the client: the reply text is written for the client on purpose,
and anything unexpected becomes S451_INTERNAL with the traceback in the log only.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass

from relay import replies
from relay.replies import Reply


class RelayError(Exception):
    """A failure with a specific SMTP reply that a human can act on."""

    default_reply: Reply = replies.S451_INTERNAL

    def __init__(self, reason: str, *, reply: Reply | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = (reply or self.default_reply).with_text(reason)


class TemporaryError(RelayError):
    default_reply = replies.S451_INTERNAL


class SpoolError(TemporaryError):
    default_reply = replies.S451_SPOOL


class PermanentError(RelayError):
    default_reply = replies.S554_NO_CONTENT


class NoRouteError(PermanentError):
    default_reply = replies.S550_NO_ROUTE

    def __init__(self, address: str) -> None:
        super().__init__(f"no route for <{address}>")
        self.address = address


class AddressError(PermanentError):
    default_reply = replies.S553_BAD_ADDRESS


class TooBigError(PermanentError):
    default_reply = replies.S552_TOO_BIG


class ContentError(PermanentError):
    default_reply = replies.S554_NO_CONTENT


class LoopError(PermanentError):
    default_reply = replies.S554_LOOP


class DeliveryError(RelayError):
    """One attempt to hand a mail to the provider failed. `temporary`: worth retrying;
    `connection`: the upstream is unusable now (pause every worker, don't blame the message)."""

    def __init__(
        self,
        text: str,
        *,
        temporary: bool,
        code: int | None = None,
        connection: bool = False,
        uncertain: bool = False,
        retry_after: float = 0.0,
    ) -> None:
        super().__init__(text)
        self.text = text
        self.temporary = temporary
        self.code = code
        self.connection = connection
        # The request may have reached the provider (a timeout after it was written, a 5xx):
        # before it is sent again, ask the provider whether it has it.
        self.uncertain = uncertain
        self.retry_after = retry_after  # not before this many seconds (the provider's minute)

    @classmethod
    def from_reply(cls, text: str, code: int) -> DeliveryError:
        """The error for an upstream SMTP reply code; 421 closes the session: the upstream's
        trouble, not this message's."""
        if code == 421:
            return UpstreamUnavailable(text, code=code)
        if code >= 500:
            return UpstreamRefused(text, code=code)
        return UpstreamDeferred(text, code=code)


class UpstreamRefused(DeliveryError):
    def __init__(self, text: str, *, code: int | None = None) -> None:
        super().__init__(text, temporary=False, code=code)


class UpstreamDeferred(DeliveryError):
    def __init__(
        self, text: str, *, code: int | None = None, uncertain: bool = False, retry_after: float = 0.0
    ) -> None:
        super().__init__(text, temporary=True, code=code, uncertain=uncertain, retry_after=retry_after)


class SessionLost(UpstreamDeferred):
    """An established session to the upstream broke (dropped, 421, timed out): this attempt
    failed, but the upstream may well be up, so the pool does not pause for it; a new
    connection decides that (its failure is UpstreamUnavailable)."""


class UpstreamUnavailable(DeliveryError, ConnectionError):
    def __init__(self, text: str, *, code: int | None = None, uncertain: bool = False) -> None:
        super().__init__(text, temporary=True, code=code, connection=True, uncertain=uncertain)


class UpstreamTimeout(UpstreamUnavailable, TimeoutError):
    pass


class Exit(enum.IntEnum):
    """The command line's exit codes, sysexits(3) where one fits."""

    OK = os.EX_OK
    FAILURE = 1  # the thing asked for does not exist or did not work (no such message, keygen failed)
    USAGE = 2  # argparse's own code for bad arguments, kept for ours
    DATAERR = os.EX_DATAERR  # render: the mail would be rejected
    NOINPUT = os.EX_NOINPUT  # render: the mail file cannot be read
    OSERR = os.EX_OSERR  # serve: cannot listen
    TEMPFAIL = os.EX_TEMPFAIL  # serve: the spool cannot be opened
    CONFIG = os.EX_CONFIG  # check/serve: the config is broken
    NOPERM = os.EX_NOPERM  # a file the command may not read or write (owner, mode and user said)
    SOFTWARE = os.EX_SOFTWARE  # a fault of ours: said in one line, no traceback
    INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT


@dataclass(frozen=True, slots=True)
class Problem:
    """One config problem: where (key path and line) and what."""

    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path} (line {self.line})" if self.line else self.path
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """Every problem found in a config file, reported together."""

    def __init__(self, problems: list[Problem], source: str = "config") -> None:
        # In file order, so the list reads like the file.
        self.problems = sorted(problems, key=lambda p: p.line or 0)
        self.source = source
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")
