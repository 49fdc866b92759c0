"""The listener's policy and robustness: each bad input gets its documented reply, and the
daemon keeps serving."""

from __future__ import annotations

import asyncio
import smtplib
from typing import Any

import pytest

from relay import pipeline
from relay.errors import SpoolError
from tests import spooldb
from tests.fakes import FakeProvider, wait_for
from tests.helpers import Raw, message, smtplib_send
from tests.spooldb import states

pytestmark = pytest.mark.timeout(60)


async def test_banner_and_size_advertised(provider: tuple[FakeProvider, int], relay_factory: Any) -> None:
    relay = await relay_factory(provider[1])
    raw = await Raw.connect(relay.port)
    ehlo = await raw.cmd(b"EHLO client.example\r\n")
    assert "250-SIZE 65536" in ehlo
    assert (await raw.cmd(b"MAIL FROM:<a@b.example> SIZE=100000\r\n")).startswith("552")
    await raw.close()


async def test_client_outside_allowed_networks(
    provider: tuple[FakeProvider, int], relay_factory: Any
) -> None:
    relay = await relay_factory(provider[1], networks="[10.0.0.0/8]")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        await asyncio.to_thread(smtplib_send, relay.port, message())
    code, text = info.value.recipients["79991234567@sms.example.com"]
    assert (code, text) == (554, b"5.7.1 client host rejected: access denied")


@pytest.mark.parametrize(
    ("rcpt", "reply"),
    [
        ("nobody@sms.example.com", (550, b"5.1.1 no route for <nobody@sms.example.com>")),
        ("x@gmail.com", (550, b"5.1.1 no route for <x@gmail.com>")),
        (
            "0079991234567@sms.example.com",
            (
                553,
                b"5.1.3 <0079991234567@sms.example.com>: '0079991234567' is not a phone number: write it in international format, without 00",
            ),
        ),
    ],
)
async def test_recipient_checks(
    provider: tuple[FakeProvider, int], relay_factory: Any, rcpt: str, reply: tuple[int, bytes]
) -> None:
    relay = await relay_factory(provider[1])
    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        await asyncio.to_thread(smtplib_send, relay.port, message(), [rcpt])
    assert info.value.recipients[rcpt] == reply


async def test_too_many_recipients(provider: tuple[FakeProvider, int], relay_factory: Any) -> None:
    fake, port = provider
    relay = await relay_factory(port)
    rcpts = [f"7999000000{n}@sms.example.com" for n in range(7)]
    refused = await asyncio.to_thread(smtplib_send, relay.port, message(), rcpts)
    assert refused == {r: (452, b"4.5.3 too many recipients") for r in rcpts[5:]}
    await wait_for(lambda: len(fake.received) == 1)
    assert len(fake.received[0].sms.entries[0].phones) == 5


async def test_oversized_mail(provider: tuple[FakeProvider, int], relay_factory: Any) -> None:
    relay = await relay_factory(provider[1])
    with pytest.raises(smtplib.SMTPSenderRefused) as info:  # smtplib declares SIZE=: refused at MAIL
        await asyncio.to_thread(smtplib_send, relay.port, message("x" * 70000))
    assert info.value.smtp_code == 552
    raw = await Raw.connect(relay.port)  # no SIZE declared: refused after the data, nothing kept
    await raw.cmd(b"EHLO x\r\n")
    await raw.cmd(b"MAIL FROM:<a@b.example>\r\n")
    await raw.cmd(b"RCPT TO:<79991234567@sms.example.com>\r\n")
    await raw.cmd(b"DATA\r\n")
    raw.writer.write(b"Subject: big\r\n\r\n")
    raw.writer.write((b"y" * 998 + b"\r\n") * 80)
    assert (await raw.cmd(b".\r\n")).startswith("552")
    await raw.close()
    assert not await states(relay)


