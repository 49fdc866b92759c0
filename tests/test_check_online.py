"""`smsc-relay check --online` against real servers: the fake SMTP gateway (plain and STARTTLS),
the fake HTTP API, a throwaway PostgreSQL cluster; refused ports, untrusted certificates, a
wrong password. One line per probe; no password ever printed."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trustme
from aiosmtpd.smtp import SMTP

from relay.cli import check
from relay.cli import main as cli
from relay.errors import Exit
from relay.spool import pgdb
from tests.fakes import FakeProvider
from tests.helpers import HTTP_ROUTES, PASSWORD, closed_port, relay_config_text

pytestmark = pytest.mark.timeout(60)
PG_PASSWORD = "pg-s3cret-pw"  # in the DSN: the test cluster trusts local users, so it is not asked for


def _config(tmp_path: Path, port: int, *, spool: str = "", password: str = PASSWORD, **values: Any) -> Path:
    text = relay_config_text(
        networks="[127.0.0.0/8]", max_connections=20, provider_port=port, password=password,
        outbox=values.pop("outbox", "null"), spool=spool or f"{{path: {tmp_path / 'spool.db'}}}", timeout=5,
        max_age=3600, listen_extra="", provider_extra=values.pop("provider_extra", ""), extra="", **values,
    )  # fmt: skip
    path = tmp_path / "relay.yaml"
    path.write_text(text)
    return path


async def _check(path: Path, capsys: pytest.CaptureFixture[str], *more: str) -> tuple[int, str, str]:
    """The command as an operator types it; its asyncio.run in a thread, the fakes in this loop."""
    code = await asyncio.to_thread(cli.main, ["check", "--online", "-c", str(path), "--timeout", "5", *more])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
async def tls_provider(tls_files: dict[str, Any]) -> AsyncIterator[tuple[FakeProvider, int]]:
    """The fake gateway offering STARTTLS with a certificate of the test CA for 127.0.0.1."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files["pem"])
    fake = FakeProvider()

    def session() -> SMTP:
        fake.sessions += 1
        return SMTP(fake, hostname="fake-provider", tls_context=context)

    server = await asyncio.get_running_loop().create_server(session, "127.0.0.1", 0)
    yield fake, int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()


