"""A fake SMS Centre SMTP server: parses each command like the provider and can misbehave."""

from __future__ import annotations

import asyncio
import email
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aiosmtpd.smtp import SMTP, Envelope, Session

from relay.config.schema import DkimKey
from relay.delivery import dkim
from relay.parsers import command as command_parser


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    body: str  # the decoded text/plain body
    command: command_parser.Command | None  # None for an email2sms mail

    @property
    def sms(self) -> command_parser.Command:
        """The command line this mail carried (an email2sms mail has none)."""
        assert self.command is not None, "not a command mail"
        return self.command

    @property
    def relay_id(self) -> str:
        if self.command:
            return self.command.request_id
        return email.message_from_bytes(self.raw)["X-Smsc-Relay-Id"]


@dataclass
class FakeProvider:
    """Scriptable: `replies` are used (and consumed) for DATA before the default 250;
    `drop_on_data` closes the connection instead of answering that many times."""

    replies: list[str] = field(default_factory=list)
    drop_on_data: int = 0
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    sessions: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    # As a provider with an idle timeout: close a connection that comes back for another mail
    # (at its MAIL), that many times.
    close_reused: int = 0
    slow_text: str = ""  # a mail whose body holds this is answered after `slow_delay`, or when
    slow_delay: float = 0.0  # `slow_gate` is set (a test that shows order, not time)
    slow_gate: asyncio.Event | None = None
    slow_busy: int = 0  # slow mails being answered right now
    _served: dict[int, int] = field(default_factory=dict)  # session -> mails taken on it

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.close_reused > 0 and self._served.get(id(session), 0) > 0:
            self.close_reused -= 1
            assert server.transport is not None
            server.transport.close()
            return "421 4.4.2 idle timeout, closing"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str | None:
        self._served[id(session)] = self._served.get(id(session), 0) + 1
        if self.slow_text and self.slow_text.encode() in base64_decoded(envelope.original_content or b""):
            self.slow_busy += 1
            try:
                if self.slow_gate is not None:
                    await asyncio.wait_for(self.slow_gate.wait(), 60)
                else:
                    await asyncio.sleep(self.slow_delay)
            finally:
                self.slow_busy -= 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.drop_on_data > 0:
            self.drop_on_data -= 1
            assert server.transport is not None
            server.transport.close()
            return None
        if self.replies:
            return self.replies.pop(0)
        raw = envelope.original_content or b""
        msg = email.message_from_bytes(raw)
        payload = msg.get_payload(decode=True)
        body = payload.decode(msg.get_content_charset() or "ascii") if isinstance(payload, bytes) else ""
        rcpt = envelope.rcpt_tos[0]
        cmd = command_parser.parse(body) if rcpt.startswith("send@") else None
        self.received.append(Received(envelope.mail_from or "", list(envelope.rcpt_tos), raw, body, cmd))
        self.arrived.set()
        return "250 2.0.0 Ok: queued"

    def factory(self) -> SMTP:
        self.sessions += 1
        return SMTP(self, hostname="fake-provider", enable_SMTPUTF8=True)

    def ids(self) -> list[str]:
        return [r.relay_id for r in self.received]


def base64_decoded(raw: bytes) -> bytes:
    msg = email.message_from_bytes(raw)
    payload = msg.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


async def wait_for(predicate: object, timeout: float = 10.0, interval: float = 0.02) -> None:
    """Poll a condition with a deadline: the tests' only way to wait for async effects."""
    assert callable(predicate)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


@dataclass
class ReplyingProvider(FakeProvider):
    """Answers every command mail with test=1 like the provider: a reply mail to the envelope
    sender, sent to the relay's listener. `answer` makes the reply text from what arrived."""

    relay_port: int = 0
    answer: object = None  # Callable[[Received], str | None]; default: OK - n SMS, ID - id
    charset: str = "koi8-r"
    signer: DkimKey | None = None  # sign replies with this key, as the provider would
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str | None:
        status = await super().handle_DATA(server, session, envelope)
        if status and status.startswith("250") and self.received and self.received[-1].command:
            got = self.received[-1]
            if got.command is not None and got.command.options.test == "1":
                task = asyncio.create_task(self._reply(got))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        return status

    async def _reply(self, got: Received) -> None:
        import aiosmtplib

        assert got.command is not None
        answer = self.answer if callable(self.answer) else None
        phones = sum(len(e.phones) for e in got.command.entries)
        text = answer(got) if answer else f"OK - {phones} SMS, ID - {got.relay_id}"
        if text is None:
            return
        original = email.message_from_bytes(got.raw)
        mail = (
            (
                f"From: SMSC.RU <noreply@smsc.ru>\r\nTo: {got.mail_from}\r\nSubject: Re: {original['Subject']}\r\n"
                f"In-Reply-To: {original['Message-ID']}\r\nMIME-Version: 1.0\r\n"
                f'Content-Type: text/plain; charset="{self.charset}"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n'
            ).encode("ascii")
            + text.encode(self.charset)
            + b"\r\n"
        )
        if self.signer is not None:
            mail = dkim.sign(self.signer, mail)
        await aiosmtplib.send(mail, sender="noreply@smsc.ru", recipients=[got.mail_from],
                              hostname="127.0.0.1", port=self.relay_port)  # fmt: skip


@dataclass
class ProviderLimits:
    """The provider's duplicate and flood rules, the strictest reading of its pages: the same
    text to a phone again within a minute is refused (error 9), and so is a 51st message to a
    phone in a run of messages less than 2 minutes apart (the SMTP page's figure)."""

    clock: Callable[[], float] = time.time
    last_text: dict[tuple[str, str], float] = field(default_factory=dict)
    runs: dict[str, list[float]] = field(default_factory=dict)
    rejections: list[str] = field(default_factory=list)
    accepted: list[tuple[float, tuple[str, ...], str]] = field(default_factory=list)

    def check(self, entries: Sequence[tuple[Sequence[str], str]]) -> str | None:
        """None if the provider takes the request; else its ERROR text."""
        now = self.clock()
        for phones, text in entries:
            for phone in phones:
                seen = self.last_text.get((phone, " ".join(text.split())))
                if seen is not None and now - seen < 60:
                    return self._reject(f"ERROR = 9 (duplicate request, wait a minute) {phone}")
                run = self.runs.get(phone, [])
                if run and now - run[-1] < 120 and len(run) >= 50:
                    return self._reject(f"ERROR = 8 (flood: more than 50 messages to {phone})")
        for phones, text in entries:
            for phone in phones:
                self.last_text[(phone, " ".join(text.split()))] = now
                run = self.runs.setdefault(phone, [])
                if run and now - run[-1] >= 120:
                    run.clear()
                run.append(now)
            self.accepted.append((now, tuple(phones), text))
        return None

    def _reject(self, text: str) -> str:
        self.rejections.append(text)
        return text

    def answer(self, got: Received) -> str:
        """For ReplyingProvider(answer=...): the provider's reply mail text."""
        assert got.command is not None
        error = self.check([(e.phones, e.text) for e in got.command.entries])
        if error:
            return f"{error.split(')')[0]}), ID - {got.relay_id}"
        phones = sum(len(e.phones) for e in got.command.entries)
        return f"OK - {phones} SMS, ID - {got.relay_id}"
