"""Notices to the original sender when an SMS fails for good (RFC 3464), and resuming a pause."""

from __future__ import annotations

import asyncio
import email
import email.policy
import smtplib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.fakes import FakeProvider, ReplyingProvider, wait_for
from tests.helpers import message, serve_fake, smtplib_send, wait_state
from tests.spooldb import states

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def smarthost() -> AsyncIterator[tuple[FakeProvider, int]]:
    """Where notices go: a recording SMTP server standing in for the local MTA."""
    fake = FakeProvider()
    server, port = await serve_fake(fake)
    yield fake, port
    server.close()


def notify_config(port: int) -> str:
    return f"notify: {{smarthost: 127.0.0.1, port: {port}, from: smsc-relay@relay.example.com}}\n"


def check_notice(got: Any, relay_id: str, reason: str) -> None:
    assert got.mail_from == "<>" and got.rcpt_tos == ["cron@db1.example.com"]  # null sender: no loops
    msg = email.message_from_bytes(got.raw)
    assert msg.get_content_type() == "multipart/report"
    assert msg["Auto-Submitted"] == "auto-replied"
    parts = [p.get_content_type() for p in msg.walk()]
    assert "message/delivery-status" in parts
    text = got.raw.decode()
    assert f"Relay id: {relay_id}" in text and reason in text
    assert "Final-Recipient: rfc822; 79991234567@sms.example.com" in text


async def test_notice_after_upstream_refusal(
    provider: tuple[FakeProvider, int], relay_factory: Any, smarthost: tuple[FakeProvider, int]
) -> None:
    fake, port = provider
    fake.replies = ["554 5.7.1 rejected"]
    relay = await relay_factory(port, extra=notify_config(smarthost[1]))
    await asyncio.to_thread(smtplib_send, relay.port, message())
    await wait_for(lambda: len(smarthost[0].received) == 1)
    r = await wait_state(relay, "failed")
    check_notice(smarthost[0].received[0], r["id"], "554 5.7.1 rejected")


async def test_notice_after_provider_error_but_not_to_null_sender(
    replying_relay: Any, smarthost: tuple[FakeProvider, int]
) -> None:
    answer = ReplyingProvider(answer=lambda got: f"ERROR = 7 (invalid phone), ID - {got.relay_id}")
    fake, relay = await replying_relay(answer, extra=notify_config(smarthost[1]))
    await asyncio.to_thread(smtplib_send, relay.port, message())
    await wait_for(lambda: len(smarthost[0].received) == 1)
    r = await wait_state(relay, "failed")
    check_notice(smarthost[0].received[0], r["id"], "provider ERROR 7: invalid phone")

    def null_sender() -> None:
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
            client.sendmail("", ["79991234567@sms.example.com"], "Subject: bounce\r\n\r\nfrom <>")

    await asyncio.to_thread(null_sender)
    assert relay.notifier is not None
    await wait_for(lambda: relay.notifier.requested == 2)  # the null sender's failure too
    await asyncio.gather(*relay.notifier.tasks)
    assert len(fake.received) == 2 and len(smarthost[0].received) == 1  # nobody to tell


async def test_sighup_and_interval_resume_a_pause(
    provider: tuple[FakeProvider, int], relay_factory: Any
) -> None:
    fake, port = provider
    relay = await relay_factory(port)
    await relay.spool.set_control("paused_until", f"{time.time() + 3600:.3f}")
    await relay.spool.set_control("pause_reason", "provider ERROR 3: insufficient funds")
    relay.deliverer.wake()  # idle workers look at the control table when they wake
    await wait_for(lambda: relay.deliverer.pause_reason != "", timeout=5)
    await asyncio.to_thread(smtplib_send, relay.port, message())
    # Paused: the message waits in the queue and no worker may claim it.
    assert list((await states(relay)).values()) == ["queued"]
    assert await relay.spool.claim(10, time.time()) == []
    assert fake.received == []
    relay.reload()  # what SIGHUP does
    await wait_for(lambda: len(fake.received) == 1, timeout=10)
    assert {k for k in await relay.spool.control() if k != "reply_tag_key"} == set()  # the pause is gone
    # A pause whose interval has run out ends by itself.
    await relay.spool.set_control("paused_until", f"{time.time() + 2:.3f}")
    await relay.spool.set_control("pause_reason", "provider ERROR 2: invalid login")
    relay.deliverer.wake()
    await wait_for(lambda: relay.deliverer.pause_reason != "", timeout=5)
    await asyncio.to_thread(smtplib_send, relay.port, message("later"))
    await wait_for(lambda: len(fake.received) == 2, timeout=10)


async def test_a_failed_storm_digest_tells_each_sender_of_its_alerts(
    replying_relay: Any, smarthost: tuple[FakeProvider, int]
) -> None:
    from tests.helpers import STORM_ROUTES, Clock, until

    clock = Clock(1_795_348_800.0)
    answer = ReplyingProvider(answer=lambda got: f"ERROR = 7 (invalid phone), ID - {got.relay_id}")
    fake, relay = await replying_relay(
        answer, routes=STORM_ROUTES, clock=clock, extra=notify_config(smarthost[1])
    )

    def send(sender: str, text: str) -> None:
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
            client.sendmail(sender, ["zabbix@sms.example.com"], f"Subject: {text}\r\n\r\n{text}")

    await asyncio.to_thread(send, "zabbix@mon1.example.com", "disk full on db1")
    await asyncio.to_thread(send, "zabbix@mon2.example.com", "load high on db2")
    await until(relay, clock, clock.now + 21)  # one digest with both
    await wait_for(lambda: len(smarthost[0].received) == 2)
    assert len(fake.received) == 1 and fake.received[0].command is not None
    assert fake.received[0].command.entries[0].text.startswith("2 alerts:")
    notices = sorted(smarthost[0].received, key=lambda g: g.rcpt_tos)
    assert [n.rcpt_tos for n in notices] == [["zabbix@mon1.example.com"], ["zabbix@mon2.example.com"]]
    for n in notices:
        text = n.raw.decode()
        assert n.mail_from == "<>" and "provider ERROR 7: invalid phone" in text
        assert "Final-Recipient: rfc822; zabbix@sms.example.com" in text


def test_a_cyrillic_reason_is_encoded_not_written_raw() -> None:
    from datetime import UTC, datetime

    from relay.delivery.notices import build
    from relay.model import Encoding, RouteMode, State
    from relay.spool.messages import Row

    reason = "provider ERROR 7: неверный формат номера телефона"
    row = Row(
        id="r1", state=State.FAILED, mode=RouteMode.COMMAND, route="number", mail_from="cron@db1.example.com",
        rcpt_tos=["79991234567@sms.example.com"], inbound_id="<i>", phones=["79991234567"], texts=["x"], parts=1,
        encoding=Encoding.GSM7, upstream_from="r@x", upstream_to="send@send.smscentre.com", message=b"", masked=True,
        attempts=1, created=0, updated=0, next_attempt=0, last_error=reason, error_code=7, sms_count=None,
    )  # fmt: skip
    raw = build(row, reporting_host="relay.test", sender="smsc-relay@relay.test", now=datetime.now(UTC))
    assert raw.isascii() and b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(msg["Subject"]) == f"SMS not sent: {reason}"
    assert msg.get_content_type() == "multipart/report" and msg.get_param("report-type") == "delivery-status"
    text = next(p for p in msg.walk() if p.get_content_type() == "text/plain")
    assert reason in text.get_content()
