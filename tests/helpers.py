"""Shared test helpers: configs, a deterministic id source, and rendering shortcuts."""

from __future__ import annotations

import asyncio
import email.message
import itertools
import smtplib
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from relay import pipeline
from relay.config import load as config_mod
from relay.config.schema import Config
from relay.daemon.main import Daemon
from relay.model import AlertState, InboundMail, State
from tests import spooldb
from tests.fakes import FakeProvider, wait_for

CORPUS = Path(__file__).parent / "corpus"
NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
PASSWORD = "T0p-s3cret,pw"

# The routes every daemon and pipeline test uses (no format fields: plain YAML).
ROUTES = r"""
aliases:
  oncall: ["+79990000001", "+79990000002"]
routes:
  - name: number
    match: {recipient: '^(?P<phones>\+?[0-9]{10,15})@sms\.example\.com$'}
  - name: oncall
    match: {recipient: '^oncall@sms\.example\.com$'}
    phones: [oncall]
    sender: ALERTS
  - name: ops
    match: {recipient: '^ops@sms\.example\.com$'}
    mode: email2sms
"""

# The same without the email2sms route (the provider's mail forwarding: SMTP only).
HTTP_ROUTES = ROUTES.split("  - name: ops")[0]

BASE_CONFIG = (
    f"""
provider:
  login: mylogin
  password: "{PASSWORD}"
  reply_address: replies@relay.example.com
"""
    + ROUTES
    + r"""  - name: legacy
    match: {recipient: '^send@send\.smscentre\.com$'}
    mode: passthrough
"""
)


def make_config(text: str = BASE_CONFIG) -> Config:
    return config_mod.parse(text, env={})


def counter(prefix: str = "id") -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"{prefix}{next(numbers)}"


def render(
    raw: bytes,
    rcpt: list[str],
    cfg: Config | None = None,
    mail_from: str = "app@example.com",
) -> pipeline.Rendered:
    return pipeline.render(
        raw,
        mail_from=mail_from,
        rcpt_tos=rcpt,
        config=cfg or make_config(),
        new_id=counter(),
        now=NOW,
        hostname="relay.test",
    )


def mail(body: str, subject: str = "Alert", charset: str = "utf-8", extra: str = "") -> bytes:
    head = f"From: app@example.com\r\nSubject: {subject}\r\nContent-Type: text/plain; charset={charset}\r\n"
    return (head + extra + "\r\n").encode("ascii") + body.encode(charset)


