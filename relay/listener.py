"""The aiosmtpd handler: SMTP hooks only. Policy at RCPT, the pure core at DATA, and the one
place where exceptions become SMTP replies (DESIGN.md sections 5 and 7)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import re
import secrets
import socket
import sqlite3
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from relay import auth, dkimsig, pipeline, replies, stormstore
from relay.config import Config
from relay.errors import RelayError
from relay.ids import new_id
from relay.metrics import Metrics
from relay.model import ReplyKind, State
from relay.parsers import reply as reply_parser
from relay.policy import Action, Rule
from relay.routing import check_recipient
from relay.smtpsession import LeanSMTP
from relay.spool import Row, Spool
from relay.storm import Admission

log = logging.getLogger("relay.listener")


class Delivery(Protocol):
    """What the listener needs of delivery: hand new rows over, or say rows are waiting."""

    def can_take(self, count: int) -> bool: ...
    def take(self, rows: list[Row]) -> None: ...
    def wake(self) -> None: ...
    def pause(self, until: float, reason: str) -> None: ...


OFFLOAD_BYTES = 64 * 1024  # parse bigger mails in a thread so other sessions keep moving
TRANSACTION_CALLS = 1 << 30
# Reply outcomes that are message states (the others: unknown id, kept ...).
STATE_OUTCOMES = frozenset(
    s.value for s in (State.CONFIRMED, State.FAILED, State.DUPLICATE, State.QUEUED, State.DEFERRED)
)


def _tls_context(config: Config) -> ssl.SSLContext | None:
    listen = config.listen
    if not (listen.tls_cert and listen.tls_key):
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(listen.tls_cert, listen.tls_key)
    return context


class RelaySMTP(LeanSMTP):
    """aiosmtpd's SMTP with the limits legacy senders need and a connection cap."""

    # Some loggers send one very long line; aiosmtpd's default (1001) would answer 500.
    line_length_limit = 1 << 17

    def __init__(self, handler: Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.relay_handler = handler

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tracker = self.relay_handler.sessions
        if self.transport is None and not tracker.admit(self):  # not a STARTTLS re-entry
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(f"{replies.S421_TOO_MANY_CONNECTIONS}\r\n".encode())
            transport.close()
            return
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.relay_handler.sessions.release(self)
        if self.session is not None:
            super().connection_lost(error)


class Sessions:
    """Open SMTP sessions: capped, and waited for on shutdown."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: set[RelaySMTP] = set()
        self.accepting = True

    def admit(self, protocol: RelaySMTP) -> bool:
        if not self.accepting or len(self.open) >= self.limit:
            return False
        self.open.add(protocol)
        return True

    def release(self, protocol: RelaySMTP) -> None:
        self.open.discard(protocol)


class Handler:
    def __init__(self, config: Config, spool: Spool, delivery: Delivery, max_sessions: int = 100) -> None:
        self.config = config  # replaced as a whole on SIGHUP
        self.spool = spool
        self.delivery = delivery
        self.sessions = Sessions(max_sessions)
        self.hostname = config.listen.hostname or socket.getfqdn()
        self.busy: set[Session] = set()  # sessions inside handle_DATA: never cut off mid-write
        self.tls_context = _tls_context(config)
        # user -> HMAC of the last password that verified: scrypt costs ~50 ms and aiosmtpd
        # calls the authenticator synchronously, so only a first login per password pays it.
        self._verified: dict[str, bytes] = {}
        self._cache_key = secrets.token_bytes(32)
        self.dnsfunc: dkimsig.DnsFunc | None = None  # DKIM key lookups; None: real DNS (tests inject)
        self.on_failed: Callable[[str], None] = lambda relay_id: None  # set by the daemon (notify)
        self.metrics = Metrics()  # the daemon passes its own
        self.clock: Callable[[], float] = time.time  # storm control's clock (tests simulate time)
        self.on_alert_due: Callable[[float], None] = lambda at: None  # set by the daemon (holder)

    def reconfigure(self, config: Config) -> None:
        """SIGHUP: new routes and policy for new sessions."""
        self.tls_context = _tls_context(config)
        self._verified.clear()
        self.config = config

    async def drain(self, deadline: float) -> None:
        """Shutdown: no new sessions; a session mid-DATA-handling finishes, the others are told
        421 and closed (their clients keep the mail and retry)."""
        self.sessions.accepting = False
        loop = asyncio.get_running_loop()
        while self.sessions.open and loop.time() < deadline:
            for proto in list(self.sessions.open):
                transport = proto.transport
                if proto.session in self.busy:
                    continue
                self.sessions.release(proto)
                if not isinstance(transport, asyncio.WriteTransport) or transport.is_closing():
                    continue
                # A TLS session whose peer just left can fail to write: it is closing anyway.
                with contextlib.suppress(OSError, RuntimeError, AttributeError):
                    transport.write(f"{replies.S421_SHUTTING_DOWN}\r\n".encode())
                transport.close()
            await asyncio.sleep(0.02)

    def factory(self) -> RelaySMTP:
        return RelaySMTP(self, **self.session_options())

    def session_options(self) -> dict[str, Any]:
        """aiosmtpd's SMTP keyword arguments for one session, from the config in force."""
        cfg = self.config.listen
        return dict(
            data_size_limit=cfg.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=self.hostname,
            ident="smsc-relay",
            timeout=cfg.idle_timeout,
            tls_context=self.tls_context,
            require_starttls=cfg.require_tls,
            auth_require_tls=True,  # never a password in the clear
            authenticator=self._authenticate if cfg.users else None,
            # aiosmtpd counts per session: capping MAIL/RCPT/DATA/RSET would cut off a client
            # that sends many messages over one connection (an MTA in front of us does).
            command_call_limit={
                "*": cfg.command_call_limit,
                **dict.fromkeys(("MAIL", "RCPT", "DATA", "RSET", "QUIT"), TRANSACTION_CALLS),
            },
        )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        stored = self.config.listen.users.get(user)
        tag = hmac.new(self._cache_key, f"{user}\0{password}".encode(), "sha256").digest()
        ok = stored is not None and (
            hmac.compare_digest(self._verified.get(user, b""), tag) or auth.verify(password, stored)
        )
        if ok:
            self._verified[user] = tag
        log.log(
            logging.INFO if ok else logging.WARNING,
            "event=auth user=%s ok=%s peer=%s",
            user,
            ok,
            session.peer,
        )
        return AuthResult(success=ok, handled=False)

    def _allowed(self, session: Session) -> bool:
        peer = session.peer[0] if isinstance(session.peer, tuple) else ""
        try:
            address = ipaddress.ip_address(peer.split("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in net for net in self.config.listen.networks)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        cfg = self.config
        if self._is_reply_address(address):
            # The provider's servers are in no allowed network: its replies come from anywhere,
            # to this one address, and are never routed as SMS.
            envelope.rcpt_tos.append(address)
            return str(replies.S250_OK)
        if cfg.listen.auth_required and not session.authenticated:
            self.metrics.rejected.labels("auth_required").inc()
            return str(replies.S530_AUTH_REQUIRED)
        # As an MTA would: trusted networks, or a client that authenticated.
        if not (session.authenticated or self._allowed(session)):
            log.warning("event=rejected reason=client_not_allowed peer=%s rcpt=%s", session.peer, address)
            self.metrics.rejected.labels("client_not_allowed").inc()
            return str(replies.S554_NOT_ALLOWED)
        if len(envelope.rcpt_tos) >= cfg.listen.max_recipients:
            self.metrics.rejected.labels("too_many_recipients").inc()
            return str(replies.S452_TOO_MANY_RECIPIENTS)
        try:
            check_recipient(cfg.routes, cfg.aliases, address, envelope.mail_from or "")
        except RelayError as exc:
            log.info("event=rejected reason=rcpt peer=%s reply=%r", session.peer, str(exc.reply))
            self.metrics.rejected.labels(_reason(exc)).inc()
            return str(exc.reply)
        envelope.rcpt_tos.append(address)
        return str(replies.S250_OK)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.busy.add(session)
        try:
            return await self._data(session, envelope)
        finally:
            self.busy.discard(session)

    def _is_reply_address(self, address: str) -> bool:
        reply_address = self.config.provider.reply_address
        return bool(reply_address) and address.lower() == reply_address.lower()

    async def _data(self, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        sms_rcpts = [r for r in envelope.rcpt_tos if not self._is_reply_address(r)]
        if len(sms_rcpts) < len(envelope.rcpt_tos):
            try:
                await asyncio.shield(self._take_replies(raw, envelope.mail_from or ""))
            except RelayError as exc:
                return str(exc.reply)
            if not sms_rcpts:
                return str(replies.S250_ACCEPTED.with_text("reply recorded"))
            envelope.rcpt_tos = sms_rcpts
        cfg, now = self.config, self.clock()
        try:
            args = {
                "mail_from": envelope.mail_from or "",
                "rcpt_tos": list(envelope.rcpt_tos),
                "config": cfg,
                "new_id": new_id,
                "now": datetime.fromtimestamp(now, UTC),
                "hostname": self.hostname,
                "with_secret": False,  # the spool keeps the masked mail; delivery unmasks it
            }
            if len(raw) > OFFLOAD_BYTES:
                rendered = await asyncio.to_thread(lambda: pipeline.render(raw, **args))  # type: ignore[arg-type]
            else:
                rendered = pipeline.render(raw, **args)  # type: ignore[arg-type]
            for warning in rendered.mail.warnings:
                log.warning("event=decode_warning peer=%s warning=%r", session.peer, warning)
            # A client that hangs up now cancels this handler; the write must still finish
            # whole (committed or not), so it runs shielded.
            claimed = self.delivery.can_take(len(rendered.provider_mails))
            admitted: list[Admission] = []
            admit = self._admit_op(rendered, envelope.mail_from or "", now, admitted)
            write = self.spool.enqueue(
                rendered.provider_mails,
                mail_from=envelope.mail_from or "",
                inbound_id=rendered.mail.message_id,
                claimed=claimed,
                also=admit,
            )
            rows = await asyncio.shield(write)
        except RelayError as exc:
            log.warning(
                "event=rejected peer=%s from=%s reply=%r", session.peer, envelope.mail_from, str(exc.reply)
            )
            return str(exc.reply)
        ids = [m.relay_id for m in rendered.provider_mails]
        for m in rendered.provider_mails:
            log.info(
                "event=queued id=%s route=%s mode=%s phones=%d parts=%d from=%s",
                m.relay_id, m.route, m.mode.value, len(m.phones), m.segments.parts, envelope.mail_from,
            )  # fmt: skip
        self.metrics.received.inc()
        if rows:
            if claimed:
                self.delivery.take(rows)
            else:
                self.delivery.wake()
        said = ["queued as " + " ".join(ids)] if ids else []
        said += self._report_alerts(admitted)
        return str(replies.S250_ACCEPTED.with_text("; ".join(said)))

    def _admit_op(
        self, rendered: pipeline.Rendered, mail_from: str, now: float, into: list[Admission]
    ) -> Callable[[sqlite3.Connection], None] | None:
        """The spool operation that admits a mail's storm alerts, run in the transaction that
        stores its other requests; it puts what became of each alert `into`."""
        if not rendered.alerts:
            return None
        settings, inbound_id = stormstore.settings_for(self.config), rendered.mail.message_id

        def op(conn: sqlite3.Connection) -> None:
            admitted = stormstore.admit(
                conn, rendered.alerts, settings=settings, now=now, mail_from=mail_from, inbound_id=inbound_id
            )
            into.extend(admitted)

        return op

    def _report_alerts(self, admitted: list[Admission]) -> list[str]:
        """Log and count admitted alerts, wake the planner for held ones; the reply's words."""
        for a in admitted:
            self.metrics.alerts.labels(a.state).inc()
            log.info(
                "event=alert_%s id=%s route=%s phones=%d kind=%s note=%r",
                a.state, a.alert.id, a.alert.route, len(a.alert.phones), a.alert.kind, a.note,
            )  # fmt: skip
            if a.state == "held":
                self.on_alert_due(a.alert.due)
        said = []
        for state, verb in (
            ("held", "held as"),
            ("repeat", "repeat counted as"),
            ("cancelled", "flap closed as"),
        ):
            got = [a.alert.id for a in admitted if a.state == state]
            if got:
                said.append(f"{verb} {' '.join(got)}")
        return said

    async def _take_replies(self, raw: bytes, mail_from: str) -> None:
        """Record every result in a provider reply mail and apply it to its message."""
        cfg = self.config
        untrusted = ""
        if cfg.provider.verify_replies:
            # DNS lookups and RSA in dkimpy block: never on the event loop.
            verdict = await asyncio.to_thread(
                dkimsig.verify, raw, domains=cfg.provider.reply_dkim_domains, dnsfunc=self.dnsfunc
            )
            untrusted = "" if verdict.trusted else verdict.reason
            if untrusted:
                log.warning("event=reply_untrusted from=%s reason=%r", mail_from, untrusted)
        for result in reply_parser.parse(raw, settings=cfg.parsing):
            applied = await self.spool.record_reply(
                result, mail_from=mail_from, raw=raw, untrusted=untrusted, pause_for=self._pause_seconds
            )
            level = logging.INFO if result.kind is ReplyKind.OK else logging.WARNING
            if applied.outcome.startswith(("unknown id", "kept")):
                level = logging.WARNING
            log.log(
                level, "event=provider_reply id=%s kind=%s code=%s outcome=%r line=%r",
                result.relay_id or "-", result.kind.value, result.code, applied.outcome, result.line,
            )  # fmt: skip
            if applied.outcome in STATE_OUTCOMES:
                self.metrics.requests.labels(applied.outcome).inc()
            if result.code is not None and not untrusted:
                self.metrics.provider_errors.labels(str(result.code)).inc()
            if applied.outcome == State.CONFIRMED.value and applied.since_sent is not None:
                self.metrics.provider_to_confirmation.observe(applied.since_sent)
            if applied.outcome in (State.FAILED.value, State.DUPLICATE.value):
                self.on_failed(result.relay_id)
            if applied.pause is not None:
                self.delivery.pause(applied.paused_until, applied.pause_reason)

    def _pause_seconds(self, rule: Rule) -> float:
        p = self.config.provider
        return p.block_backoff if rule.action is Action.BACKOFF else p.pause_interval

    async def handle_exception(self, error: Exception) -> str:
        self.metrics.rejected.labels("internal_error").inc()
        # aiosmtpd's default answers a permanent 500 with the exception text; a fault of ours
        # is temporary (the client keeps the mail) and its details are for the log only.
        log.error("event=internal_error error=%r", error, exc_info=error)
        return str(replies.S451_INTERNAL)


def _reason(exc: RelayError) -> str:
    """A metrics label for an error class: NoRouteError -> no_route."""
    name = type(exc).__name__.removesuffix("Error")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() or "error"
