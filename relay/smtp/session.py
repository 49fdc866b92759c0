"""One SMTP session: aiosmtpd's protocol without its per-connection introspection, the relay's
limits on top (RelaySMTP, which also reads DATA in chunks rather than a line at a time), and the
open sessions (Sessions: the connection cap, the drain).

For every connection, aiosmtpd 1.4's ``SMTP.__init__`` rebuilds the tables of its own ``smtp_*``
and ``auth_*`` methods and of the handler's ``handle_*`` hooks with ``inspect.getmembers()`` and
``dir()``, inspects the EHLO hook's signature and formats a log line of AUTH mechanisms, and
``_getaddr`` creates a ``typing.Protocol`` class on every MAIL and RCPT. Under load that was ~17% of
the relay's event-loop time (py-spy, docs/benchmarks.md), and the event loop is what limits
accept throughput. The tables depend only on the classes and the handler, so ``LeanSMTP``
computes them once and binds them per connection.

``tests/test_smtpsession.py`` checks that a ``LeanSMTP`` is, attribute for attribute, what
aiosmtpd's own ``__init__`` makes, so an aiosmtpd release that changes its ``__init__`` fails the
tests rather than misbehaving in production (pyproject pins aiosmtpd below 1.5 for this reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import ipaddress
import itertools
import logging
import operator
import ssl
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any

from aiosmtpd.smtp import (
    CALL_LIMIT_DEFAULT,
    MISSING,
    SMTP,
    AuthenticatorType,
    Envelope,
    Session,
    _AuthMechAttr,
    _DataState,
    login_always_fail,
)

from relay import replies
from relay.config.schema import ListenConfig, Network

log = logging.getLogger("relay.listener")
DATA_TURN_BYTES = 32 * 1024  # DATA read between two turns of the event loop


@dataclass(frozen=True, slots=True)
class _HandlerTables:
    hooks: dict[str, Callable[..., Any]]
    ehlo_hook_ver: str | None
    auth: tuple[tuple[str, Callable[..., Any]], ...]  # the handler's auth_* methods by mechanism


_handler_tables: weakref.WeakKeyDictionary[Any, _HandlerTables] = weakref.WeakKeyDictionary()
_class_tables: dict[type, tuple[tuple[str, ...], tuple[tuple[str, str], ...]]] = {}


def _mechanism(name: str, func: Any) -> str:
    return str(getattr(func, "__auth_mechanism_name__", name.replace("auth_", "").replace("__", "-")))


def _tables_of_handler(handler: Any) -> _HandlerTables:
    tables = _handler_tables.get(handler)
    if tables is None:
        names = [m for m in dir(handler) if m.startswith("handle_")]
        hooks = {m.replace("handle_", ""): getattr(handler, m) for m in names}
        ehlo = hooks.get("EHLO")
        version = None
        if ehlo is not None:
            count = len(inspect.signature(ehlo).parameters)
            if count != 5:  # aiosmtpd still takes a deprecated 4-argument form; we never write one
                raise RuntimeError(f"unsupported handle_EHLO hook with {count} parameters")
            version = "new"
        members = inspect.getmembers(handler)
        auth = tuple((_mechanism(name, func), func) for name, func in members if name.startswith("auth_"))
        tables = _HandlerTables(hooks, version, auth)
        _handler_tables[handler] = tables
    return tables


def _tables_of_class(cls: type) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """(smtp_* method names, (mechanism, auth_* method name) pairs) of a protocol class."""
    tables = _class_tables.get(cls)
    if tables is None:
        smtp = tuple(m for m in dir(cls) if m.startswith("smtp_"))
        members = inspect.getmembers(cls)
        auth = tuple((_mechanism(name, func), name) for name, func in members if name.startswith("auth_"))
        tables = _class_tables[cls] = (smtp, auth)
    return tables


class LeanSMTP(SMTP):
    """``aiosmtpd.smtp.SMTP`` with the same state, built from cached tables.

    Takes the keyword arguments the relay uses; the others keep aiosmtpd's defaults.
    """

    def __init__(
        self,
        handler: Any,
        *,
        data_size_limit: int | None,
        enable_SMTPUTF8: bool,
        decode_data: bool,
        hostname: str,
        ident: str,
        tls_context: ssl.SSLContext | None,
        require_starttls: bool,
        timeout: float,
        auth_require_tls: bool,
        authenticator: AuthenticatorType | None,
        command_call_limit: dict[str, int],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not auth_require_tls:
            raise ValueError("LeanSMTP never offers AUTH without TLS")
        self.__ident__ = ident
        self.loop = loop or asyncio.get_running_loop()
        asyncio.StreamReaderProtocol.__init__(
            self,
            asyncio.StreamReader(loop=self.loop, limit=self.line_length_limit),
            client_connected_cb=self._cb_client_connected,
            loop=self.loop,
        )
        self.event_handler = handler
        self.data_size_limit = data_size_limit
        self.enable_SMTPUTF8 = enable_SMTPUTF8
        self._decode_data = decode_data
        self.command_size_limits.clear()
        self.hostname = hostname
        self.tls_context = tls_context
        self.require_starttls = tls_context and require_starttls
        self._timeout_duration = timeout
        self._timeout_handle = None
        self._tls_handshake_okay = True
        self._tls_protocol = None
        self._original_transport = None
        self.session = None
        self.envelope = None
        self.transport = None
        self._handler_coroutine = None
        self._auth_require_tls = auth_require_tls
        self._proxy_timeout = None
        if authenticator is not None:
            self._authenticator = authenticator
            self._auth_callback = None
        else:
            self._auth_callback = login_always_fail
            self._authenticator = None
        self._auth_required = False

        smtp_names, own_auth = _tables_of_class(type(self))
        handler_tables = _tables_of_handler(handler)
        # Same precedence as aiosmtpd: the handler's auth_* methods override the built-in ones.
        self._auth_methods = {mech: _AuthMechAttr(getattr(self, name), True) for mech, name in own_auth}
        self._auth_methods.update((mech, _AuthMechAttr(func, False)) for mech, func in handler_tables.auth)
        self._handle_hooks = dict(handler_tables.hooks)
        self._ehlo_hook_ver = handler_tables.ehlo_hook_ver
        self._smtp_methods = {m.replace("smtp_", ""): getattr(self, m) for m in smtp_names}

        self._enforce_call_limit = True
        self._call_limit_base = command_call_limit
        self._call_limit_default = command_call_limit.get("*", CALL_LIMIT_DEFAULT)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's ``_getaddr`` without the ``typing.Protocol`` class it creates per call, and
        with "553 malformed address" instead of a crash (451) where the stdlib parser raises
        on malformed input such as ``MAIL FROM:<`` or ``RCPT TO:1@[``."""
        if not arg:
            return "", ""
        address: Any  # AngleAddr or AddrSpec: both have addr_spec
        try:
            if arg.lstrip().startswith("<"):
                address, rest = get_angle_addr(arg)
            else:
                address, rest = get_addr_spec(arg)
            addr: str = address.addr_spec
        except (HeaderParseError, IndexError, AttributeError):
            # The stdlib parser also raises IndexError/AttributeError on some malformed input
            # (`<`, `"`, `1@[`): for the client it is the same malformed address.
            return None, None
        localpart = addr.rpartition("@")[0]
        if self.local_part_limit and len(localpart) > self.local_part_limit:
            return None, None
        if not addr.isprintable():  # NUL and other controls: no mail system means them
            return None, None
        return addr, rest


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
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(f"{refused}\r\n".encode())
                transport.close()
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
        transport = self.transport
        if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
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


