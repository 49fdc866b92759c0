"""Fixtures: a fake provider and the relay daemon, both on port 0 in the test's own loop."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from hypothesis import HealthCheck, settings

from relay.config import load as config_mod
from relay.daemon.main import Daemon
from relay.smtp import auth
from tests.fake_api import FakeApi
from tests.fakes import FakeProvider, ReplyingProvider
from tests.helpers import HTTP_ROUTES, PASSWORD, closed_port, relay_config_text, serve_fake
from tests.pg import Cluster, cluster, new_database
from tests.relays import write_pg_config

# No property test times the machine: hypothesis's per-example deadline and its "too slow to
# generate" check are wall-clock assertions that a busy 2-core machine fails at random.
settings.register_profile("relay", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("relay")


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


BACKENDS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test on a relay runs on both spool backends, but those marked sqlite_only (they
    look at the SQLite file itself: its pages, a corrupt file, PRAGMAs)."""
    if "backend" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("sqlite_only") is not None
        metafunc.parametrize("backend", BACKENDS[:1] if only else BACKENDS)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[str]:
    """One throwaway PostgreSQL cluster for the run (tests/pg.py), started when first needed."""
    with cluster() as c:
        yield c.dsn


@pytest.fixture
def pg_dsn(pg_cluster: str) -> str:
    """A fresh database on the run's cluster, for one test."""
    return new_database(pg_cluster)


@pytest.fixture
def own_cluster() -> Iterator[Cluster]:
    """A cluster this test may stop (the run's shared one must stay up)."""
    with cluster() as c:
        yield c


@pytest.fixture
async def relays(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start in-process relays on one PostgreSQL database: start(name, provider_port, dsn,
    clock=None, **config), each with its config from tests/relays.write_pg_config."""
    started: list[Daemon] = []

    async def start(name: str, provider_port: int, dsn: str, clock: Any = None, **extra: Any) -> Daemon:
        path = write_pg_config(tmp_path, name, provider_port, dsn, **extra)
        daemon = Daemon(path, config_mod.load(path, env={}), **({"clock": clock} if clock else {}))
        await daemon.start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        await daemon.stop()


@pytest.fixture
def spool_yaml(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The relay's spool section on the test's backend: a SQLite file, or a new database."""
    if backend == "sqlite":
        return f"{{path: {tmp_path / 'spool.db'}}}"
    dsn = request.getfixturevalue("pg_dsn")
    return f'{{backend: postgresql, dsn: "{dsn}", relay_name: test}}'


@pytest.fixture
async def relay_factory(tmp_path: Path, spool_yaml: str) -> AsyncIterator[Callable[..., object]]:
    started: list[Daemon] = []

    async def start(provider_port: int, **overrides: object) -> Daemon:
        values: dict[str, object] = {
            "networks": "[127.0.0.0/8]",
            "max_connections": 20,
            "provider_port": provider_port,
            "password": PASSWORD,
            "outbox": "null",
            "spool": spool_yaml,
            "timeout": 5,
            "max_age": 3600,
            "listen_extra": "",
            "provider_extra": "",
            "extra": "",
        }
        wiring: dict[str, Any] = {k: overrides.pop(k) for k in ("clock", "dnsfunc") if k in overrides}
        values.update(overrides)
        path = tmp_path / "relay.yaml"
        path.write_text(relay_config_text(**values))
        daemon = Daemon(path, config_mod.load(path, env={}), **wiring)
        await daemon.start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.server is not None and daemon.server.is_serving():
            await daemon.stop()


@pytest.fixture
async def api() -> AsyncIterator[Callable[..., Any]]:
    runners: list[web.AppRunner] = []

    async def start(fake: FakeApi | None = None) -> tuple[FakeApi, str]:
        fake = fake or FakeApi()
        runner, url = await fake.start()
        runners.append(runner)
        return fake, url

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def http_relay(relay_factory: Any, api: Any) -> AsyncIterator[Callable[..., Any]]:
    """A relay with transport: http to a fake API (and its SMTP gateway on a closed port)."""

    async def start(
        fake: FakeApi | None = None,
        api_extra: str = "",
        urls: Callable[[str], str] | None = None,
        **overrides: Any,
    ) -> tuple[FakeApi, Daemon]:
        fake, url = await api(fake)
        where = urls(url) if urls else f"  api_url: {url}\n"
        overrides.setdefault("routes", HTTP_ROUTES)
        with closed_port() as port:
            relay = await relay_factory(
                port, provider_extra=f"  transport: http\n{where}  test: false\n{api_extra}", **overrides
            )
        return fake, relay

    yield start


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
