"""Delivery tracking, failover and the balance, against the fake HTTP API with a moved clock.

The fake enforces status.php's limits (one list request a minute, five per message) and
answers error 9 past them: every test here asserts it never had to.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from decimal import Decimal
from email.message import EmailMessage
from typing import Any

import pytest

from relay.cli import main as cli
from relay.config import load as config_mod
from relay.daemon.main import Daemon
from tests import spooldb
from tests.fake_api import FakeApi, Sms
from tests.fakes import FakeProvider, wait_for
from tests.helpers import HTTP_ROUTES, PASSWORD, Clock, closed_port, sample, smtplib_send
from tests.spooldb import states

Start = Callable[..., Any]
TRACK = "  track_delivery: true\n"


def sms(to: str, body: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "app@example.com"
    msg["To"] = to if "@" in to else f"{to}@sms.example.com"
    msg["Subject"] = "Disk"
    msg.set_content(body)
    return msg


async def send(relay: Daemon, to: str, body: str) -> None:
    await asyncio.to_thread(smtplib_send, relay.port, sms(to, body))


async def by_phone(relay: Daemon) -> dict[str, dict[str, Any]]:
    return {json.loads(r["phones"])[0]: r for r in await spooldb.rows(relay, "messages")}


async def poll(relay: Daemon, clock: Clock, fake: FakeApi, seconds: float) -> None:
    """Move the clock and let the tracker make its round (or decide it may not)."""
    clock.now += seconds
    await relay.tracker.tick()


async def sent(relay: Daemon, fake: FakeApi, to: str, body: str, total: int = 1) -> None:
    """Send one mail through the relay; return once the fake API holds `total` SMS and the
    relay has recorded the outcome (the tracker's clock may then move)."""
    await send(relay, to, body)
    await wait_for(lambda: len(fake.sms) == total)
    await wait_for(lambda: relay.deliverer.in_flight == set())


def spaced(fake: FakeApi) -> bool:
    """No two list requests within the provider's minute."""
    return all(b - a >= 60 for a, b in zip(fake.status_lists, fake.status_lists[1:], strict=False))


@pytest.fixture
def clock() -> Clock:
    return Clock(time.time())


async def test_tracking_to_delivered_and_undelivered_with_a_notice(
    http_relay: Start, provider: tuple[FakeProvider, int], clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    mta, mta_port = provider
    fake = FakeApi(clock=clock, queued_for=30, final_after=100)
    fake.outcome["+79990000002"] = 20
    fake, relay = await http_relay(
        fake, api_extra=TRACK, clock=clock, extra=f"notify: {{smarthost: 127.0.0.1, port: {mta_port}}}"
    )
    await relay.tracker.stop()  # the test makes the rounds itself
    await send(relay, "+79990000001", "to a phone that gets it")
    await sent(relay, fake, "+79990000002", "to a phone that never does", 2)
    rows = await by_phone(relay)
    assert {r["state"] for r in rows.values()} == {"confirmed"}
    assert all(r["next_poll"] is not None for r in rows.values())

    await poll(relay, clock, fake, 25)  # -1: waiting to be sent
    assert len(fake.status_lists) == 1
    await poll(relay, clock, fake, 30)  # within the minute: no request
    assert len(fake.status_lists) == 1
    await poll(relay, clock, fake, 40)  # 0: handed to the operator
    await poll(relay, clock, fake, 120)  # final
    rows = await by_phone(relay)
    assert rows["+79990000001"]["state"] == "delivered"
    assert (rows["+79990000002"]["state"], rows["+79990000002"]["error_code"]) == ("undelivered", 20)
    assert "status 20 (cannot be delivered)" in rows["+79990000002"]["last_error"]
    assert fake.status_errors == 0 and spaced(fake)
    assert sample(relay, "smsc_relay_delivery_statuses_total", status="1") == 1
    assert sample(relay, "smsc_relay_delivery_statuses_total", status="20") == 1

    await wait_for(lambda: len(mta.received) == 1)
    notice = mta.received[0]
    assert notice.rcpt_tos == ["app@example.com"]
    assert b"SMS not delivered" in notice.raw

    undelivered = rows["+79990000002"]["id"]
    assert cli.main(["queue", "show", undelivered, "--json", "-c", str(relay.config_path)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["state"] == "undelivered" and shown["error_code"] == 20
    assert [(d["phone"], d["status"], d["meaning"]) for d in shown["delivery"]] == [
        ("+79990000002", 20, "cannot be delivered")
    ]
    assert cli.main(["queue", "show", undelivered, "-c", str(relay.config_path)]) == 0
    assert "20 cannot be delivered" in capsys.readouterr().out
    assert cli.main(["queue", "list", "--json", "--state", "delivered", "-c", str(relay.config_path)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["phones"] for r in listed] == [["+79990000001"]]
    assert {"id", "state", "route", "phones", "attempts", "created", "updated"} <= set(listed[0])


async def test_restart_in_the_middle_of_tracking(http_relay: Start, clock: Clock) -> None:
    fake = FakeApi(clock=clock, queued_for=30, final_after=100)
    fake, relay = await http_relay(fake, api_extra=TRACK, clock=clock)
    await relay.tracker.stop()
    await sent(relay, fake, "+79990000001", "across a restart")
    await poll(relay, clock, fake, 25)
    assert len(fake.status_lists) == 1
    await relay.stop()

    again = Daemon(relay.config_path, config_mod.load(relay.config_path, env={}), clock=clock)
    await again.start()
    try:
        await again.tracker.stop()
        # A new message after the restart is due 20 s after it went out; the last list request
        # (before the restart) was 30 s ago: the provider's minute holds across the restart.
        await sent(again, fake, "+79990000002", "after the restart", 2)
        await poll(again, clock, fake, 30)
        assert len(fake.status_lists) == 1
        await poll(again, clock, fake, 35)
        assert len(fake.status_lists) == 2
        await poll(again, clock, fake, 120)
        assert list((await states(again)).values()) == ["delivered", "delivered"]
        assert fake.status_errors == 0 and spaced(fake)
        asked = len(fake.status_lists)
        await poll(again, clock, fake, 120)  # final: never asked again
        assert len(fake.status_lists) == asked
    finally:
        await again.stop()


async def test_no_final_status_in_time_is_status_unknown(http_relay: Start, clock: Clock) -> None:
    fake = FakeApi(clock=clock, queued_for=10, final_after=10**9)  # handed over, never final
    fake, relay = await http_relay(fake, api_extra=TRACK + "  track_timeout: 600\n", clock=clock)
    await relay.tracker.stop()
    await sent(relay, fake, "+79990000001", "lost in the operator's network")
    for _ in range(12):
        await poll(relay, clock, fake, 70)
    r = next(iter((await by_phone(relay)).values()))
    assert r["state"] == "status-unknown"
    assert "no final delivery status in time: +79990000001: 0 (handed to the operator)" in r["last_error"]
    assert fake.status_errors == 0 and spaced(fake)


async def test_five_phones_of_a_message_per_request(http_relay: Start, clock: Clock) -> None:
    phones = [f"+7999000001{i}" for i in range(7)]
    routes = (
        HTTP_ROUTES
        + f"""  - name: seven
    match: {{recipient: '^seven@sms\\.example\\.com$'}}
    phones: {json.dumps(phones)}
"""
    )
    fake = FakeApi(clock=clock, queued_for=1, final_after=2)
    fake, relay = await http_relay(fake, api_extra=TRACK, clock=clock, routes=routes)
    await relay.tracker.stop()
    await sent(relay, fake, "seven@sms.example.com", "to seven phones", 7)
    await poll(relay, clock, fake, 25)
    first = next(f for m, f in fake.forms if m == "status")
    assert first["phone"].rstrip(",").split(",") == phones[:5]
    await poll(relay, clock, fake, 61)
    second = [f for m, f in fake.forms if m == "status"][1]
    assert second["phone"].rstrip(",").split(",") == phones[5:]
    assert list((await states(relay)).values()) == ["delivered"]
    assert fake.status_errors == 0


async def test_status_limit_error_backs_off_a_minute(http_relay: Start, clock: Clock) -> None:
    """Another client on the same login used the minute: error 9; the tracker waits one more."""
    fake = FakeApi(clock=clock, queued_for=1, final_after=2)
    fake, relay = await http_relay(fake, api_extra=TRACK, clock=clock)
    await relay.tracker.stop()
    await sent(relay, fake, "+79990000001", "shared login")
    fake.status_lists.append(clock.now)  # someone else's list request, just now
    await poll(relay, clock, fake, 25)
    assert fake.status_errors == 1
    assert sample(relay, "smsc_relay_status_requests_total", result="limit") == 1
    await poll(relay, clock, fake, 61)  # one minute after the refused one: still held back
    assert len(fake.status_lists) == 2
    await poll(relay, clock, fake, 61)
    assert list((await states(relay)).values()) == ["delivered"]
    assert fake.status_errors == 1


async def test_tracking_smtp_sent_mail(
    relay_factory: Any, api: Start, provider: tuple[FakeProvider, int], clock: Clock
) -> None:
    """The SMTP command carries the relay id too: status.php tracks what went by mail."""
    smtp, port = provider
    fake, url = await api(FakeApi(clock=clock, queued_for=1, final_after=2))
    relay = await relay_factory(
        port, provider_extra=f"  api_url: {url}\n  test: false\n" + TRACK, clock=clock
    )
    await relay.tracker.stop()
    await send(relay, "+79990000001", "by mail")
    await wait_for(lambda: len(smtp.received) == 1)
    relay_id = smtp.received[0].relay_id
    await wait_for(lambda: relay.deliverer.in_flight == set())
    # What the provider's gateway does with the mail: it registers the SMS under our id.
    fake.sms.append(Sms(relay_id, "+79990000001", "by mail", 1, clock.now))
    await poll(relay, clock, fake, 25)
    assert await states(relay) == {relay_id: "delivered"}


async def test_failover_to_http_and_back(
    relay_factory: Any, api: Start, provider: tuple[FakeProvider, int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    smtp, port = provider
    fake, url = await api()
    relay = await relay_factory(port, provider_extra=f"  api_url: {url}\n  test: false\n  failover: true\n")
    smtp.replies = ["421 4.3.2 service shutting down"]
    await send(relay, "+79990000001", "gateway is down")
    await wait_for(lambda: len(fake.sms) == 1)
    assert fake.texts("+79990000001") == ["Disk\ngateway is down"]
    assert smtp.received == []
    assert sample(relay, "smsc_relay_failover_active") == 1
    assert "event=failover to=http" in caplog.text
    await wait_for(lambda: sample(relay, "smsc_relay_requests_total", state="confirmed") == 1)
    # While the hold lasts, mail keeps going over HTTP.
    await send(relay, "+79990000002", "still on http")
    await wait_for(lambda: len(fake.sms) == 2)
    relay.failover.until = 0.0  # the hold is over: SMTP is tried again
    await send(relay, "+79990000003", "gateway is back")
    await wait_for(lambda: len(smtp.received) == 1)
    assert smtp.received[0].sms.entries[0].text.endswith("gateway is back")
    await wait_for(lambda: sample(relay, "smsc_relay_failover_active") == 0)
    assert "event=failback to=smtp" in caplog.text
    assert sample(relay, "smsc_relay_failovers_total", to="http") == 1
    assert sample(relay, "smsc_relay_failovers_total", to="smtp") == 1
    assert len(fake.sms) == 2


async def test_failover_when_the_gateway_refuses_connections(relay_factory: Any, api: Start) -> None:
    fake, url = await api()
    with closed_port() as dead:
        relay = await relay_factory(
            dead, provider_extra=f"  api_url: {url}\n  test: false\n  failover: true\n"
        )
        await send(relay, "+79990000001", "no gateway at all")
        await wait_for(lambda: len(fake.sms) == 1)
    await wait_for(lambda: relay.deliverer.in_flight == set())
    rows = await by_phone(relay)
    assert rows["+79990000001"]["via"] == "http"


async def test_low_balance_warns_once(
    http_relay: Start, provider: tuple[FakeProvider, int], caplog: pytest.LogCaptureFixture
) -> None:
    mta, mta_port = provider
    fake = FakeApi()
    fake.balance = Decimal("6.00")
    fake, relay = await http_relay(
        fake, api_extra="  low_balance: 4\n",
        extra=f"notify: {{smarthost: 127.0.0.1, port: {mta_port}, operator: ops@example.com}}",
    )  # fmt: skip
    for i in range(3):
        await send(relay, f"+7999000000{i}", f"message {i}")
        await wait_for(lambda i=i: len(fake.sms) == i + 1)
    await wait_for(lambda: relay.balance.balance is not None and float(relay.balance.balance) == 1.5)
    await wait_for(lambda: len(mta.received) == 1)
    assert mta.received[0].rcpt_tos == ["ops@example.com"]
    assert b"below 4" in mta.received[0].raw
    assert caplog.text.count("event=balance_low") == 1
    assert sample(relay, "smsc_relay_provider_balance_low") == 1
    assert sample(relay, "smsc_relay_provider_balance") == 1.5
    assert (await relay.spool.control())["balance_low_since"] == "3.00"


async def test_balance_command(api: Start, tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _, url = await api()
    config = tmp_path / "relay.yaml"
    config.write_text(f"""
provider:
  login: mylogin
  password: "{PASSWORD}"
  reply_address: replies@relay.example.com
  api_url: {url}
  low_balance: 500
routes:
  - name: number
    match: {{recipient: '^(?P<phones>[0-9]+)@sms\\.example\\.com$'}}
""")
    code = await asyncio.to_thread(cli.main, ["balance", "--json", "-c", str(config)])
    out = capsys.readouterr()
    assert code == 0
    assert json.loads(out.out) == {"balance": "100.00", "low_balance": 500.0, "below_low_balance": True}
    assert PASSWORD not in out.out + out.err
    config.write_text(config.read_text().replace(PASSWORD, "wrong-password"))
    code = await asyncio.to_thread(cli.main, ["balance", "-c", str(config)])
    out = capsys.readouterr()
    assert code == 1
    assert "ERROR 2" in out.err and "check provider.login" in out.err
