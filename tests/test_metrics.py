"""Prometheus metrics and health, scraped over HTTP after an end-to-end run."""

from __future__ import annotations

import asyncio
import smtplib
import time
from typing import Any

import pytest

from relay import __version__ as relay_version
from tests import spooldb
from tests.fakes import wait_for
from tests.helpers import closed_port, message, smtplib_send, wait_state
from tests.scrape import get, value

pytestmark = pytest.mark.timeout(60)


async def test_scrape_after_end_to_end_run(replying_relay: Any) -> None:
    fake, relay = await replying_relay(extra="metrics: {listen: '127.0.0.1:0'}\n")
    port = relay.metrics_server.sockets[0].getsockname()[1]
    await asyncio.to_thread(smtplib_send, relay.port, message(to="oncall@sms.example.com"))  # 2 phones
    await wait_state(relay, "confirmed")
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        await asyncio.to_thread(smtplib_send, relay.port, message(), ["nobody@sms.example.com"])
    fake.answer = lambda got: f"ERROR = 7 (bad phone), ID - {got.relay_id}"
    await asyncio.to_thread(smtplib_send, relay.port, message("second"))
    await wait_for(lambda: len(fake.received) == 2)
    for _ in range(200):
        status, text = await get(port, "/metrics")
        # The counter moves when the reply is applied, the queue gauges at the next scrape; the
        # oldest-waiting age and the counts are two reads, so one scrape may fall between them.
        if (
            'smsc_relay_requests_total{state="failed"} 1.0' in text
            and 'smsc_relay_queue{state="failed"} 1.0' in text
            and "\nsmsc_relay_oldest_waiting_seconds 0.0" in text
        ):
            break
        await asyncio.sleep(0.02)
    assert status == 200
    assert value(text, "smsc_relay_mails_received_total") == 2
    assert value(text, 'smsc_relay_mails_rejected_total{reason="no_route"}') == 1
    assert value(text, 'smsc_relay_requests_total{state="sent"}') == 2
    assert value(text, 'smsc_relay_requests_total{state="confirmed"}') == 1
    assert value(text, 'smsc_relay_requests_total{state="failed"}') == 1
    assert value(text, 'smsc_relay_provider_errors_total{code="7"}') == 1
    assert value(text, "smsc_relay_sms_parts_sent_total") == 3  # 1 part x 2 phones + 1 x 1
    assert value(text, 'smsc_relay_queue{state="confirmed"}') == 1
    assert value(text, 'smsc_relay_queue{state="failed"}') == 1
    assert value(text, "smsc_relay_accept_to_provider_seconds_count") == 2
    assert value(text, "smsc_relay_provider_to_confirmation_seconds_count") == 1
    assert value(text, "smsc_relay_delivery_paused") == 0
    assert value(text, "smsc_relay_oldest_waiting_seconds") == 0  # nothing waits
    assert f'smsc_relay_build_info{{version="{relay_version}"}} 1.0' in text
    assert (await get(port, "/nope"))[0] == 404


async def test_oldest_waiting_age_grows_while_the_provider_is_down(relay_factory: Any) -> None:
    with closed_port() as down:
        relay = await relay_factory(down, extra="metrics: {listen: '127.0.0.1:0'}\n")
        port = relay.metrics_server.sockets[0].getsockname()[1]
        await asyncio.to_thread(smtplib_send, relay.port, message())
        await wait_for(lambda: relay.deliverer.paused_until > 0)  # the attempt failed: it waits
        await spooldb.age(relay, "messages", 600)
        _, text = await get(port, "/metrics")
        assert 600 <= value(text, "smsc_relay_oldest_waiting_seconds") < 700


@pytest.mark.sqlite_only  # a full or corrupt SQLite file; tests/test_ha.py stops the database
async def test_health_fails_when_paused_or_spool_unwritable(relay_factory: Any) -> None:
    relay = await relay_factory(1, extra="metrics: {listen: '127.0.0.1:0'}\n")  # never reached
    port = relay.metrics_server.sockets[0].getsockname()[1]
    assert await get(port, "/health") == (200, "ok\n")
    relay.deliverer.pause(time.time() + 60, "provider ERROR 3: insufficient funds")
    status, body = await get(port, "/health")
    assert (status, body) == (503, "delivery paused: provider ERROR 3: insufficient funds\n")
    relay.deliverer.resume()
    # A real SQLITE_FULL: cap the database where it stands and fill the control table's page.
    await spooldb.cap_size(relay)
    for n in range(10_000):
        try:
            await relay.spool.set_control(f"filler{n}", "x" * 200)
        except Exception:
            break
    status, body = await get(port, "/health")
    assert status == 503 and body.startswith("spool not writable: database or disk is full")
