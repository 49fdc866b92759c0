"""Heavy mail does not hold the event loop: DATA is read in chunks exactly as aiosmtpd reads it
line by line, a mail to the reply address only is counted past the reply bound instead of kept,
and heavy mail renders in the render thread while other clients are answered."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from hypothesis import example, given, settings
from hypothesis import strategies as st

from relay.config import load as config_mod
from relay.config.schema import ListenConfig
from relay.daemon.main import Daemon
from relay.smtp import render as render_mod
from relay.smtp.intake import MAX_REPLY_BYTES
from relay.smtp.session import RelayEnvelope, RelaySMTP
from relay.smtp.slots import Sessions
from tests import spooldb
from tests.fakes import FakeProvider
from tests.helpers import PASSWORD, Raw, relay_config_text
from tests.spooldb import states

LINE_LIMIT = 24  # small, so that generated mail has lines over it


class Recorder:
    """A DATA hook that keeps what it was given; `keep` also makes it a relay handler that
    bounds what is kept."""

    def __init__(self, keep: int | None = None) -> None:
        self.got: list[tuple[bytes | None, int]] = []
        self.keep = keep

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        unkept = envelope.unkept if isinstance(envelope, RelayEnvelope) else 0
        self.got.append((envelope.original_content, unkept))
        return "250 OK recorded"

    def data_keep_limit(self, envelope: Envelope) -> int | None:
        return self.keep


class StockSMTP(SMTP):
    line_length_limit = LINE_LIMIT


class SmallRelaySMTP(RelaySMTP):
    line_length_limit = LINE_LIMIT


async def _serve(factory: Callable[[], asyncio.Protocol]) -> tuple[asyncio.Server, int]:
    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


async def _transcript(port: int, pieces: list[bytes]) -> list[str]:
    """Every reply to EHLO, MAIL, RCPT, DATA, the pieces written one by one, an end of data (in
    case they had none), then QUIT."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for cmd in (b"EHLO c\r\n", b"MAIL FROM:<a@b>\r\n", b"RCPT TO:<c@d>\r\n", b"DATA\r\n"):
        writer.write(cmd)
    for piece in pieces:
        writer.write(piece)
        await writer.drain()
    writer.write(b"\r\n.\r\nQUIT\r\n")
    out = (await asyncio.wait_for(reader.read(), 10)).decode().split("\r\n")
    writer.close()
    await writer.wait_closed()
    return [line for line in out[1:] if line]  # not the greeting


async def _compare(pieces: list[bytes], limit: int | None, keep: int) -> None:
    stock, relay, keeping = Recorder(), Recorder(), Recorder(keep)
    options: dict[str, Any] = dict(
        data_size_limit=limit, enable_SMTPUTF8=True, decode_data=False, hostname="h"
    )
    sessions = Sessions(ListenConfig())
    servers = [
        await _serve(lambda: StockSMTP(stock, ident="x", **options)),
        *[
            await _serve(lambda h=h: SmallRelaySMTP(  # type: ignore[misc]
                h, sessions=sessions, ident="x", tls_context=None, require_starttls=False, timeout=30,
                auth_require_tls=True, authenticator=None, command_call_limit={"*": 10_000}, **options,
            ))
            for h in (relay, keeping)
        ],
    ]  # fmt: skip
    try:
        said = [await _transcript(port, pieces) for _, port in servers]
    finally:
        for server, _ in servers:
            server.close()
            await server.wait_closed()
    assert said[1] == said[0]
    assert said[2] == said[0]
    assert relay.got == stock.got
    kept = [(c, 0) if c is None or len(c) <= keep else (b"", len(c)) for c, _ in stock.got]
    assert keeping.got == kept


PIECES = st.sampled_from([b"\r\n", b".", b"\r", b"\n", b"a", b"..", b"\r\n.", b"x" * 9, b".\r\n"])
DATA = st.lists(st.tuples(PIECES, st.sampled_from([1, 1, 1, 3, 30])).map(lambda t: t[0] * t[1]), max_size=40)


