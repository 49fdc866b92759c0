"""The aiosmtpd handler: SMTP hooks only. Policy at RCPT, the pure core at DATA, and the one
place where exceptions become SMTP replies (DESIGN.md sections 5 and 7)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import multiprocessing
import os
import re
import signal
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from typing import Any, Protocol

from aiosmtpd.smtp import SMTP, Envelope, Session

from relay import ids, pipeline, replies
from relay.config.schema import Config
from relay.errors import RelayError
from relay.ids import new_id
from relay.metrics import Metrics
from relay.model import AlertState, State
from relay.routing import check_recipient
from relay.smtp.auth import Authenticator
from relay.smtp.intake import MAX_REPLY_BYTES, ReplyIntake, check_reply_size
from relay.smtp.ratelimit import RateLimiter
from relay.smtp.session import RelayEnvelope, RelaySMTP, Sessions, in_networks, peer_of, tls_context
from relay.spool.interface import Row, Spool, StormAdmit
from relay.storm.plan import Admission

log = logging.getLogger("relay.listener")


class Delivery(Protocol):
    """What the listener needs of delivery: hand new rows over, or say rows are waiting."""

    def can_take(self, count: int) -> bool: ...
    def take(self, rows: list[Row]) -> None: ...
    def wake(self) -> None: ...


# Mail that may take long to render renders in the render process, not on the event loop: over
# 64 KiB, or with many MIME parts (the parser builds an object per part: 25 ms for 1,000 parts of
# 52 KB) or many RFC 2047 words (the stdlib decodes them in quadratic time). Counting is C speed.
OFFLOAD_BYTES = 64 * 1024
OFFLOAD_DELIMITERS = 50  # lines starting "--"
OFFLOAD_WORDS = 100  # "=?"
TRANSACTION_CALLS = 1 << 30
# What the 250 reply says of a mail's storm alerts.
ALERT_WORDS = (
    (AlertState.HELD, "held as"),
    (AlertState.REPEAT, "repeat counted as"),
    (AlertState.CANCELLED, "flap closed as"),
)


class Handler:
    def __init__(
        self,
        config: Config,
        spool: Spool,
        delivery: Delivery,
        *,
        metrics: Metrics,
        intake: ReplyIntake,
        hostname: str,
        sessions: Sessions,
        clock: Callable[[], float] = time.time,
        on_alert_due: Callable[[float], None] = lambda at: None,
        render_pool: Executor | None = None,
    ) -> None:
        self.config = config  # replaced as a whole on SIGHUP
        self.spool = spool
        self.delivery = delivery
        self.metrics = metrics
        self.intake = intake
        self.reply_limiter = RateLimiter(lambda: self.config.provider.reply_rate_limit)
        self.hostname = hostname
        self.sessions = sessions
        self.clock = clock  # storm control's clock (tests simulate time)
        self.on_alert_due = on_alert_due  # the storm runner: look sooner
        self.tls_context = tls_context(config.listen)
        self.authenticator = Authenticator(config.listen.users)
        self.render_pool = render_pool  # None: the render process (render_process())

    def reconfigure(self, config: Config) -> None:
        """SIGHUP: new routes and policy for new sessions."""
        self.tls_context = tls_context(config.listen)
        self.sessions.configure(config.listen)
        self.authenticator = Authenticator(config.listen.users)
        self.config = config

    def factory(self) -> RelaySMTP:
        return RelaySMTP(self, sessions=self.sessions, **self.session_options())

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
            authenticator=self.authenticator if cfg.users else None,
            # aiosmtpd counts per session: capping MAIL/RCPT/DATA would cut off a client
            # that sends many messages over one connection (an MTA in front of us does).
            command_call_limit={
                "*": cfg.command_call_limit,
                # RSET is capped by RelaySMTP: RSET after RSET with no mail between.
                **dict.fromkeys(("MAIL", "RCPT", "DATA", "RSET", "QUIT"), TRANSACTION_CALLS),
            },
        )

    def _allowed(self, session: Session) -> bool:
        return in_networks(_peer_ip(session), self.config.listen.networks)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        cfg = self.config
        if self._is_reply_address(address):
            # The provider's servers are in no allowed network: its replies come from anywhere,
            # to this one address, and are never routed as SMS. Anyone may knock, so each
            # untrusted address gets provider.reply_rate_limit mails a minute, refused before DATA.
            trusted = session.authenticated or self._allowed(session)
            if not trusted and not self.reply_limiter.allow(_peer_ip(session)):
                log.warning("event=rejected reason=reply_rate peer=%s rcpt=%s", peer_of(session), address)
                self.metrics.rejected.labels("reply_rate").inc()
                return str(replies.S450_REPLY_RATE)
            envelope.rcpt_tos.append(address)
            return str(replies.S250_OK)
        if cfg.listen.auth_required and not session.authenticated:
            self.metrics.rejected.labels("auth_required").inc()
            return str(replies.S530_AUTH_REQUIRED)
        # As an MTA would: trusted networks, or a client that authenticated.
        if not (session.authenticated or self._allowed(session)):
            log.warning("event=rejected reason=client_not_allowed peer=%s rcpt=%s", peer_of(session), address)
            self.metrics.rejected.labels("client_not_allowed").inc()
            return str(replies.S554_NOT_ALLOWED)
        if len(envelope.rcpt_tos) >= cfg.listen.max_recipients:
            self.metrics.rejected.labels("too_many_recipients").inc()
            return str(replies.S452_TOO_MANY_RECIPIENTS)
        try:
            check_recipient(cfg.routes, cfg.aliases, address, envelope.mail_from or "")
        except RelayError as exc:
            log.info("event=rejected reason=rcpt peer=%s reply=%r", peer_of(session), str(exc.reply))
            self.metrics.rejected.labels(_reason(exc)).inc()
            return str(exc.reply)
        envelope.rcpt_tos.append(address)
        return str(replies.S250_OK)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.sessions.busy.add(session)
        try:
            return await self._data(session, envelope)
        finally:
            self.sessions.busy.discard(session)

    def data_keep_limit(self, envelope: Envelope) -> int | None:
        """The DATA worth handing over (RelaySMTP only counts a bigger mail): a mail to the reply
        address alone is refused past MAX_REPLY_BYTES, so its megabytes are never undoubled,
        copied into the envelope or looked at again."""
        only_replies = envelope.rcpt_tos and all(self._is_reply_address(r) for r in envelope.rcpt_tos)
        return MAX_REPLY_BYTES if only_replies else None

    def _is_reply_address(self, address: str) -> bool:
        """The reply address, or it with a reply tag (what provider mail goes out from)."""
        reply_address = self.config.provider.reply_address
        base, _tag = ids.split_tag(address)
        return bool(reply_address) and base.lower() == reply_address.lower()

    async def _data(self, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        sms_rcpts = [r for r in envelope.rcpt_tos if not self._is_reply_address(r)]
        if len(sms_rcpts) < len(envelope.rcpt_tos):
            try:
                unkept = envelope.unkept if isinstance(envelope, RelayEnvelope) else 0
                check_reply_size(raw, unkept or None)  # unkept: RelaySMTP only counted it
                tags = [ids.split_tag(r)[1] for r in envelope.rcpt_tos if self._is_reply_address(r)]
                take = self.intake.take(raw, envelope.mail_from or "", self.config, [t for t in tags if t])
                await asyncio.shield(take)
            except RelayError as exc:
                if not sms_rcpts:
                    return str(exc.reply)
                # A trusted client's mail to SMS recipients and the reply address: the SMS part
                # goes on; what no provider reply looks like is not read as one.
                log.warning("event=reply_refused peer=%s reply=%r", peer_of(session), str(exc.reply))
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
            render = functools.partial(pipeline.render, raw, **args)  # type: ignore[arg-type]
            rendered = await self._render_heavy(render) if heavy(raw) else render()
            for warning in rendered.mail.warnings:
                log.warning("event=decode_warning peer=%s warning=%r", peer_of(session), warning)
            for warning in rendered.warnings:
                log.warning("event=render_warning peer=%s warning=%r", peer_of(session), warning)
            for note in rendered.notes:
                log.info("event=render_note peer=%s note=%r", peer_of(session), note)
            # A client that hangs up now cancels this handler; the write must still finish
            # whole (committed or not), so it runs shielded.
            claimed = self.delivery.can_take(len(rendered.provider_mails))
            storm = StormAdmit(rendered.alerts, cfg.storm_settings, now) if rendered.alerts else None
            write = self.spool.enqueue(
                rendered.provider_mails,
                mail_from=envelope.mail_from or "",
                inbound_id=rendered.mail.message_id,
                claimed=claimed,
                storm=storm,
                protect=cfg.provider.phone_limits,
                # Alert mail is a few KB; a big mail would be kept once per provider request.
                inbound=raw if len(raw) <= cfg.spool.keep_mail else None,
                config=cfg.digest,
            )
            enqueued = await asyncio.shield(write)
        except RelayError as exc:
            log.warning(
                "event=rejected peer=%s from=%s reply=%r",
                peer_of(session),
                envelope.mail_from,
                str(exc.reply),
            )
            return str(exc.reply)
        for m in rendered.provider_mails:
            log.info(
                "event=queued id=%s route=%s mode=%s phones=%d parts=%d from=%s",
                m.relay_id, m.route, m.mode.value, len(m.phones), m.segments.parts, envelope.mail_from,
            )  # fmt: skip
        self.metrics.received.inc()
        going = [r for r in enqueued.rows if r.state in (State.SENDING, State.QUEUED)]
        if going:
            if claimed:
                self.delivery.take([r for r in going if r.state is State.SENDING])
            else:
                self.delivery.wake()
        said = ["queued as " + " ".join(r.id for r in going)] if going else []
        said += self._report_protected(enqueued.rows)
        said += self._report_alerts(enqueued.admitted)
        return str(replies.S250_ACCEPTED.with_text("; ".join(said)))

    async def _render_heavy(self, render: Callable[[], pipeline.Rendered]) -> pipeline.Rendered:
        pool = self.render_pool or render_process()
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, render)
        except BrokenProcessPool:  # the process died (killed, out of memory): a new one next time
            _discard_render_process(pool)
            raise

    def _report_protected(self, rows: list[Row]) -> list[str]:
        """Rows the provider's per-phone limits held back or counted: logged, counted, said."""
        said = []
        for r in rows:
            if r.state is State.REPEAT:
                action, words = "repeat", f"not sent, a repeat: {r.id} ({r.last_error})"
            elif r.state is State.DEFERRED:
                until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(r.next_attempt))
                action, words = "held", f"held until {until} to protect the phone: {r.id} ({r.last_error})"
            else:
                continue
            self.metrics.protected.labels(action).inc()
            log.warning(
                "event=phone_protected id=%s route=%s action=%s until=%.0f reason=%r",
                r.id, r.route, action, r.next_attempt, r.last_error,
            )  # fmt: skip
            said.append(words)
        return said

    def _report_alerts(self, admitted: tuple[Admission, ...]) -> list[str]:
        """Log and count admitted alerts, wake the planner for held ones; the reply's words."""
        for a in admitted:
            self.metrics.alerts.labels(a.state.value).inc()
            log.info(
                "event=alert_%s id=%s route=%s phones=%d kind=%s note=%r",
                a.state.value, a.alert.id, a.alert.route, len(a.alert.phones), a.alert.kind.value, a.note,
            )  # fmt: skip
            if a.state is AlertState.HELD:
                self.on_alert_due(a.alert.due)
        said = []
        for state, verb in ALERT_WORDS:
            got = [a.alert.id for a in admitted if a.state is state]
            if got:
                said.append(f"{verb} {' '.join(got)}")
        return said

    async def handle_exception(self, error: Exception) -> str:
        self.metrics.rejected.labels("internal_error").inc()
        # aiosmtpd's default answers a permanent 500 with the exception text; a fault of ours
        # is temporary (the client keeps the mail) and its details are for the log only.
        log.error("event=internal_error error=%r", error, exc_info=error)
        return str(replies.S451_INTERNAL)


