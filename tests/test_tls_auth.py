"""STARTTLS and AUTH: passwords only inside TLS, authenticated clients may relay from anywhere."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from typing import Any

import pytest

from relay.cli import main as cli
from relay.smtp import auth
from tests.fakes import FakeProvider, wait_for
from tests.helpers import Raw, listen_extra, message

pytestmark = pytest.mark.timeout(60)


def send(
    port: int, context: ssl.SSLContext, user: str | None, password: str = "s3cret-pw", body: str = "Disk full"
) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.starttls(context=context)
        if user:
            client.login(user, password)
        client.send_message(message(body))


def test_password_hashes() -> None:
    stored = auth.hash_password("pw")
    assert stored.startswith("scrypt$16384$8$1$")
    assert auth.verify("pw", stored) and not auth.verify("pW", stored)
    assert not auth.verify("pw", "scrypt$garbage")


async def test_authenticated_client_outside_networks_may_relay(
    provider: tuple[FakeProvider, int], relay_factory: Any, tls_files: dict[str, Any]
) -> None:
    fake, port = provider
    relay = await relay_factory(port, networks="[10.0.0.0/8]", listen_extra=listen_extra(tls_files))
    with pytest.raises(smtplib.SMTPRecipientsRefused):  # TLS alone does not make a client trusted
        await asyncio.to_thread(send, relay.port, tls_files["client"], None)
    with pytest.raises(smtplib.SMTPAuthenticationError) as bad:
        await asyncio.to_thread(send, relay.port, tls_files["client"], "alerts", "wrong")
    assert bad.value.smtp_code == 535
    await asyncio.to_thread(send, relay.port, tls_files["client"], "alerts")
    # cached verification (another text: the same one within a minute would be a repeat)
    await asyncio.to_thread(send, relay.port, tls_files["client"], "alerts", "s3cret-pw", "Disk still full")
    await wait_for(lambda: len(fake.received) == 2)


async def test_no_auth_without_tls(
    provider: tuple[FakeProvider, int], relay_factory: Any, tls_files: dict[str, Any]
) -> None:
    relay = await relay_factory(provider[1], listen_extra=listen_extra(tls_files))
    raw = await Raw.connect(relay.port)
    ehlo = await raw.cmd(b"EHLO x\r\n")
    assert "STARTTLS" in ehlo and "AUTH" not in ehlo
    assert (await raw.cmd(b"AUTH PLAIN AGFsZXJ0cwBzM2NyZXQtcHc=\r\n")).startswith("538 5.7.11")
    await raw.close()


async def test_auth_required_even_inside_networks(
    provider: tuple[FakeProvider, int], relay_factory: Any, tls_files: dict[str, Any]
) -> None:
    fake, port = provider
    relay = await relay_factory(port, listen_extra=listen_extra(tls_files, required=True))
    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        await asyncio.to_thread(send, relay.port, tls_files["client"], None)
    assert next(iter(info.value.recipients.values())) == (530, b"5.7.0 authentication required")
    await asyncio.to_thread(send, relay.port, tls_files["client"], "alerts")
    await wait_for(lambda: len(fake.received) == 1)


async def test_tls_required_before_mail(
    provider: tuple[FakeProvider, int], relay_factory: Any, tls_files: dict[str, Any]
) -> None:
    relay = await relay_factory(provider[1], listen_extra=listen_extra(tls_files, tls_required=True))
    raw = await Raw.connect(relay.port)
    await raw.cmd(b"EHLO x\r\n")
    assert (await raw.cmd(b"MAIL FROM:<a@b.example>\r\n")).startswith("530")
    await raw.close()
    await asyncio.to_thread(send, relay.port, tls_files["client"], None)


async def test_starttls_plaintext_injection_is_discarded(
    provider: tuple[FakeProvider, int], relay_factory: Any, tls_files: dict[str, Any]
) -> None:
    relay = await relay_factory(provider[1], listen_extra=listen_extra(tls_files))
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
    await reader.readline()
    writer.write(b"EHLO x\r\n")
    while not (await reader.readline()).startswith(b"250 "):
        pass
    writer.write(b"STARTTLS\r\nHELP\r\n")  # HELP is injected in the clear, after STARTTLS
    await writer.drain()
    assert (await reader.readline()).startswith(b"220")
    await writer.start_tls(tls_files["client"], server_hostname="relay.test")
    writer.write(b"NOOP\r\n")
    await writer.drain()
    # CVE-2024-34083: the first reply inside TLS must be the NOOP's, not the injected HELP's.
    assert (await reader.readline()) == b"250 OK\r\n"
    writer.write(b"QUIT\r\n")
    await reader.readline()
    writer.close()
    await writer.wait_closed()


def test_passwd_command(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("pw1\n"))
    assert cli.main(["passwd", "zabbix"]) == 0
    user, stored = capsys.readouterr().out.strip().split(":", 1)
    assert user == "zabbix" and auth.verify("pw1", stored)