@settings(max_examples=150)
# A line just over LINE_LIMIT that takes the mail over the limit is 552, one further over is 500.
@example(body=b"x" * (LINE_LIMIT - 1), end=b"\r\n.\r\n", cuts=[], limit=20, keep=0)
@example(body=b"x" * LINE_LIMIT, end=b"\r\n.\r\n", cuts=[3], limit=20, keep=0)
@example(body=b"x" * (LINE_LIMIT + 1), end=b"\r\n.\r\n", cuts=[], limit=20, keep=0)
@given(
    body=DATA.map(b"".join),
    end=st.sampled_from([b"\r\n.\r\n", b".\r\n", b"\r\n.\r\nNOOP\r\n", b"\r\n.\r\nDATA\r\n"]),
    cuts=st.lists(st.integers(1, 40), max_size=6),
    limit=st.sampled_from([None, 20, 60, 200]),
    keep=st.sampled_from([0, 5, 40]),
)
def test_data_is_read_as_aiosmtpd_reads_it(
    body: bytes, end: bytes, cuts: list[int], limit: int | None, keep: int
) -> None:
    """Same replies (250, 500 line too long, 552 too much), same content (dots undoubled), the
    same commands after the end of data, however the client's writes cut the mail."""
    payload, pieces, at = body + end, [], 0
    for cut in cuts:
        pieces.append(payload[at : at + cut])
        at += cut
    pieces.append(payload[at:])
    asyncio.run(_compare(pieces, limit, keep))


@pytest.fixture
async def big_relay(
    tmp_path: Path, spool_yaml: str, provider: tuple[FakeProvider, int]
) -> AsyncIterator[Daemon]:
    """A relay that takes 2 MB mails, as the listener's default does (the tests' config: 64 KB)."""
    text = relay_config_text(
        networks="[127.0.0.0/8]", max_connections=20, provider_port=provider[1], password=PASSWORD,
        outbox="null", spool=spool_yaml, timeout=5, max_age=3600, listen_extra="", provider_extra="", extra="",
    ).replace("max_message_size: 65536", "max_message_size: 2097152")  # fmt: skip
    path = tmp_path / "relay.yaml"
    path.write_text(text)
    daemon = Daemon(path, config_mod.load(path, env={}))
    await daemon.start()
    yield daemon
    await daemon.stop()


