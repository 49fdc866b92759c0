"""The reply address's connection slots cannot be starved by idle clients (issue 22, item 1),
and RSET is capped as the example config says (item 6): real sockets from several loopback
addresses (Linux routes all of 127.0.0.0/8 to lo)."""

from __future__ import annotations

import asyncio
import smtplib
from typing import Any

import pytest

from tests.helpers import Raw, message

UNTRUSTED = "  untrusted_connections: 4\n  untrusted_mail_timeout: {timeout}\n"
REPLY = (
    b"From: SMSC.RU <noreply@smsc.ru>\r\nSubject: Re: sms\r\n\r\nOK - 1 SMS, ID - r19a3f0c2b1d-5e0f2a9c\r\n"
)


async def _connect(port: int, source: str) -> Raw:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    raw = Raw(reader, writer)
    greeting = await raw.reply()
    assert greeting.startswith("220"), greeting
    return raw


async def _closed_with(raw: Raw, limit: float = 30.0) -> str:
    """What the server said before it hung up (bounded: the test fails rather than hangs)."""
    said = []
    async with asyncio.timeout(limit):
        while line := await raw.reader.readline():
            said.append(line.decode().rstrip())
    return "\n".join(said)


async def _relay(relay_factory: Any, provider: Any, timeout: int) -> Any:
    _fake, port = provider
    return await relay_factory(
        port, networks="[127.0.0.1/32]", listen_extra=UNTRUSTED.format(timeout=timeout)
    )


async def test_a_full_untrusted_share_makes_room_for_the_provider(relay_factory: Any, provider: Any) -> None:
    relay = await _relay(relay_factory, provider, timeout=600)
    idle = [await _connect(relay.port, "127.0.0.2")]
    for source in ("127.0.0.2", "127.0.0.3", "127.0.0.3"):
        idle.append(await _connect(relay.port, source))
        assert (await idle[-1].cmd(b"NOOP\r\n")).startswith("250")  # the first stays the idlest
    # The share (4) is full of idle connections; the provider's reply server comes from elsewhere.
    replier = await _connect(relay.port, "127.0.0.4")
    assert "421 4.7.0 closing an idle connection to make room" in await _closed_with(idle[0])
    for line in (b"EHLO smsc.ru", b"MAIL FROM:<noreply@smsc.ru>", b"RCPT TO:<replies@relay.example.com>"):
        assert (await replier.cmd(line + b"\r\n")).startswith("250"), line
    assert (await replier.cmd(b"DATA\r\n")).startswith("354")
    assert (await replier.cmd(REPLY + b".\r\n")).startswith("250")
    for other in idle[1:]:  # the others keep their slots
        assert (await other.cmd(b"NOOP\r\n")).startswith("250")
    for raw in [*idle, replier]:
        await raw.close()


async def test_an_untrusted_address_gets_few_slots(relay_factory: Any, provider: Any) -> None:
    relay = await _relay(relay_factory, provider, timeout=600)
    held = [await _connect(relay.port, "127.0.0.2") for _ in range(2)]
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.port, local_addr=("127.0.0.2", 0))
    third = Raw(reader, writer)
    assert "421 4.7.0 too many connections from your address" in await _closed_with(third)
    await third.close()
    trusted = [await _connect(relay.port, "127.0.0.1") for _ in range(3)]  # trusted: its own cap
    for raw in [*held, *trusted]:
        await raw.close()


async def test_an_untrusted_session_without_mail_is_closed(relay_factory: Any, provider: Any) -> None:
    relay = await _relay(relay_factory, provider, timeout=1)
    untrusted = await _connect(relay.port, "127.0.0.2")
    trusted = await _connect(relay.port, "127.0.0.1")
    said = ""
    for _ in range(100):  # NOOPs keep an idle timer alive, never the MAIL deadline
        untrusted.writer.write(b"NOOP\r\n")
        line = (await asyncio.wait_for(untrusted.reader.readline(), 30)).decode()
        if not line.startswith("250"):
            said = line
            break
        await asyncio.sleep(0.1)
    assert said.startswith("421 4.4.2 no MAIL within the time allowed"), said
    assert (await trusted.cmd(b"NOOP\r\n")).startswith("250")  # a trusted client has no deadline
    await trusted.close()
    await untrusted.close()


async def test_rset_between_mails_is_not_capped_rset_loops_are(relay_factory: Any, provider: Any) -> None:
    _fake, port = provider
    relay = await relay_factory(port, listen_extra="  command_call_limit: 5\n")

    def many_mails() -> list[int]:
        codes = []
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
            for n in range(8):  # more mails than the limit, with an RSET before each
                codes.append(client.rset()[0])
                client.send_message(message(f"mail {n}"))
        return codes

    assert await asyncio.to_thread(many_mails) == [250] * 8
    raw = await Raw.connect(relay.port)
    for _ in range(5):
        assert (await raw.cmd(b"RSET\r\n")).startswith("250")
    assert (await raw.cmd(b"RSET\r\n")).startswith("421 4.7.0 RSET sent too many times without a mail")
    await raw.close()


@pytest.fixture(autouse=True)
def _linux_loopback() -> None:
    import socket

    with socket.socket() as s:  # every 127/8 address is local on Linux; say so if not
        s.bind(("127.0.0.2", 0))
