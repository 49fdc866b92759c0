"""The SMTP transport: provider mail over a reused aiosmtplib connection to the gateway.

Failures are DeliveryError from the reply class: 4xx, timeouts and refused connections are
temporary, a 5xx to MAIL/RCPT/DATA is permanent, and 421 or a broken connection is the
upstream's fault, not the message's.
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
    UpstreamDeferred,
    UpstreamRefused,
    UpstreamTimeout,
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
        if self._smtp is None or not self._smtp.is_connected:
            self._smtp = await self._connect()
        smtp = self._smtp
        try:
            _, reply = await smtp.sendmail(mail.mail_from, [mail.rcpt_to], mail.message)
            return Accepted(reply)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0]
            self._drop()
            # A refused recipient is about this message, never the connection's fault.
            if refused.code >= 500:
                raise UpstreamRefused(_describe(refused), code=refused.code) from None
            raise UpstreamDeferred(_describe(refused), code=refused.code) from None
        except aiosmtplib.SMTPResponseException as exc:
            self._drop()
            raise DeliveryError.from_reply(_describe(exc), exc.code) from None
        except TimeoutError as exc:  # aiosmtplib's timeouts are TimeoutErrors too
            self._drop()
            raise UpstreamTimeout(_describe(exc)) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            self._drop()
            raise UpstreamUnavailable(_describe(exc)) from None

    def _drop(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None

    async def close(self) -> None:
        if self._smtp is not None and self._smtp.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, asyncio.TimeoutError):
                await asyncio.wait_for(self._smtp.quit(), timeout=5)
        self._drop()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}".strip()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or exc.__class__.__name__
