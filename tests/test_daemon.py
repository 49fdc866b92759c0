"""The daemon end to end on loopback: real clients -> relay -> fake provider."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from relay.model import State
from tests import spooldb
from tests.fakes import FakeProvider, wait_for
from tests.helpers import PASSWORD, closed_port, message, smtplib_send, wait_state
from tests.spooldb import row, states

pytestmark = pytest.mark.timeout(60)


async def test_smtplib_to_provider(provider: tuple[FakeProvider, int], relay_factory: Any) -> None:
    fake, port = provider
    relay = await relay_factory(port)
    await asyncio.to_thread(smtplib_send, relay.port, message())
    await wait_for(lambda: len(fake.received) == 1)
    got = fake.received[0]
    assert got.rcpt_tos == ["send@send.smscentre.com"]
    local, tag = got.mail_from.split("@")[0].split("+")  # the reply address, tagged for this message
    assert local == "replies" and got.mail_from.endswith("@relay.example.com") and len(tag) == 16
    assert got.command is not None
    # The spool holds the mail masked; the provider gets the real password.
    assert (got.command.login, got.command.password) == ("mylogin", PASSWORD)
    assert [e.text for e in got.sms.entries] == ["Alert\nDisk /var is full"]
    assert got.sms.entries[0].phones == ("79991234567",)
    await wait_for(lambda: relay.deliverer.in_flight == set())
    assert list((await states(relay)).values()) == ["sent"]
    assert PASSWORD.encode() not in (await row(relay))["message"]


async def test_aiosmtplib_client_and_connection_reuse(
    provider: tuple[FakeProvider, int], relay_factory: Any
) -> None:
    fake, port = provider
    relay = await relay_factory(port)
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.port) as client:
        for n in range(20):
            refused, reply = await client.send_message(message(f"event {n}"))
            assert refused == {}
            assert reply.startswith("2.0.0 queued as r")
    await wait_for(lambda: len(fake.received) == 20)
    # Two workers, each with one reused connection: not one connection per message.
    assert fake.sessions <= 2
    assert sorted(e.text for r in fake.received for e in r.sms.entries) == sorted(
        f"Alert\nevent {n}" for n in range(20)
    )


async def test_swaks_client(provider: tuple[FakeProvider, int], relay_factory: Any) -> None:
    fake, port = provider
    relay = await relay_factory(port)
    proc = await asyncio.create_subprocess_exec(
        "swaks", "--server", f"127.0.0.1:{relay.port}", "--from", "nagios@mon.example.com",
        "--to", "oncall@sms.example.com", "--header", "Subject: PROBLEM web01 DOWN",
        "--body", "Host web01 is DOWN", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    assert b"<-  250 2.0.0 queued as r" in out
    await wait_for(lambda: len(fake.received) == 1)
    cmd = fake.received[0].command
    assert cmd is not None and cmd.options.sender == "ALERTS"
    assert cmd.entries[0].phones == ("+79990000001", "+79990000002")


async def test_outbox_dry_run(provider: tuple[FakeProvider, int], relay_factory: Any, tmp_path: Path) -> None:
    fake, port = provider
    relay = await relay_factory(port, outbox=tmp_path / "outbox")
    reply = await asyncio.to_thread(smtplib_send, relay.port, message())
    assert reply == {}
    await wait_for(lambda: len(list((tmp_path / "outbox").glob("*.eml"))) == 1)
    (eml,) = (tmp_path / "outbox").glob("*.eml")
    txt = eml.with_suffix(".txt").read_text()
    assert "mylogin:***:" in txt and PASSWORD not in txt
    assert PASSWORD.encode() not in eml.read_bytes()
    assert fake.received == []  # nothing left the machine
    # No provider reply can come for it: not `sent` (which waits for one), and no sweep may
    # report it `unconfirmed` (a false "the SMS may not have gone out").
    await wait_for(lambda: relay.deliverer.in_flight == set())
    assert list((await states(relay)).values()) == ["dry-run"]
    assert await relay.spool.sweep_unconfirmed(0) == 0


async def test_email2sms_route(provider: tuple[FakeProvider, int], relay_factory: Any) -> None:
    fake, port = provider
    relay = await relay_factory(port)
    await asyncio.to_thread(smtplib_send, relay.port, message("backup ok", to="ops@sms.example.com"))
    await wait_for(lambda: len(fake.received) == 1)
    assert fake.received[0].rcpt_tos == ["mylogin@send.smscentre.com"]
    assert fake.received[0].body == "Alert\nbackup ok"


async def test_provider_down_then_up(relay_factory: Any) -> None:
    # Reserve a port, close it: the provider is "down" until we listen there.
    fake = FakeProvider()
    probe = await asyncio.get_running_loop().create_server(fake.factory, "127.0.0.1", 0)
    port = int(probe.sockets[0].getsockname()[1])
    probe.close()
    await probe.wait_closed()
    relay = await relay_factory(port)
    for n in range(5):
        await asyncio.to_thread(smtplib_send, relay.port, message(f"during outage {n}"))
    await wait_for(lambda: relay.deliverer.paused_until > 0)
    server = await asyncio.get_running_loop().create_server(fake.factory, "127.0.0.1", port)
    try:
        await wait_for(lambda: len(fake.received) == 5, timeout=20)
        assert len(set(fake.ids())) == 5
        await wait_for(lambda: relay.deliverer.in_flight == set())
        assert set((await states(relay)).values()) == {"sent"}
    finally:
        server.close()


@pytest.mark.parametrize("reply", ["421 4.3.2 try later", "451 4.3.0 local error"])
async def test_provider_temporary_failure_then_success(
    provider: tuple[FakeProvider, int], relay_factory: Any, reply: str
) -> None:
    fake, port = provider
    fake.replies = [reply]
    relay = await relay_factory(port)
    await asyncio.to_thread(smtplib_send, relay.port, message())
    await wait_for(lambda: len(fake.received) == 1, timeout=15)
    await wait_for(lambda: relay.deliverer.in_flight == set())
    rows = await spooldb.select(relay, "messages", "state", "attempts", "last_error")
    # One deferred attempt, then the successful one; the error is cleared on success.
    assert rows == [("sent", 2, "")]


async def test_provider_permanent_failure(provider: tuple[FakeProvider, int], relay_factory: Any) -> None:
    fake, port = provider
    fake.replies = ["554 5.7.1 rejected"]
    relay = await relay_factory(port)
    await asyncio.to_thread(smtplib_send, relay.port, message())

    async def failed() -> list[Any]:
        return await spooldb.select(relay, "messages", "state", "attempts", "error_code", "last_error")

    for _ in range(200):
        rows = await failed()
        if rows and rows[0][0] == State.FAILED.value:
            break
        await asyncio.sleep(0.02)
    assert tuple(rows[0]) == ("failed", 1, 554, "554 5.7.1 rejected")
    # Failed for good: nothing is waiting for another attempt, however late.
    assert await relay.spool.next_due() is None
    assert fake.received == [] and tuple((await failed())[0])[1] == 1


async def test_provider_drops_connection_mid_data(
    provider: tuple[FakeProvider, int], relay_factory: Any
) -> None:
    fake, port = provider
    fake.drop_on_data = 1
    relay = await relay_factory(port)
    await asyncio.to_thread(smtplib_send, relay.port, message())
    await wait_for(lambda: len(fake.received) == 1, timeout=15)
    assert fake.sessions >= 2  # the broken connection was not reused


async def test_slow_provider_past_timeout_is_retried(
    provider: tuple[FakeProvider, int], relay_factory: Any
) -> None:
    fake, port = provider
    fake.delay = 4.0  # far past the relay's timeout of 1 s, so that a busy machine cannot blur them
    relay = await relay_factory(port, timeout=1)
    await asyncio.to_thread(smtplib_send, relay.port, message())
    await wait_state(relay, "deferred")  # the first attempt timed out
    fake.delay = 0
    await wait_for(lambda: len(fake.received) >= 1, timeout=15)
    # The timed-out attempt may have reached the provider too: at least once, duplicates visible by id.
    assert set(fake.ids()) == {fake.received[0].relay_id}


async def test_message_expires_after_max_age(relay_factory: Any) -> None:
    with closed_port() as port:  # nothing listens: every attempt fails
        relay = await relay_factory(port, max_age=60)
        await asyncio.to_thread(smtplib_send, relay.port, message())
        await wait_for(lambda: relay.deliverer.paused_until > 0)
        await _expire(relay, port)


async def _expire(relay: Any, port: int) -> None:
    # Age the message past max_age, as if it had been failing for an hour.
    await spooldb.age(relay, "messages", 3600, next_attempt=0)
    relay.deliverer.resume()

    async def state() -> tuple[Any, ...]:
        return (await spooldb.select(relay, "messages", "state", "last_error"))[0]

    for _ in range(300):
        current = await state()
        if current[0] == "expired":
            break
        await asyncio.sleep(0.02)
    assert current[0] == "expired"
    assert f"127.0.0.1:{port}" in current[1]


@pytest.mark.sqlite_only  # a full or corrupt SQLite file; tests/test_ha.py stops the database
async def test_corrupt_spool_refuses_to_start(tmp_path: Path, relay_factory: Any) -> None:
    (tmp_path / "spool.db").write_bytes(b"this is not a database" * 100)
    from relay.errors import SpoolError

    with pytest.raises(SpoolError, match="not a readable SQLite database"):
        await relay_factory(1)  # never reached: the spool fails first


async def test_unexpected_error_in_a_send_is_retried_not_fatal(
    provider: tuple[FakeProvider, int], relay_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relay.delivery.smtp import SmtpTransport
    from relay.delivery.transport import Accepted

    fake, port = provider
    real_send = SmtpTransport.send
    calls = []

    async def flaky(self: SmtpTransport, *args: Any) -> Accepted:
        calls.append(args[0])
        if len(calls) == 1:
            raise RuntimeError("a bug in a sender")  # stands in for any fault of ours
        return await real_send(self, *args)

    monkeypatch.setattr(SmtpTransport, "send", flaky)
    relay = await relay_factory(port)
    await asyncio.to_thread(smtplib_send, relay.port, message("first"))
    await wait_for(lambda: len(fake.received) == 1, timeout=15)  # retried after the fault
    await asyncio.to_thread(smtplib_send, relay.port, message("second"))
    await wait_for(lambda: len(fake.received) == 2, timeout=15)  # the worker lives on
    assert calls[0] == calls[1]


async def test_sighup_leaves_dry_run_without_a_restart(
    provider: tuple[FakeProvider, int], relay_factory: Any, tmp_path: Path
) -> None:
    fake, port = provider
    outbox = tmp_path / "outbox"
    relay = await relay_factory(port, outbox=outbox)
    await asyncio.to_thread(smtplib_send, relay.port, message("dry"))
    await wait_for(lambda: len(list(outbox.glob("*.eml"))) == 1)
    # install.md: remove `outbox:`, then SIGHUP (what ExecReload sends)
    config = relay.config_path.read_text()
    relay.config_path.write_text(config.replace(f"outbox: {outbox}", "outbox: null"))
    relay.reload()
    await asyncio.to_thread(smtplib_send, relay.port, message("live"))
    await wait_for(lambda: len(fake.received) == 1)
    assert fake.received[0].sms.entries[0].text == "Alert\nlive"
    assert len(list(outbox.glob("*.eml"))) == 1  # nothing more went to the outbox
