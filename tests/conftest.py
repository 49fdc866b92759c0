"""Fixtures: a fake provider and the relay daemon, both on port 0 in the test's own loop."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from relay import auth
from relay import config as config_mod
from relay.daemon import Daemon
from tests.fakes import FakeProvider, ReplyingProvider
from tests.helpers import PASSWORD, ROUTES

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
spool: {{path: {spool}}}
delivery: {{concurrency: 2, timeout: {timeout}, min_backoff: 1, max_backoff: 2, max_age: {max_age},
            shutdown_timeout: 5}}
{extra}
"""


def relay_config_text(**values: object) -> str:
    routes = str(values.pop("routes", ROUTES))
    return RELAY_CONFIG.format(**values) + routes


async def serve_fake(fake: FakeProvider) -> tuple[asyncio.Server, int]:
    server = await asyncio.get_running_loop().create_server(fake.factory, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


@pytest.fixture
async def provider() -> AsyncIterator[tuple[FakeProvider, int]]:
    fake = FakeProvider()
    server, port = await serve_fake(fake)
    yield fake, port
    server.close()
    await server.wait_closed()


@pytest.fixture
async def replying_relay(relay_factory: Any) -> AsyncIterator[Callable[..., Any]]:
    """Start a provider that answers like the real one, and a relay wired to it (both ways)."""
    started: list[tuple[ReplyingProvider, asyncio.Server]] = []

    async def start(
        fake: ReplyingProvider | None = None, **overrides: object
    ) -> tuple[ReplyingProvider, Daemon]:
        fake = fake or ReplyingProvider()
        server, port = await serve_fake(fake)
        relay = await relay_factory(port, **overrides)
        fake.relay_port = relay.port
        started.append((fake, server))
        return fake, relay

    yield start
    for fake, server in started:
        await asyncio.gather(*fake.tasks, return_exceptions=True)
        server.close()


RelayFactory = Callable[..., "asyncio.Future[Daemon]"]


@pytest.fixture
async def relay_factory(tmp_path: Path) -> AsyncIterator[Callable[..., object]]:
    started: list[Daemon] = []

    async def start(provider_port: int, **overrides: object) -> Daemon:
        values: dict[str, object] = {
            "networks": "[127.0.0.0/8]",
            "max_connections": 20,
            "provider_port": provider_port,
            "password": PASSWORD,
            "outbox": "null",
            "spool": tmp_path / "spool.db",
            "timeout": 5,
            "max_age": 3600,
            "listen_extra": "",
            "provider_extra": "",
            "extra": "",
        }
        clock = overrides.pop("clock", None)
        values.update(overrides)
        path = tmp_path / "relay.yaml"
        path.write_text(relay_config_text(**values))
        daemon = Daemon(path, config_mod.load(path, env={}), **({"clock": clock} if clock else {}))
        await daemon.start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.server is not None and daemon.server.is_serving():
            await daemon.stop()


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_files(ca: trustme.CA, tmp_path: Path) -> dict[str, Any]:
    cert = ca.issue_cert("relay.test", "127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "relay.pem"))
    (tmp_path / "users").write_text(f"# SMTP AUTH users\nalerts:{auth.hash_password('s3cret-pw')}\n")
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return {"pem": tmp_path / "relay.pem", "users": tmp_path / "users", "client": client}
