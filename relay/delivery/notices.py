"""Tell the original sender that its SMS failed for good: an RFC 3464 delivery status notice.

Optional (config `notify`), off by default. Sent with the null envelope sender and
`Auto-Submitted: auto-replied` (RFC 3834), so that no mail system answers it in turn, and never
to a null or auto-generated sender. Best effort: a notice that cannot be sent is logged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, Message
from email.utils import format_datetime, make_msgid
from typing import Protocol

import aiosmtplib

from relay.config.schema import NotifyConfig
from relay.model import State
from relay.spool.interface import Messages, Row, Storm

log = logging.getLogger("relay.notify")


def build(row: Row, *, reporting_host: str, sender: str, now: datetime) -> bytes:
    """The notice for one failed request (pure: no I/O), as CRLF bytes, built with the stdlib
    `email` package under policy.SMTP: a reason from the network (Cyrillic provider texts
    included) is encoded, never written raw, and every value is one line, so it cannot add a
    header or a part."""

    def one_line(value: str) -> str:
        return " ".join(value.split())

    reason = one_line(row.last_error or row.state.value)
    recipients = [one_line(r) for r in row.rcpt_tos]
    # Undelivered: the provider took it, a phone's operator did not deliver it (status.php).
    undelivered = row.state is State.UNDELIVERED
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = one_line(sender)
    msg["To"] = one_line(row.mail_from)
    msg["Subject"] = (("SMS not delivered: " if undelivered else "SMS not sent: ") + reason)[:200]
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(domain=reporting_host)
    msg["Auto-Submitted"] = "auto-replied"  # RFC 3834: no mail system answers it
    msg.set_content(
        f"Your message to {', '.join(recipients)} "
        + ("was sent as an SMS but not delivered.\n\n" if undelivered else "could not be sent as an SMS.\n\n")
        + f"Reason: {reason}\nState: {row.state.value} after {row.attempts} attempt(s)\n"
        f"Relay id: {row.id} (give it to the relay's operator)\n",
        cte="quoted-printable",
    )
    status = EmailMessage(policy=policy.SMTP)
    status["Content-Type"] = "message/delivery-status"
    groups: list[Message | str] = [
        _fields({"Reporting-MTA": f"dns; {reporting_host}", "X-Smsc-Relay-Id": row.id})
    ]
    status.set_payload(
        groups
        + [
            _fields(
                {
                    "Final-Recipient": f"rfc822; {r}",
                    "Action": "failed",
                    "Status": "5.0.0",
                    "Diagnostic-Code": f"smtp; {reason}",
                }
            )
            for r in recipients
        ]
    )
    msg.make_mixed()
    msg.attach(status)
    msg.set_type("multipart/report")  # RFC 3464
    msg.set_param("report-type", "delivery-status")
    return msg.as_bytes()


def _fields(values: dict[str, str]) -> Message:
    """One group of delivery-status fields."""
    block = Message(policy=policy.SMTP)
    for name, value in values.items():
        block[name] = value
    return block


def should_notify(row: Row, reply_address: str) -> bool:
    sender = row.mail_from.strip().strip("<>").lower()  # aiosmtpd gives the null sender as "<>"
    return bool(sender) and sender != reply_address.lower() and not sender.startswith("mailer-daemon@")


class NoticeSpool(Messages, Storm, Protocol):
    """A notice names the message and, for a digest, the senders of its alerts."""


class Notifier:
    def __init__(
        self, spool: NoticeSpool, config: NotifyConfig, *, reporting_host: str, reply_address: str
    ) -> None:
        self.spool = spool
        self.config = config
        self.reporting_host = reporting_host
        self.reply_address = reply_address
        self.tasks: set[asyncio.Task[None]] = set()
        self.requested = 0  # failures reported to it so far (for stats and tests)

    def failed(self, relay_id: str) -> None:
        """Fire and forget: the caller's work (SMTP reply, delivery) does not wait for it."""
        self.requested += 1
        task = asyncio.create_task(self._send(relay_id))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send(self, relay_id: str) -> None:
        row = await self.spool.get(relay_id)
        if row is None:
            return
        if row.mail_from:
            await self._notice(relay_id, row)
            return
        # A storm digest has no one sender: tell each sender of an alert in it.
        for mail_from, rcpts in (await self.spool.alert_senders(relay_id)).items():
            await self._notice(relay_id, dataclasses.replace(row, mail_from=mail_from, rcpt_tos=rcpts))

    def operator(self, subject: str, text: str) -> bool:
        """A notice for the operator (notify.operator), fire and forget; False when none is set."""
        if not self.config.operator:
            return False
        task = asyncio.create_task(self._operator(subject, text))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return True

    async def _operator(self, subject: str, text: str) -> None:
        cfg = self.config
        msg = EmailMessage(policy=policy.SMTP)
        msg["From"] = cfg.sender or f"smsc-relay@{self.reporting_host}"
        msg["To"] = cfg.operator
        msg["Subject"] = " ".join(subject.split())[:200]
        msg["Date"] = format_datetime(datetime.now(UTC))
        msg["Message-ID"] = make_msgid(domain=self.reporting_host)
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834
        msg.set_content(text, cte="quoted-printable")
        try:
            async with aiosmtplib.SMTP(hostname=cfg.smarthost, port=cfg.port, timeout=30) as smtp:
                await smtp.sendmail("", [cfg.operator], msg.as_bytes())
            log.info("event=operator_notified to=%s subject=%r", cfg.operator, subject)
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.warning("event=notify_failed to=%s error=%r", cfg.operator, str(exc))
        except Exception:
            log.exception("event=notify_failed to=%s", cfg.operator)

    async def _notice(self, relay_id: str, row: Row) -> None:
        if not should_notify(row, self.reply_address):
            return
        cfg = self.config
        sender = cfg.sender or f"smsc-relay@{self.reporting_host}"
        msg = build(row, reporting_host=self.reporting_host, sender=sender, now=datetime.now(UTC))
        try:
            # The null envelope sender (<>): nothing bounces or answers a notice. aiosmtplib's
            # send() refuses an empty sender for raw messages; sendmail() writes MAIL FROM:<>.
            async with aiosmtplib.SMTP(hostname=cfg.smarthost, port=cfg.port, timeout=30) as smtp:
                await smtp.sendmail("", [row.mail_from], msg)
            log.info("event=notified id=%s to=%s", relay_id, row.mail_from)
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.warning("event=notify_failed id=%s to=%s error=%r", relay_id, row.mail_from, str(exc))
        except Exception:  # a fire-and-forget task: an error must reach the log, not vanish
            log.exception("event=notify_failed id=%s", relay_id)