async def test_empty_mail_and_8bit_junk(provider: tuple[FakeProvider, int], relay_factory: Any) -> None:
    fake, port = provider
    relay = await relay_factory(port)
    raw = await Raw.at_data(relay.port)
    assert (
        await raw.cmd(b"\r\n.\r\n") == "554 5.6.0 nothing usable to send: the mail has no text and no subject"
    )
    # 8-bit bytes with no charset and no 8BITMIME: decoded best effort, accepted.
    await raw.cmd(b"MAIL FROM:<a@b.example>\r\n")
    await raw.cmd(b"RCPT TO:<79991234567@sms.example.com>\r\n")
    await raw.cmd(b"DATA\r\n")
    reply = await raw.cmd(b"Subject: junk\r\n\r\n\xff\xfe\x80 " + "Авария".encode("koi8-r") + b"\r\n.\r\n")
    assert reply.startswith("250 2.0.0 queued as ")
    await raw.close()
    await wait_for(lambda: len(fake.received) == 1)
    assert fake.received[0].sms.entries[0].text.endswith("Авария")


async def test_smuggling_bare_lf_dot_is_content(
    provider: tuple[FakeProvider, int], relay_factory: Any
) -> None:
    fake, port = provider
    relay = await relay_factory(port)
    raw = await Raw.at_data(relay.port)
    smuggle = (b"Subject: hi\r\n\r\nhello\n.\nMAIL FROM:<evil@x.example>\nRCPT TO:<79990000666@sms.example.com>\n"
               b"DATA\nsmuggled\n.\r\nMAIL FROM:<evil@x.example>\r\n")  # fmt: skip
    raw.writer.write(smuggle + b"RCPT TO:<79990000666@sms.example.com>\r\nDATA\r\nsmuggled\r\n.\r\n")
    await raw.writer.drain()
    # Only \r\n.\r\n ends DATA: everything before it, "transactions" included, is one message.
    assert (await raw.reply()).startswith("250 2.0.0 queued as")
    assert (await raw.cmd(b"QUIT\r\n")).startswith("221")
    await raw.close()
    await wait_for(lambda: len(fake.received) == 1)
    (got,) = fake.received
    assert got.sms.entries[0].phones == ("79991234567",)  # the smuggled number got nothing
    assert "smuggled" in got.sms.entries[0].text
    assert b"\n" not in got.raw.replace(b"\r\n", b"")  # no bare LF forwarded
    assert len(await states(relay)) == 1


async def test_long_line_and_bare_lf_content(provider: tuple[FakeProvider, int], relay_factory: Any) -> None:
    fake, port = provider
    relay = await relay_factory(port)
    raw = await Raw.at_data(relay.port)
    body = b"Subject: long\r\n\r\n" + b"word " * 1000 + b"\r\nline2\nline3\rline4\r\n.\r\n"
    assert (await raw.cmd(body)).startswith("250 2.0.0")
    await raw.close()
    await wait_for(lambda: len(fake.received) == 1)
    assert len(fake.received[0].sms.entries[0].text) <= 1000


async def test_disconnect_mid_data_queues_nothing(
    provider: tuple[FakeProvider, int], relay_factory: Any
) -> None:
    fake, port = provider
    relay = await relay_factory(port)
    raw = await Raw.at_data(relay.port)
    raw.writer.write(b"Subject: half\r\n\r\nhalf a mess")
    await raw.writer.drain()
    raw.writer.close()
    await wait_for(lambda: not relay.handler.sessions.open)  # the relay saw the hang-up
    assert not await states(relay)
    await asyncio.to_thread(smtplib_send, relay.port, message())  # still serving
    await wait_for(lambda: len(fake.received) == 1)


async def test_connection_cap(provider: tuple[FakeProvider, int], relay_factory: Any) -> None:
    relay = await relay_factory(provider[1], max_connections=2)
    a, b = await Raw.connect(relay.port), await Raw.connect(relay.port)
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
    assert (await reader.readline()).decode().startswith("421 4.7.0 too many connections")
    writer.close()
    await a.close()
    await b.close()
    await wait_for(lambda: not relay.handler.sessions.open)
    c = await Raw.connect(relay.port)  # room again
    await c.close()