def message(
    body: str = "Disk /var is full", subject: str = "Alert", to: str = "79991234567@sms.example.com"
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "cron@db1.example.com"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(body)
    return msg


def smtplib_send(port: int, msg: EmailMessage, rcpts: list[str] | None = None) -> dict[str, Any]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        return client.send_message(msg, to_addrs=rcpts)


def sample(relay: Daemon, name: str, **labels: str) -> float | None:
    """A metric's sample as a scrape names it (a counter's ends in _total), read through
    prometheus_client's public registry API; None when there is no such sample."""
    return relay.metrics.registry.get_sample_value(name, labels)


async def wait_state(relay: Any, state: str) -> dict[str, Any]:
    for _ in range(500):
        r = await spooldb.row(relay)
        if r["state"] == state:
            return r
        await asyncio.sleep(0.02)
    raise AssertionError(f"state is {r['state']}, not {state}")


STORM_ROUTES = (
    ROUTES
    + r"""  - name: zabbix
    match: {recipient: '^zabbix@sms\.example\.com$'}
    phones: ["+79990000001", "+79990000002"]
    max_parts: 4
    storm:
      first_hold: 20  # no leading edge: these tests look inside a hold
      recovery: '^Resolved'
      alert_key: 'Original problem ID: (?P<key>\d+)'
  - name: nagios
    match: {recipient: '^nagios@sms\.example\.com$'}
    phones: ["+79990000002", "+79990000003"]
    storm:
      first_hold: 20
      recovery: 'RECOVERY'
      alert_key: 'Alert: (?P<key>\S+) is'
      max_parts: 4
"""
)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def until(relay: Daemon, clock: Clock, at: float) -> None:
    """Move simulated time to `at` and let the planner run once at that time."""
    assert relay.storm_runner is not None
    clock.now = max(clock.now, at)
    ticks = relay.storm_runner.ticks
    relay.storm_runner.wake()
    await wait_for(lambda: relay.storm_runner is not None and relay.storm_runner.ticks > ticks)


async def drain(relay: Daemon, clock: Clock, limit: int = 500) -> None:
    """Run simulated time forward until nothing is held or waiting in a dedup window."""
    assert relay.storm_runner is not None
    for _ in range(limit):
        await until(relay, clock, clock.now)
        nxt = relay.storm_runner.next_tick
        if nxt is None:
            return
        await until(relay, clock, nxt)
    raise AssertionError("storm did not drain")


RELAY_CONFIG = """
listen:
  host: 127.0.0.1
  port: 0
  networks: {networks}
  max_message_size: 65536
  max_recipients: 5
  max_connections: {max_connections}
{listen_extra}
provider:
  host: 127.0.0.1
  port: {provider_port}
  login: mylogin
  password: "{password}"
  reply_address: replies@relay.example.com
  outbox: {outbox}
{provider_extra}
spool: {spool}
delivery: {{concurrency: 2, timeout: {timeout}, min_backoff: {min_backoff}, max_backoff: {max_backoff}, max_age: {max_age},
            shutdown_timeout: 5}}
{extra}
"""


def relay_config_text(**values: object) -> str:
    """`spool`: a path (the SQLite file), or the YAML of the whole spool section."""
    routes = str(values.pop("routes", ROUTES))
    values.setdefault("min_backoff", 1)
    values.setdefault("max_backoff", 2)
    if isinstance(values.get("spool"), Path):
        values["spool"] = f"{{path: {values['spool']}}}"
    return RELAY_CONFIG.format(**values) + routes


async def serve_fake(fake: FakeProvider) -> tuple[asyncio.Server, int]:
    server = await asyncio.get_running_loop().create_server(fake.factory, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


class Raw:
    """A bare SMTP client over a socket, for what polite clients never send."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        raw = cls(reader, writer)
        await raw.reply()
        return raw

    async def reply(self) -> str:
        lines = []
        while True:
            line = (await asyncio.wait_for(self.reader.readline(), 10)).decode()
            lines.append(line.rstrip("\r\n"))
            if len(line) < 4 or line[3] != "-":
                return "\n".join(lines)

    async def cmd(self, data: bytes) -> str:
        self.writer.write(data)
        await self.writer.drain()
        return await self.reply()

    async def close(self) -> None:
        self.writer.close()

    @classmethod
    async def at_data(cls, port: int, rcpt: str = "79991234567@sms.example.com") -> Raw:
        """A session that has said EHLO, MAIL, RCPT and DATA: ready for message content."""
        raw = await cls.connect(port)
        for line in (b"EHLO x", b"MAIL FROM:<a@b.example>", f"RCPT TO:<{rcpt}>".encode(), b"DATA"):
            await raw.cmd(line + b"\r\n")
        return raw


def listen_extra(files: dict[str, Any], required: bool = False, tls_required: bool = False) -> str:
    return (f"  tls: {{cert: {files['pem']}, key: {files['pem']}, required: {str(tls_required).lower()}}}\n"
            f"  auth: {{users_file: {files['users']}, required: {str(required).lower()}}}\n")  # fmt: skip


def free_port() -> int:
    """A loopback port nothing listens on now (for a server that takes its port from a file)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def closed_port() -> Iterator[int]:
    """A port on every loopback address where nothing listens: bound, never listening, so a
    connection to it is refused (no fixed port that something else might use)."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        yield int(sock.getsockname()[1])


async def settled(relay: Daemon) -> bool:
    """Nothing more will go out by itself: no alert held, no message waiting or being sent."""
    held = await spooldb.count(relay, "alerts", state=AlertState.HELD.value)
    counts = await relay.spool.counts()
    busy = counts.get(State.QUEUED, 0) + counts.get(State.DEFERRED, 0) + counts.get(State.SENDING, 0)
    return held == 0 and busy == 0 and not relay.deliverer.in_flight


async def wait_settled(relay: Daemon, timeout: float = 10.0) -> None:
    """Wait (bounded) until `settled`: the state the storm tests assert on, not a time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await settled(relay):
        if loop.time() > deadline:
            raise AssertionError(f"relay did not settle within {timeout}s")
        await asyncio.sleep(0.05)


def body_text(msg: email.message.Message) -> str:
    """A single-part mail's body, transfer-decoded and decoded from its declared charset."""
    payload = msg.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(msg.get_content_charset() or "ascii")


def variant_of(m: InboundMail, cut: int, lines: list[str]) -> InboundMail:
    """A mail's text cut at `cut` with `lines` added: what a property test feeds a summariser."""
    text = (m.text[:cut] + "\n" + "\n".join(lines)).strip()
    return InboundMail(m.mail_from, m.rcpt_tos, m.subject, text, m.body_source, text, m.header_from)
