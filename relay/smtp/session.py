"""One SMTP session: the relay's limits on top of aiosmtpd's protocol (RelaySMTP, which also
reads DATA in chunks rather than a line at a time). The lean base class is in lean.py, the
open sessions and their caps in slots.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import operator
import ssl
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import (
    MISSING,
    SMTP,
    Envelope,
    Session,
    _DataState,
)

from relay import replies
from relay.config.schema import ListenConfig
from relay.smtp.lean import LeanSMTP
from relay.smtp.transports import writable

if TYPE_CHECKING:
    from relay.smtp.slots import Sessions

log = logging.getLogger("relay.listener")
DATA_TURN_BYTES = 32 * 1024  # DATA read between two turns of the event loop


def peer_of(session: Session | None) -> str:
    """A client's address for the log: 127.0.0.1:37642, [::1]:37642."""
    peer = session.peer if session is not None else None
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return str(peer or "-")


def tls_context(listen: ListenConfig) -> ssl.SSLContext | None:
    """The STARTTLS context for listen.tls, or None when TLS is not configured."""
    if not (listen.tls_cert and listen.tls_key):
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(listen.tls_cert, listen.tls_key)
    return context


_END = b"\r\n.\r\n"
_END_PREFIXES = (b"\r", b"\r\n", b"\r\n.", b"\r\n.\r")


def _judge(raw: bytes, total: int, limit: int, length: int) -> _DataState:
    """What aiosmtpd 1.4 decides reading `raw` (`total` bytes, cut past limit + a line) a line at
    a time: a line over the StreamReader's limit (`length`) is 500, and so is one whose CRLF
    takes it over; the line that takes the mail over `limit` is 552, unless it is itself over
    `length`; the first of these wins."""
    # Most mail: no line can be too long when every aligned block of (length - 1) // 2 bytes
    # holds a CRLF (a longer line would hold a whole block), some microseconds for 2 MB.
    block = (length - 1) // 2
    if (not limit or total <= limit) and all(
        raw.find(b"\r\n", at, at + block) >= 0 for at in range(0, len(raw) - block + 1, block)
    ):
        return _DataState.NOMINAL
    lens = list(map(len, raw.split(b"\r\n")))  # the last: the line that was cut, or b""
    if total > len(raw) and lens[-1]:
        lens[-1] = total  # cut: its end is far past `length`
    if (not limit or total <= limit) and max(lens) + 2 <= length:
        return _DataState.NOMINAL
    first = next(
        itertools.compress(itertools.count(), map(operator.gt, lens, itertools.repeat(length - 2))), None
    )
    if first is None:
        return _DataState.TOO_MUCH
    before, line = sum(lens[:first]) + 2 * first, lens[first]
    if limit and before > limit:
        return _DataState.TOO_MUCH
    if line > length:
        return _DataState.TOO_LONG
    return _DataState.TOO_MUCH if limit and before + line + 2 > limit else _DataState.TOO_LONG


class RelayEnvelope(Envelope):
    """aiosmtpd's envelope, and the size of DATA that was counted but not kept."""

    def __init__(self) -> None:
        super().__init__()
        self.unkept = 0  # bytes: the mail was over the handler's data_keep_limit; content is b""