async def test_smtp_ok_and_the_sqlite_spool(
    provider: tuple[FakeProvider, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, port = provider
    code, out, _ = await _check(_config(tmp_path, port), capsys)
    lines = out.splitlines()
    assert code == Exit.OK, out
    assert lines[0].endswith(": OK (3 route(s); provider 127.0.0.1)")  # the offline line, as before
    assert (
        f"provider SMTP 127.0.0.1:{port}: OK (EHLO; STARTTLS not offered: mail goes in the clear)" == lines[1]
    )
    assert lines[2].startswith(
        f"spool SQLite {tmp_path / 'spool.db'}: OK (not made yet; {tmp_path} is writable"
    )
    assert len(lines) == 3
    assert fake.sessions == 1 and fake.received == []  # connected, sent nothing
    assert PASSWORD not in out


async def test_smtp_refused_says_what_to_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with closed_port() as port:
        code, out, _ = await _check(_config(tmp_path, port), capsys)
    assert code == Exit.TEMPFAIL
    assert (
        f"provider SMTP 127.0.0.1:{port}: FAILED: connection refused — is the host/port in provider.host and"
        " provider.port right, and may this machine reach it (firewall)?"
    ) in out.splitlines()
    assert "spool SQLite" in out and ": OK (" in out  # the other probes still run and say OK


async def test_starttls_with_a_trusted_certificate(
    tls_provider: tuple[FakeProvider, int],
    ca: trustme.CA,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake, port = tls_provider
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))  # as an operator trusts a private CA
    text = (
        _config(tmp_path, port)
        .read_text()
        .replace("shutdown_timeout: 5}", "shutdown_timeout: 5, starttls: require}")
    )
    (tmp_path / "relay.yaml").write_text(text)
    code, out, _ = await _check(tmp_path / "relay.yaml", capsys)
    assert code == Exit.OK, out
    assert f"provider SMTP 127.0.0.1:{port}: OK (EHLO, STARTTLS)" in out.splitlines()
    assert fake.sessions == 1 and fake.received == []


async def test_starttls_with_an_untrusted_certificate_fails(
    tls_provider: tuple[FakeProvider, int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake, port = tls_provider
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)  # the system's CAs: the test CA is not one
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    code, out, _ = await _check(_config(tmp_path, port), capsys)
    assert code == Exit.TEMPFAIL
    (line,) = [x for x in out.splitlines() if x.startswith("provider SMTP")]
    assert line.startswith(f"provider SMTP 127.0.0.1:{port}: FAILED: TLS certificate not trusted (")
    assert "certificate verify failed" in line and "SSL_CERT_FILE" in line
    assert fake.received == []  # no fallback to plain text


async def test_starttls_required_but_not_offered(
    provider: tuple[FakeProvider, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, port = provider
    text = (
        _config(tmp_path, port)
        .read_text()
        .replace("shutdown_timeout: 5}", "shutdown_timeout: 5, starttls: require}")
    )
    (tmp_path / "relay.yaml").write_text(text)
    code, out, _ = await _check(tmp_path / "relay.yaml", capsys)
    assert code == Exit.TEMPFAIL
    assert f"127.0.0.1:{port}: FAILED: the server offers no STARTTLS and delivery.starttls is require" in out


async def test_a_silent_server_times_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)  # no greeting
    port = int(server.sockets[0].getsockname()[1])
    try:
        code = await asyncio.to_thread(
            cli.main, ["check", "--online", "-c", str(_config(tmp_path, port)), "--timeout", "1"]
        )
    finally:
        server.close()
    out = capsys.readouterr().out
    assert code == Exit.TEMPFAIL
    assert f"provider SMTP 127.0.0.1:{port}: FAILED: timed out after 1 s — nothing answered" in out


async def test_http_ok_shows_the_balance(
    api: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, url = await api()
    with closed_port() as port:  # transport http: the SMTP gateway is not probed
        path = _config(
            tmp_path,
            port,
            routes=HTTP_ROUTES,
            provider_extra=f"  transport: http\n  api_url: {url}\n  test: false\n",
        )
        code, out, err = await _check(path, capsys)
    assert code == Exit.OK, out
    assert f"provider API {url}: OK (balance 100.00)" in out.splitlines()
    assert "provider SMTP" not in out
    assert [method for method, _ in fake.forms] == ["balance"]
    assert PASSWORD not in out + err and all(PASSWORD not in u for u in fake.urls)  # POST body only


async def test_http_wrong_password_is_a_config_error(
    api: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, url = await api()
    wrong = "Wr0ng-s3cret-pw"
    with closed_port() as port:
        path = _config(tmp_path, port, password=wrong, routes=HTTP_ROUTES,
                       provider_extra=f"  transport: http\n  api_url: {url}\n  test: false\n")  # fmt: skip
        code, out, err = await _check(path, capsys)
    assert code == Exit.CONFIG
    (line,) = [x for x in out.splitlines() if x.startswith("provider API")]
    assert line.startswith(
        f"provider API {url}: FAILED: ERROR 2 (authorise error) — the provider refuses the login"
    )
    assert "check provider.login and provider.password_file" in line
    assert fake.forms[0][1]["psw"] == wrong  # it was sent, and refused...
    assert wrong not in out + err  # ...and never printed


async def test_failover_url_is_probed_too_and_an_unreachable_mirror_fails(
    provider: tuple[FakeProvider, int], api: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, smtp_port = provider
    _, url = await api()
    with closed_port() as dead:
        mirror = f"http://127.0.0.1:{dead}/sys/"
        extra = f"  failover: true\n  api_url: {url}\n  api_mirrors: [{mirror}]\n"
        code, out, _ = await _check(_config(tmp_path, smtp_port, provider_extra=extra), capsys)
    lines = out.splitlines()
    assert code == Exit.TEMPFAIL
    assert f"provider API {url} (for failover): OK (balance 100.00)" in lines
    assert (
        f"provider API {mirror} (for failover): FAILED: cannot connect (refused or unreachable) — is the host/port in provider.api_url"
        in out
    )


async def test_postgresql_spool_ok_with_its_schema_version(
    provider: tuple[FakeProvider, int], pg_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, port = provider
    with psycopg.connect(pg_dsn) as conn:
        pgdb.migrate(conn)  # as a relay that has run once
    spool = f'{{backend: postgresql, dsn: "{pg_dsn} password={PG_PASSWORD}", relay_name: test}}'
    code, out, err = await _check(_config(tmp_path, port, spool=spool), capsys)
    assert code == Exit.OK, out
    (line,) = [x for x in out.splitlines() if x.startswith("spool PostgreSQL")]
    assert line.endswith(f": OK (SELECT 1; schema version {pgdb.VERSION})")
    assert PG_PASSWORD not in out + err


async def test_postgresql_wrong_port_fails_without_the_password(
    provider: tuple[FakeProvider, int], pg_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, port = provider
    spool = f'{{backend: postgresql, dsn: "{pg_dsn} port=1 password={PG_PASSWORD}", relay_name: test}}'
    code, out, err = await _check(_config(tmp_path, port, spool=spool), capsys)
    assert code == Exit.TEMPFAIL
    (line,) = [x for x in out.splitlines() if x.startswith("spool PostgreSQL")]
    assert ":1/" in line and ": FAILED: no server listens at that socket — " in line
    assert "is the server running, and are host and port in spool.dsn right?" in line
    assert PG_PASSWORD not in out + err


async def test_a_dry_run_is_probed_and_says_it_needs_none(
    provider: tuple[FakeProvider, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, port = provider
    code, out, _ = await _check(_config(tmp_path, port, outbox=str(tmp_path / "outbox")), capsys)
    assert code == Exit.OK
    assert f"note: dry run (provider.outbox {tmp_path / 'outbox'}): it needs no way out" in out
    assert fake.sessions == 1


async def test_a_broken_config_exits_78_before_any_probe(
    provider: tuple[FakeProvider, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, port = provider
    code, out, err = await _check(_config(tmp_path, port, provider_extra="  no_such_key: 1\n"), capsys)
    assert code == Exit.CONFIG and "no_such_key" in err
    assert out == "" and fake.sessions == 0


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Timed out connecting to send.smscentre.com on port 25", "timeout"),
        ("Error connecting to nowhere.invalid on port 25: [Errno -2] Name or service not known", "dns"),
        ("Error connecting to 10.1.1.1 on port 25: [Errno 113] No route to host", "unreachable"),
        ('connection to server at "10.0.0.5", port 5432 failed: timeout expired', "timeout"),
        (
            'connection to server at "db", port 5432 failed: Connection refused Is the server running',
            "refused",
        ),
        ("http://127.0.0.1:9/sys/: ConnectError: [Errno 111] Connection refused", "refused"),
        ("554 5.7.1 go away", "reply"),
        ("[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1000)", "tls"),
        ("something else", ""),
    ],
)
def test_failure_texts_are_named(text: str, kind: str) -> None:
    assert check.cause(text) == kind