# Heavy mail renders in a process of its own, one mail at a time. In a thread it held the GIL
# from the event loop, which needs it back after every socket call: ten 2 MB mails rendering in
# 6 threads held a trusted client's NOOP 2.6 s, in 1 thread still 0.3 s (p50), in a process 1 ms.
# One process for the handlers of the daemon (tests: of pytest), started at the first such mail.
_render_process: ProcessPoolExecutor | None = None
PR_SET_PDEATHSIG = 1  # prctl(2)


def render_process() -> ProcessPoolExecutor:
    global _render_process
    if _render_process is None:
        spawn = multiprocessing.get_context("spawn")  # never fork a process with threads
        _render_process = ProcessPoolExecutor(
            1, mp_context=spawn, initializer=_render_process_init, initargs=(os.getpid(),)
        )
    return _render_process


def _discard_render_process(pool: Executor) -> None:
    global _render_process
    if pool is _render_process:
        _render_process = None
        pool.shutdown(wait=False)


def _render_process_init(parent: int) -> None:
    """In the render process: SIGTERM, SIGINT and SIGHUP reach the whole process group but are the
    daemon's to act on (it drains, then ends this process); if the daemon dies without that, the
    kernel ends this process too (Linux), or it would wait for work forever."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before that
        os._exit(os.EX_OK)


def heavy(raw: bytes) -> bool:
    """Whether rendering this mail may take long (see OFFLOAD_BYTES)."""
    return (
        len(raw) > OFFLOAD_BYTES
        or raw.count(b"\n--") > OFFLOAD_DELIMITERS
        or raw.count(b"=?") > OFFLOAD_WORDS
    )


def _reason(exc: RelayError) -> str:
    """A metrics label for an error class: NoRouteError -> no_route."""
    name = type(exc).__name__.removesuffix("Error")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() or "error"


def _peer_ip(session: Session) -> str:
    return session.peer[0] if isinstance(session.peer, tuple) else ""