class RelaySMTP(LeanSMTP):
    """aiosmtpd's SMTP with the limits legacy senders need and a connection cap.

    A client outside the trusted networks may only mail the reply address, which the
    provider's servers do with a few mails a session: every command of its session is capped,
    and it must say MAIL within `untrusted_mail_timeout` of connecting (and of its last mail),
    so that idle connections cannot hold the slots the provider's replies need."""

    # Some loggers send one very long line; aiosmtpd's default (1001) would answer 500.
    line_length_limit = 1 << 17
    # What this class adds to aiosmtpd's state (tests/test_smtpsession.py compares the rest).
    OWN = ("sessions", "trusted", "last_active", "_mail_deadline", "_rsets")

    def __init__(self, handler: Any, *, sessions: Sessions, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.sessions = sessions
        self.trusted = True
        self.last_active = 0.0  # the loop's time of the last command: who is idlest
        self._mail_deadline: asyncio.TimerHandle | None = None
        self._rsets = 0  # since the last MAIL: an MTA sends one between mails, a loop sends many

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None  # not a STARTTLS re-entry
        if first:
            peer = transport.get_extra_info("peername")
            refused = self.sessions.admit(self, str(peer[0]) if isinstance(peer, tuple) else "")
            if refused is not None:
                writer = writable(transport)  # uvloop's too (relay/smtp/transports.py)
                assert writer is not None  # just connected
                writer.write(f"{refused}\r\n".encode())
                writer.close()
                return
            self.trusted = self.sessions.trusted(self)
            if not self.trusted:
                # Read by the command loop when it starts, after this returns.
                self._call_limit_base = {"*": self._call_limit_default}
            self.last_active = self.loop.time()
        super().connection_made(transport)
        if first and not self.trusted:
            self._arm_mail_deadline()

    def connection_lost(self, error: Exception | None) -> None:
        self.sessions.release(self)
        self._disarm_mail_deadline()
        if self.session is not None:
            super().connection_lost(error)

    def _reset_timeout(self, duration: float | None = None) -> None:
        super()._reset_timeout(duration)
        self.last_active = self.loop.time()

    def close_with(self, reply: replies.Reply) -> None:
        """Say why and hang up (the client keeps its mail and comes back)."""
        self.sessions.release(self)
        transport = writable(self.transport)
        if transport is not None:
            with contextlib.suppress(OSError, RuntimeError, AttributeError):
                transport.write(f"{reply}\r\n".encode())
            transport.close()

    def _arm_mail_deadline(self) -> None:
        self._disarm_mail_deadline()
        self._mail_deadline = self.loop.call_later(self.sessions.mail_timeout, self._no_mail)

    def _disarm_mail_deadline(self) -> None:
        if self._mail_deadline is not None:
            self._mail_deadline.cancel()
            self._mail_deadline = None

    def _no_mail(self) -> None:
        self._mail_deadline = None
        if self.session in self.sessions.busy:
            return  # its mail is being written to the spool
        log.info("event=closed reason=no_mail peer=%s", peer_of(self.session))
        self.close_with(replies.S421_NO_MAIL)

    async def smtp_MAIL(self, arg: str | None) -> None:
        await super().smtp_MAIL(arg)
        if self.envelope is not None and self.envelope.mail_from is not None:
            self._rsets = 0
            self._disarm_mail_deadline()

    def _create_envelope(self) -> RelayEnvelope:
        return RelayEnvelope()

    async def smtp_DATA(self, arg: str) -> None:
        if self._decode_data:  # the relay reads bytes; a str envelope is aiosmtpd's own way
            await super().smtp_DATA(arg)
        else:
            await self._data(arg)
        if not self.trusted and self.envelope is not None and self.envelope.mail_from is None:
            self._arm_mail_deadline()  # the mail is done: the next one within the deadline too

    async def _data(self, arg: str) -> None:
        """aiosmtpd 1.4's ``smtp_DATA``, same replies and limits, but DATA read in chunks with a turn
        of the event loop after every DATA_TURN_BYTES, and a mail over the handler's
        ``data_keep_limit(envelope)`` counted, not kept (``RelayEnvelope.unkept``).

        aiosmtpd reads DATA a line at a time, some microseconds a line, for as long as its
        buffer holds lines (up to half a megabyte): ten sessions sending 2 MB held the loop for
        hundreds of milliseconds a turn, and a trusted client's NOOP waited behind them all."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        envelope = self.envelope
        assert isinstance(envelope, RelayEnvelope)
        if not envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        keep_limit = getattr(self.event_handler, "data_keep_limit", None)
        try:
            state, content, unkept = await self._read_data(keep_limit(envelope) if keep_limit else None)
        except asyncio.CancelledError:  # the connection got reset during DATA
            log.info("event=connection_lost_in_data peer=%s", peer_of(self.session))
            self._writer.close()
            raise
        if state is _DataState.TOO_LONG:
            await self.push("500 Line too long (see RFC5321 4.5.3.1.6)")
        elif state is _DataState.TOO_MUCH:
            await self.push("552 Error: Too much mail data")
        if state is not _DataState.NOMINAL:
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        envelope.content = envelope.original_content = content
        envelope.unkept = unkept
        status = await self._call_handler_hook("DATA") if "DATA" in self._handle_hooks else MISSING
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)

    async def _read_data(self, keep: int | None) -> tuple[_DataState, bytes, int]:
        """(state, the mail de-dot-stuffed, 0); when it is over `keep` bytes, (state, b"", its size).

        Read in chunks up to the end-of-data line, at C speed: up to `limit` plus one line is
        kept, then lines are judged as aiosmtpd judges them one by one (`_judge`). The end is
        searched for as ".\r\n" (then checked for the CRLF before it) while what was read may
        end in the first bytes of "\r\n.\r\n", then as the whole: the reader never returns part
        of a separator, so nothing past the end is read (pipelined commands stay for the loop)."""
        length = self.line_length_limit
        limit = self.data_size_limit or 0
        cap = limit + length + 2 if limit else None  # what decides between 500 and 552
        kept: list[bytes] = []
        held = total = turn = 0
        last = b"\r\n"  # the last bytes read (up to 4): DATA starts at the start of a line
        sep = b".\r\n"
        while True:
            if self.transport is None:
                raise asyncio.CancelledError  # the connection is gone (as if it said EOF)
            try:
                chunk = await self._reader.readuntil(sep)
                end = sep == _END or (last + chunk[-5:])[-5:-3] == b"\r\n"  # a "." line
            except asyncio.LimitOverrunError as e:  # no end in the buffer: take what is safe
                chunk, end = await self._reader.read(e.consumed), False
                if not (last + chunk[-4:]).endswith(_END_PREFIXES):
                    sep = _END  # no end of data begins in what was read: search for the whole
            data = chunk[:-3] if end else chunk
            total += len(data)
            if cap is None or held < cap:
                piece = data if cap is None else data[: cap - held]
                kept.append(piece)
                held += len(piece)
            last = (last + chunk[-4:])[-4:]
            if end:
                break
            turn += len(chunk)
            if turn >= DATA_TURN_BYTES:
                turn = 0
                await asyncio.sleep(0)
        raw = b"".join(kept)
        del kept
        state = _judge(raw, total, limit, length)
        if state is not _DataState.NOMINAL:
            return state, b"", 0
        if keep is not None and total > keep:
            size = total - raw.count(b"\r\n.") - raw.startswith(b".")  # without doubled dots
            if size > keep:
                return state, b"", size
        if raw.startswith(b"."):  # RFC 5321 4.5.2: a line's leading dot was doubled
            raw = raw[1:]
        return state, raw.replace(b"\r\n.", b"\r\n"), 0

    async def smtp_RSET(self, arg: str) -> None:
        if self.trusted:
            # Not aiosmtpd's count per session: an MTA reusing a connection sends RSET before
            # each of its many mails; what is capped is RSET after RSET with no mail between.
            self._rsets += 1
            if self._rsets > self._call_limit_default:
                log.warning("event=closed reason=rset_loop peer=%s", peer_of(self.session))
                self.close_with(replies.S421_TOO_MANY_RSET)
                return
        await super().smtp_RSET(arg)
        if not self.trusted:
            self._arm_mail_deadline()


# aiosmtpd's HELP reads each command's syntax from the method: the overrides keep it.
for _name in ("smtp_MAIL", "smtp_DATA", "smtp_RSET"):
    functools.update_wrapper(getattr(RelaySMTP, _name), getattr(SMTP, _name))