async def test_a_big_mail_to_the_reply_address_is_counted_not_kept(big_relay: Daemon) -> None:
    line = b"OK - 1 SMS, ID - nosuchid\r\n"
    mail = b"From: x@smsc.ru\r\nSubject: r\r\n\r\n" + (line + b".dotted\r\n") * (2_000_000 // 36)
    size = len(mail)
    stuffed = mail.replace(b"\r\n.", b"\r\n..")  # as a client sends it
    raw = await Raw.at_data(big_relay.port, rcpt="replies@relay.example.com")
    said = await raw.cmd(stuffed + b".\r\n")
    assert (
        said == f"552 5.3.4 provider replies are small: this mail is {size} bytes (at most {MAX_REPLY_BYTES})"
    )
    assert (await raw.cmd(b"NOOP\r\n")).startswith("250")  # the session goes on
    await raw.close()
    stored = await spooldb.count(big_relay, "replies")
    assert stored == 0 and not await states(big_relay)


async def test_a_big_mail_to_the_reply_address_and_a_phone_goes_to_the_phone_only(big_relay: Daemon) -> None:
    """A trusted client's mail to both: kept whole for the SMS, and still no provider reply."""
    mail = b"From: x@smsc.ru\r\nSubject: r\r\n\r\n" + b"OK - 1 SMS, ID - nosuchid\r\n" * 1500  # 40 KB
    raw = await Raw.connect(big_relay.port)
    for line in (b"EHLO x", b"MAIL FROM:<a@b.example>", b"RCPT TO:<replies@relay.example.com>",
                 b"RCPT TO:<79991234567@sms.example.com>", b"DATA"):  # fmt: skip
        await raw.cmd(line + b"\r\n")
    assert (await raw.cmd(mail + b".\r\n")).startswith("250 2.0.0 queued as")
    await raw.close()
    stored = await spooldb.count(big_relay, "replies")
    assert stored == 0 and len(await states(big_relay)) == 1


async def test_only_a_mail_to_the_reply_address_alone_is_bounded(big_relay: Daemon) -> None:
    handler = big_relay.handler
    assert handler is not None

    def envelope(*rcpts: str) -> Envelope:
        e = Envelope()
        e.rcpt_tos = list(rcpts)
        return e

    reply, sms = "replies@relay.example.com", "79991234567@sms.example.com"
    assert handler.data_keep_limit(envelope(reply)) == MAX_REPLY_BYTES
    assert handler.data_keep_limit(envelope("Replies+abcdefghijklmnop@relay.example.com")) == MAX_REPLY_BYTES
    assert handler.data_keep_limit(envelope(reply, sms)) is None  # the SMS part needs the mail
    assert handler.data_keep_limit(envelope(sms)) is None


class Gate(ThreadPoolExecutor):
    """The render thread, held at a gate: `entered` is set on the loop when a render waits."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(1)
        self.loop, self.entered, self.open = loop, asyncio.Event(), threading.Event()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        def held() -> Any:
            self.loop.call_soon_threadsafe(self.entered.set)
            self.open.wait(30)
            return fn(*args, **kwargs)

        return super().submit(held)


def _parts(n: int) -> bytes:
    body = "".join(f"--b\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n" for i in range(n))
    return f'Subject: parts\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n{body}--b--\r\n'.encode()


HEAVY = {
    "large": b"Subject: large\r\n\r\n" + b"disk full on db1\r\n" * 4000,  # 72 KB
    "many parts": _parts(60),  # 3 KB
    "many encoded words": b"Subject: "
    + b"\r\n ".join(b"=?utf-8?q?w?=" for _ in range(150))
    + b"\r\n\r\nx\r\n",
}


@pytest.mark.parametrize("kind", sorted(HEAVY))
async def test_other_clients_are_answered_while_a_heavy_mail_renders(big_relay: Daemon, kind: str) -> None:
    assert big_relay.handler is not None
    gate = big_relay.handler.renderer.pool = Gate(asyncio.get_running_loop())
    heavy = await Raw.at_data(big_relay.port)
    heavy.writer.write(HEAVY[kind] + b".\r\n")
    heavy_said = asyncio.ensure_future(heavy.reply())
    await asyncio.wait_for(gate.entered.wait(), 10)  # the heavy mail is in the render thread
    other = await Raw.connect(big_relay.port)
    assert (await other.cmd(b"NOOP\r\n")).startswith("250")
    small = await Raw.at_data(big_relay.port)
    assert (await small.cmd(b"Subject: small\r\n\r\nping\r\n.\r\n")).startswith("250 2.0.0 queued as")
    assert not heavy_said.done()
    gate.open.set()
    assert (await heavy_said).startswith("250 2.0.0 queued as")
    for raw in (heavy, other, small):
        await raw.close()
    gate.shutdown()


@pytest.mark.parametrize(
    ("mail", "heavy"),
    [(b"Subject: disk\r\n\r\nfull\r\n", False), (_parts(49), False), (_parts(50), True),
     (b"Subject: " + b"=?utf-8?q?w?= " * 100 + b"\r\n\r\nx\r\n", False),
     (b"Subject: " + b"=?utf-8?q?w?= " * 101 + b"\r\n\r\nx\r\n", True),
     (b"x" * render_mod.OFFLOAD_BYTES, False), (b"x" * (render_mod.OFFLOAD_BYTES + 1), True)],
)  # fmt: skip
def test_what_is_heavy(mail: bytes, heavy: bool) -> None:
    assert render_mod.heavy(mail) is heavy
