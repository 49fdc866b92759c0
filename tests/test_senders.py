"""The provider-side SMTP client: mirrors in order, STARTTLS when offered or required."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import SMTP, Envelope, Session

from relay.delivery.smtp import SmtpTransport
from relay.delivery.transport import Outgoing
from relay.errors import DeliveryError
from tests.fakes import FakeProvider
from tests.helpers import closed_port

pytestmark = pytest.mark.timeout(30)
MAIL = b"From: a@b.example\r\nTo: send@send.smscentre.com\r\nSubject: x\r\n\r\nl:p:1::,,,1:79991234567:hi\r\n"


class TlsProvider(FakeProvider):
    """Records whether each mail came over TLS."""

    tls: list[bool]

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str | None:
        self.tls.append(session.ssl is not None)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
async def tls_provider() -> AsyncIterator[tuple[TlsProvider, int, ssl.SSLContext]]:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    fake = TlsProvider()
    fake.tls = []
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(fake, hostname="fake", tls_context=server_ctx), "127.0.0.1", 0
    )
    yield fake, int(server.sockets[0].getsockname()[1]), client_ctx
    server.close()


async def test_failover_to_the_next_mirror(provider: tuple[FakeProvider, int]) -> None:
    fake, port = provider
    # Nothing listens on 127.0.0.2 at that port: refused, then the next host is tried.
    sender = SmtpTransport(("127.0.0.2", "127.0.0.1"), port, timeout=5, starttls="auto")
    accepted = await sender.send(Outgoing("r1", "a@b.example", "send@send.smscentre.com", MAIL))
    assert accepted.reply.startswith("2.0.0")
    await sender.close()
    assert len(fake.received) == 1


async def test_all_mirrors_down_is_a_temporary_connection_error() -> None:
    with closed_port() as port:
        sender = SmtpTransport(("127.0.0.2", "127.0.0.3"), port, timeout=2, starttls="auto")
        with pytest.raises(DeliveryError) as info:
            await sender.send(Outgoing("r1", "a@b.example", "send@send.smscentre.com", MAIL))
    assert info.value.temporary and info.value.connection
    assert isinstance(info.value, ConnectionError)  # the builtin it stands for
    assert f"127.0.0.2:{port}" in info.value.text and f"127.0.0.3:{port}" in info.value.text


async def test_starttls_used_when_offered(tls_provider: Any) -> None:
    fake, port, client_ctx = tls_provider
    sender = SmtpTransport(("127.0.0.1",), port, timeout=5, starttls="auto", tls_context=client_ctx)
    await sender.send(Outgoing("r1", "a@b.example", "send@send.smscentre.com", MAIL))
    await sender.send(Outgoing("r2", "a@b.example", "send@send.smscentre.com", MAIL))
    await sender.close()
    assert fake.tls == [True, True] and sender.connections == 1  # one TLS connection, reused


async def test_untrusted_certificate_is_not_a_plaintext_fallback(tls_provider: Any) -> None:
    fake, port, _ = tls_provider
    sender = SmtpTransport(("127.0.0.1",), port, timeout=5, starttls="auto")  # system CAs: not trusted
    with pytest.raises(DeliveryError) as info:
        await sender.send(Outgoing("r1", "a@b.example", "send@send.smscentre.com", MAIL))
    assert info.value.temporary and info.value.connection
    assert fake.received == []


async def test_starttls_required_but_not_offered(provider: tuple[FakeProvider, int]) -> None:
    fake, port = provider
    sender = SmtpTransport(("127.0.0.1",), port, timeout=5, starttls="require")
    with pytest.raises(DeliveryError) as info:
        await sender.send(Outgoing("r1", "a@b.example", "send@send.smscentre.com", MAIL))
    assert "does not offer STARTTLS" in info.value.text
    assert fake.received == []