def in_networks(host: str, networks: Sequence[Network]) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in net for net in networks)


class Sessions:
    """Open SMTP sessions: capped, and waited for on shutdown.

    Three caps at connect: all sessions; the sessions of one client address; and the sessions
    of clients outside the trusted networks, which may only mail the reply address: a flood from
    the internet fills its own share and never the trusted clients' slots.
    """

    def __init__(self, listen: ListenConfig) -> None:
        self.configure(listen)
        self.open: set[RelaySMTP] = set()
        self.busy: set[Session] = set()  # sessions inside handle_DATA: never cut off mid-write
        self.accepting = True
        self._hosts: dict[RelaySMTP, tuple[str, bool]] = {}  # session -> (address, trusted)

    def configure(self, listen: ListenConfig) -> None:
        """The caps and networks in force (SIGHUP); open sessions keep their slots."""
        self.limit = listen.max_connections
        self.per_address = listen.max_connections_per_address
        self.untrusted_limit = listen.untrusted_connections or max(1, listen.max_connections // 4)
        self.untrusted_per_address = min(self.per_address, listen.untrusted_connections_per_address)
        self.mail_timeout = listen.untrusted_mail_timeout
        self.networks = listen.networks

    def admit(self, protocol: RelaySMTP, host: str = "") -> replies.Reply | None:
        """None when admitted, else the 421 to answer. A full untrusted share makes room: its
        idlest session is closed, so that a newcomer (the provider's reply server) gets in
        whoever holds the share."""
        if not self.accepting:
            return replies.S421_TOO_MANY_CONNECTIONS
        trusted = in_networks(host, self.networks)
        held = sum(1 for h, _ in self._hosts.values() if h == host)
        if held >= (self.per_address if trusted else self.untrusted_per_address):
            return replies.S421_TOO_MANY_FROM_YOU
        if not trusted and sum(1 for _, t in self._hosts.values() if not t) >= self.untrusted_limit:
            idlest = self._idlest_untrusted()
            if idlest is None:
                return replies.S421_TOO_MANY_CONNECTIONS
            log.warning("event=closed reason=making_room peer=%s", peer_of(idlest.session))
            idlest.close_with(replies.S421_MAKING_ROOM)
        if len(self.open) >= self.limit:
            return replies.S421_TOO_MANY_CONNECTIONS
        self.open.add(protocol)
        self._hosts[protocol] = (host, trusted)
        return None

    def trusted(self, protocol: RelaySMTP) -> bool:
        return self._hosts.get(protocol, ("", True))[1]

    def _idlest_untrusted(self) -> RelaySMTP | None:
        """The untrusted session that said nothing for longest; never one whose mail is being
        written to the spool."""
        idle = [p for p, (_, t) in self._hosts.items() if not t and p.session not in self.busy]
        return min(idle, key=lambda p: p.last_active, default=None)

    def release(self, protocol: RelaySMTP) -> None:
        self.open.discard(protocol)
        self._hosts.pop(protocol, None)

    async def drain(self, deadline: float) -> None:
        """Shutdown: no new sessions; a session mid-DATA-handling finishes, the others are told
        421 and closed (their clients keep the mail and retry)."""
        self.accepting = False
        loop = asyncio.get_running_loop()
        while self.open and loop.time() < deadline:
            for proto in list(self.open):
                transport = proto.transport
                if proto.session in self.busy:
                    continue
                self.release(proto)
                if not isinstance(transport, asyncio.WriteTransport) or transport.is_closing():
                    continue
                # A TLS session whose peer just left can fail to write: it is closing anyway.
                with contextlib.suppress(OSError, RuntimeError, AttributeError):
                    transport.write(f"{replies.S421_SHUTTING_DOWN}\r\n".encode())
                transport.close()
            await asyncio.sleep(0.02)  # a busy session's DATA handling is finishing
