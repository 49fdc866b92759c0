"""The SMTP transport: provider mail over a reused aiosmtplib connection to the gateway.

Failures are DeliveryError from the reply class: 4xx, timeouts and refused connections are
temporary, a 5xx to MAIL/RCPT/DATA is permanent. A connection that cannot be made is the
upstream's outage (UpstreamUnavailable: the pool pauses); an established session that breaks,
times out or answers 421 is SessionLost: this attempt only (the next connection tells whether
the upstream is down). A reused connection failing on MAIL is redialled at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl

import aiosmtplib

from relay.delivery.transport import Accepted, Outgoing
from relay.errors import (
    DeliveryError,
    SessionLost,
    UpstreamDeferred,
    UpstreamRefused,
    UpstreamUnavailable,
)

log = logging.getLogger("relay.delivery")


class SmtpTransport:
    """One persistent connection to the provider, reused across messages; reconnects on error.

    Hosts are tried in order (the provider's mirrors). After any error the connection is
    dropped, never reused: a late reply must not be paired with the next command.
    """

    needs_credentials = True
    carries_mail = True

    def __init__(
        self,
        hosts: tuple[str, ...],
        port: int,
        *,
        timeout: float,
        starttls: str,
        local_hostname: str | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.hosts = hosts
        self.port = port
        self.timeout = timeout
        self.starttls = starttls  # "auto" (when offered), "require" or "off"
        self.local_hostname = local_hostname
        self.tls_context = tls_context
        self._smtp: aiosmtplib.SMTP | None = None
        self.connections = 0  # opened so far, for tests and stats
        self.redials = 0  # reused connections found closed at MAIL and dialled again at once

    async def _connect(self) -> aiosmtplib.SMTP:
        errors = []
        for host in self.hosts:
            smtp = aiosmtplib.SMTP(
                hostname=host,
                port=self.port,
                timeout=self.timeout,
                start_tls=False,
                local_hostname=self.local_hostname,
                tls_context=self.tls_context,
            )
            try:
                await smtp.connect()
                await smtp.ehlo()  # connect() alone does not learn the extensions
                if self.starttls != "off" and smtp.supports_extension("starttls"):
                    await smtp.starttls()
                elif self.starttls == "require":
                    smtp.close()
                    raise UpstreamUnavailable(f"{host} does not offer STARTTLS (required)")
                self.connections += 1
                return smtp
            except (aiosmtplib.SMTPException, OSError) as exc:
                smtp.close()
                errors.append(f"{host}:{self.port}: {_describe(exc)}")
        raise UpstreamUnavailable("; ".join(errors) or "no hosts")

    async def send(self, mail: Outgoing) -> Accepted:
        fresh = self._smtp is None or not self._smtp.is_connected
        if fresh:
            self._smtp = await self._connect()
        assert self._smtp is not None
        try:
            await self._smtp.mail(mail.mail_from)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            self._drop()
            closed = not isinstance(exc, aiosmtplib.SMTPResponseException) or exc.code == 421
            if fresh or not closed:
                raise _session_error(exc, uncertain=False) from None
            # A reused connection that fails on its first command was closed by the provider
            # (its idle timeout) while it waited: nothing was sent on it, so dial again at once.
            log.info("event=redial reason=%r", _describe(exc))
            self.redials += 1
            self._smtp = await self._connect()
            try:
                await self._smtp.mail(mail.mail_from)
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as again:
                self._drop()
                raise _session_error(again, uncertain=False) from None
        smtp = self._smtp
        try:
            await smtp.rcpt(mail.rcpt_to)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            self._drop()
            raise _session_error(exc, uncertain=False) from None
        try:
            _, reply = await smtp.data(mail.message)
            return Accepted(reply)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            self._drop()
            # Past the end of DATA the provider may have taken it before the session broke.
            raise _session_error(exc, uncertain=True) from None

    def _drop(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None

    async def close(self) -> None:
        if self._smtp is not None and self._smtp.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, asyncio.TimeoutError):
                await asyncio.wait_for(self._smtp.quit(), timeout=5)
        self._drop()


def _session_error(exc: BaseException, *, uncertain: bool) -> DeliveryError:
    """An error on an established session. A refusal is the message's (5xx fails it, 4xx defers
    it); a broken session, 421 or a timeout is SessionLost: this attempt only, no pause."""
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code != 421:
        if exc.code >= 500:
            return UpstreamRefused(_describe(exc), code=exc.code)
        return UpstreamDeferred(_describe(exc), code=exc.code)
    code = exc.code if isinstance(exc, aiosmtplib.SMTPResponseException) else None
    return SessionLost(_describe(exc), code=code, uncertain=uncertain)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}".strip()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or exc.__class__.__name__
