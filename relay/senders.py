"""How a provider mail leaves: over SMTP to the provider, or into the dry-run outbox.

Both satisfy `Sender`. Failures are DeliveryError with `temporary` set from the reply class
(4xx, timeouts and refused connections are temporary; a 5xx to MAIL/RCPT/DATA is permanent)
and `connection` set when the fault is the upstream's, not the message's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from pathlib import Path
from typing import Protocol

import aiosmtplib

from relay.formatters import mime

log = logging.getLogger("relay.delivery")


class DeliveryError(Exception):
    def __init__(
        self, text: str, *, temporary: bool, code: int | None = None, connection: bool = False
    ) -> None:
        super().__init__(text)
        self.text = text
        self.temporary = temporary
        self.code = code
        self.connection = connection  # the upstream is unusable now: pause, don't blame the message


class Sender(Protocol):
    # False for the outbox: it gets the mail as spooled, password masked, so that a dry run
    # leaves no secret on disk.
    needs_credentials: bool

    async def send(self, relay_id: str, mail_from: str, rcpt_to: str, message: bytes) -> str:
        """Deliver one mail; return the upstream's reply text or raise DeliveryError."""

    async def close(self) -> None: ...


class SmtpSender:
    """One persistent connection to the provider, reused across messages; reconnects on error.

    Hosts are tried in order (the provider's mirrors). After any error the connection is
    dropped, never reused: a late reply must not be paired with the next command.
    """

    needs_credentials = True

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
                    raise DeliveryError(
                        f"{host} does not offer STARTTLS (required)", temporary=True, connection=True
                    )
                self.connections += 1
                return smtp
            except (aiosmtplib.SMTPException, OSError) as exc:
                smtp.close()
                errors.append(f"{host}:{self.port}: {_describe(exc)}")
        raise DeliveryError("; ".join(errors) or "no hosts", temporary=True, connection=True)

    async def send(self, relay_id: str, mail_from: str, rcpt_to: str, message: bytes) -> str:
        if self._smtp is None or not self._smtp.is_connected:
            self._smtp = await self._connect()
        smtp = self._smtp
        try:
            _, reply = await smtp.sendmail(mail_from, [rcpt_to], message)
            return reply
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0]
            self._drop()
            raise DeliveryError(_describe(refused), temporary=refused.code < 500, code=refused.code) from None
        except aiosmtplib.SMTPResponseException as exc:
            self._drop()
            # 421 closes the session: the upstream's problem, not this message's.
            raise DeliveryError(
                _describe(exc), temporary=exc.code < 500, code=exc.code, connection=exc.code == 421
            ) from None
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            self._drop()
            raise DeliveryError(_describe(exc), temporary=True, connection=True) from None

    def _drop(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None

    async def close(self) -> None:
        if self._smtp is not None and self._smtp.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, asyncio.TimeoutError):
                await asyncio.wait_for(self._smtp.quit(), timeout=5)
        self._drop()


class OutboxSender:
    """Dry run: each provider mail becomes <id>.eml (exact, password masked) and <id>.txt
    (readable) in the outbox directory, written atomically."""

    needs_credentials = False

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, relay_id: str, mail_from: str, rcpt_to: str, message: bytes) -> str:
        try:
            await asyncio.to_thread(self._write, relay_id, mail_from, rcpt_to, message)
        except OSError as exc:
            raise DeliveryError(
                f"outbox {self.directory}: {exc.strerror}", temporary=True, connection=True
            ) from exc
        return f"2.0.0 written to outbox as {relay_id}.eml"

    def _write(self, relay_id: str, mail_from: str, rcpt_to: str, message: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        readable = f"X-Envelope-From: {mail_from}\nX-Envelope-To: {rcpt_to}\n" + mime.readable(message)
        # The .eml last: whoever watches for it (a script, a test) finds the .txt beside it.
        for name, data in ((f"{relay_id}.txt", readable.encode("utf-8")), (f"{relay_id}.eml", message)):
            tmp = self.directory / f".{name}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(self.directory / name)

    async def close(self) -> None:
        return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}".strip()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or exc.__class__.__name__
