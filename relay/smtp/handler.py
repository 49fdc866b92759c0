"""The aiosmtpd handler: SMTP hooks only. Policy at RCPT, the pure core at DATA, and the one
place where exceptions become SMTP replies (DESIGN.md sections 5 and 7)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from relay import ids, replies
from relay.accept.service import AcceptService, Arrival
from relay.config.current import Current
from relay.config.schema import Config
from relay.errors import RelayError
from relay.metrics import Metrics
from relay.routing import check_recipient
from relay.smtp.auth import Authenticator
from relay.smtp.intake import MAX_REPLY_BYTES, ReplyIntake, check_reply_size
from relay.smtp.ratelimit import RateLimiter
from relay.smtp.render import Renderer
from relay.smtp.session import RelayEnvelope, RelaySMTP, peer_of, tls_context
from relay.smtp.slots import Sessions, in_networks

log = logging.getLogger("relay.listener")
TRANSACTION_CALLS = 1 << 30


class Handler:
    def __init__(
        self,
        current: Current,
        accept: AcceptService,
        *,
        metrics: Metrics,
        intake: ReplyIntake,
        hostname: str,
        sessions: Sessions,
        clock: Callable[[], float] = time.time,
        renderer: Renderer | None = None,
    ) -> None:
        self.current = current  # the config in force, replaced as a whole on SIGHUP
        self.accept = accept
        self.metrics = metrics
        self.intake = intake
        self.reply_limiter = RateLimiter(lambda: self.current.config.provider.reply_rate_limit)
        self.hostname = hostname
        self.sessions = sessions
        self.clock = clock  # storm control's clock (tests simulate time)
        self.renderer = renderer or Renderer(hostname)
        self.tls_context = tls_context(current.config.listen)
        self.authenticator = Authenticator(current.config.listen.users)

    @property
    def config(self) -> Config:
        return self.current.config

    def reconfigure(self, config: Config) -> None:
        """SIGHUP, before the daemon replaces the config in force: TLS and users for new sessions
        (raises, and nothing changes, for a certificate that cannot be loaded)."""
        self.tls_context = tls_context(config.listen)
        self.sessions.configure(config.listen)
        self.authenticator = Authenticator(config.listen.users)

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
            raw = envelope.original_content or b""
            if isinstance(raw, str):
                raw = raw.encode("utf-8", "surrogateescape")
            sms_rcpts = [r for r in envelope.rcpt_tos if not self._is_reply_address(r)]
            if len(sms_rcpts) < len(envelope.rcpt_tos):
                answer = await self._replies(session, envelope, raw, sms=bool(sms_rcpts))
                if answer is not None:
                    return answer
            mail_from, peer = envelope.mail_from or "", peer_of(session)
            arrival = Arrival(mail_from, tuple(sms_rcpts), raw, peer, self.clock())
            try:
                rendered = await self.renderer.render(arrival, self.config)
            except RelayError as exc:
                return str(self.accept.refuse(arrival, exc).reply)
            return str((await self.accept.accept(rendered, arrival)).reply)
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

    async def _replies(self, session: Session, envelope: Envelope, raw: bytes, *, sms: bool) -> str | None:
        """Take the part of a mail addressed to the reply address: the reply to give when that
        was all of it, None when SMS recipients remain (a trusted client's mail to both: the
        SMS part goes on; what no provider reply looks like is not read as one)."""
        try:
            unkept = envelope.unkept if isinstance(envelope, RelayEnvelope) else 0
            check_reply_size(raw, unkept or None)  # unkept: RelaySMTP only counted it
            tags = [ids.split_tag(r)[1] for r in envelope.rcpt_tos if self._is_reply_address(r)]
            take = self.intake.take(raw, envelope.mail_from or "", self.config, [t for t in tags if t])
            await asyncio.shield(take)
        except RelayError as exc:
            if not sms:
                return str(exc.reply)
            log.warning("event=reply_refused peer=%s reply=%r", peer_of(session), str(exc.reply))
        return None if sms else str(replies.S250_ACCEPTED.with_text("reply recorded"))

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


def _peer_ip(session: Session) -> str:
    return session.peer[0] if isinstance(session.peer, tuple) else ""
