"""Logs: key=value lines, journald priorities under systemd, numbers masked, the password never."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from relay.daemon.logs import setup_logging
from tests.fakes import ReplyingProvider, wait_for
from tests.helpers import PASSWORD, message, smtplib_send

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def log_output(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    out = io.StringIO()
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    setup_logging("DEBUG", out)
    yield out
    root.handlers[:], root.level = saved


def test_phone_numbers_masked_at_info_not_at_debug(log_output: io.StringIO) -> None:
    log = logging.getLogger("relay.test")
    log.info("event=rejected reply=%r", "550 5.1.1 no route for <79991234567@sms.example.com>")
    log.debug("event=detail rcpt=79991234567@sms.example.com")
    lines = log_output.getvalue().splitlines()
    assert lines[0].endswith("event=rejected reply='550 5.1.1 no route for <7999*****67@sms.example.com>'")
    assert lines[1].endswith("event=detail rcpt=79991234567@sms.example.com")


def test_an_upstream_queue_id_is_not_masked_as_a_phone(log_output: io.StringIO) -> None:
    logging.getLogger("relay.test").info("event=sent upstream=%r", "2.0.0 Ok: queued as 6150123436")
    assert log_output.getvalue().rstrip().endswith("upstream='2.0.0 Ok: queued as 6150123436'")


def test_peers_are_host_and_port() -> None:
    from aiosmtpd.smtp import Session

    from relay.smtp.session import peer_of

    v4, v6 = Session(None), Session(None)  # type: ignore[arg-type]
    v4.peer, v6.peer = ("127.0.0.1", 37642), ("::1", 2525, 0, 0)  # type: ignore[assignment]  # aiosmtpd types peer as str; sockets give tuples
    assert (peer_of(v4), peer_of(v6), peer_of(None)) == ("127.0.0.1:37642", "[::1]:2525", "-")


def test_journald_priorities(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    out = io.StringIO()
    try:
        setup_logging("INFO", out)
        logging.getLogger("relay.x").error("event=failed id=r1")
        logging.getLogger("relay.x").info("event=sent id=r1")
    finally:
        root.handlers[:], root.level = saved
    assert out.getvalue().splitlines() == ["<3>relay.x event=failed id=r1", "<6>relay.x event=sent id=r1"]


async def test_end_to_end_logs_never_hold_the_password(log_output: io.StringIO, replying_relay: Any) -> None:
    _fake, relay = await replying_relay(
        ReplyingProvider(answer=lambda got: f"ERROR = 7 (bad phone), ID - {got.relay_id}")
    )
    await asyncio.to_thread(smtplib_send, relay.port, message("disk full on db1"))
    with pytest.raises(Exception):  # noqa: B017 - a refused recipient, logged by the relay
        await asyncio.to_thread(smtplib_send, relay.port, message(), ["0079991234567@sms.example.com"])
    await wait_for(lambda: "event=provider_reply" in log_output.getvalue(), timeout=10)
    await relay.stop()
    text = log_output.getvalue()
    for event in ("event=ready", "event=queued", "event=sent", "event=provider_reply", "event=stopped"):
        assert event in text
    assert PASSWORD not in text
    assert "disk full" not in text  # texts are not logged at INFO
    info_and_up = [line for line in text.splitlines() if " DEBUG " not in line]
    assert not any("79991234567" in line for line in info_and_up)


async def test_a_dry_run_logs_dry_run_not_sent(
    log_output: io.StringIO, provider: Any, relay_factory: Any, tmp_path: Any
) -> None:
    """`queue list` says `dry-run`; the log says the same, never that an SMS was sent."""
    _fake, port = provider
    relay = await relay_factory(port, outbox=tmp_path / "outbox")
    await asyncio.to_thread(smtplib_send, relay.port, message())
    await wait_for(lambda: "event=dry_run" in log_output.getvalue())
    assert "event=sent" not in log_output.getvalue()


async def test_the_http_librarys_own_lines_stay_out_of_the_log(
    log_output: io.StringIO, http_relay: Any
) -> None:
    """One format: httpx's `INFO httpx HTTP Request: POST ...` lines do not come among event= lines."""
    _fake, relay = await http_relay()
    await asyncio.to_thread(smtplib_send, relay.port, message(to="79990000001@sms.example.com"))
    await wait_for(lambda: "event=sent" in log_output.getvalue())
    lines = log_output.getvalue().splitlines()
    assert not [line for line in lines if " httpx " in line or " httpcore" in line or "HTTP Request" in line]