async def test_internal_error_is_451_without_details(
    provider: tuple[FakeProvider, int], relay_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = await relay_factory(provider[1])

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire /var/secret/path")

    monkeypatch.setattr(pipeline, "render", boom)  # the module the handler calls
    with pytest.raises(smtplib.SMTPDataError) as info:
        await asyncio.to_thread(smtplib_send, relay.port, message())
    assert info.value.smtp_code == 451
    assert b"fire" not in info.value.smtp_error and b"secret" not in info.value.smtp_error


@pytest.mark.sqlite_only  # a full or corrupt SQLite file; tests/test_ha.py stops the database
async def test_spool_full_is_451_then_recovers(
    provider: tuple[FakeProvider, int], relay_factory: Any
) -> None:
    fake, port = provider
    relay = await relay_factory(port)
    # A real SQLITE_FULL: cap the database at its current size, then fill what space is left.
    await spooldb.cap_size(relay)
    for n in range(10_000):  # until the spool itself says it is full
        try:
            await spooldb.add_filler(relay, f"filler{n}")
        except SpoolError:
            break
    else:
        pytest.fail("the capped spool never filled up")
    with pytest.raises(smtplib.SMTPDataError) as info:
        await asyncio.to_thread(smtplib_send, relay.port, message("x " * 2000))
    assert (info.value.smtp_code, info.value.smtp_error) == (
        451,
        b"4.3.0 spool unavailable, message not accepted; try again later",
    )
    await spooldb.uncap_size(relay)
    await asyncio.to_thread(smtplib_send, relay.port, message("x " * 2000))
    await wait_for(lambda: len(fake.received) == 1)
    assert len([s for s in (await states(relay)).values() if s != "confirmed"]) == 1


async def test_many_messages_over_one_session_but_noop_loops_are_cut(
    provider: tuple[FakeProvider, int], relay_factory: Any
) -> None:
    fake, port = provider
    relay = await relay_factory(port)

    def many() -> None:
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
            for n in range(150):  # above command_call_limit (100): MAIL is not capped per session
                rcpt = f"7999{1_000_000 + n:07d}@sms.example.com"  # one phone would hit the flood rule
                client.sendmail("a@example.com", [rcpt], f"Subject: n\r\n\r\n{n}")

    await asyncio.to_thread(many)
    await wait_for(lambda: len(fake.received) == 150, timeout=30)
    raw = await Raw.connect(relay.port)
    replies = [await raw.cmd(b"NOOP\r\n") for _ in range(101)]
    assert replies[99].startswith("250") and replies[100].startswith("421 4.7.0 NOOP sent too many times")
    await raw.close()


async def _connect_from(source: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    banner = (await asyncio.wait_for(reader.readline(), 10)).decode()
    return reader, writer, banner


async def test_a_flood_from_an_untrusted_address_never_locks_out_a_trusted_client(
    provider: tuple[FakeProvider, int], relay_factory: Any
) -> None:
    relay = await relay_factory(provider[1], networks="[127.0.0.1/32]", max_connections=8)
    flood = [await _connect_from("127.0.0.2", relay.port) for _ in range(6)]
    banners = [b for _, _, b in flood]
    assert sum(b.startswith("220") for b in banners) == 2  # the untrusted share: a quarter of 8
    assert all(b.startswith("421 4.7.0") for b in banners if not b.startswith("220"))
    trusted = [await _connect_from("127.0.0.1", relay.port) for _ in range(6)]
    assert all(b.startswith("220") for _, _, b in trusted)  # the rest of the slots are theirs
    for _, w, _ in flood + trusted:
        w.close()


async def test_one_address_may_not_hold_every_slot(
    provider: tuple[FakeProvider, int], relay_factory: Any
) -> None:
    relay = await relay_factory(provider[1], listen_extra="  max_connections_per_address: 3\n")
    held = [await _connect_from("127.0.0.3", relay.port) for _ in range(4)]
    assert [b[:3] for _, _, b in held] == ["220", "220", "220", "421"]
    assert "from your address" in held[3][2]
    _, w, other = await _connect_from("127.0.0.4", relay.port)  # another client: room
    assert other.startswith("220")
    for _, writer, _ in [*held, (None, w, "")]:
        writer.close()


async def test_rset_counts_against_the_call_limit(
    provider: tuple[FakeProvider, int], relay_factory: Any
) -> None:
    relay = await relay_factory(provider[1])
    raw = await Raw.connect(relay.port)
    replies = [await raw.cmd(b"RSET\r\n") for _ in range(101)]
    assert replies[99].startswith("250") and replies[100].startswith("421 4.7.0 RSET sent too many times")
    await raw.close()
