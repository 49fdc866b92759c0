"""The provider's per-phone limits on every route, not only on storm routes."""

from __future__ import annotations

import asyncio
import json
import smtplib
import time
from pathlib import Path
from typing import Any

from relay.cli import main as cli
from relay.model import Entry
from relay.storm import pacing
from relay.storm.pacing import FLOOD_GAP, FLOOD_LIMIT, REPEAT_WINDOW, SAFETY, Send
from tests.fakes import ProviderLimits, ReplyingProvider, wait_for
from tests.spooldb import states

T0 = 1_795_348_800.0
PHONE = "79991234567"


def test_the_same_text_again_within_the_minute_is_a_repeat() -> None:
    history = {PHONE: [Send(T0 - 30, pacing.text_digest("disk full"))]}
    assert pacing.protect([Entry((PHONE,), "disk  full")], history, T0).repeat
    assert not pacing.protect([Entry((PHONE,), "disk full")], history, T0 + 40).repeat  # past 65 s
    assert not pacing.protect([Entry((PHONE,), "load high")], history, T0).repeat


def test_one_phone_of_two_got_it_already_so_the_request_waits_out_the_minute() -> None:
    history = {PHONE: [Send(T0 - 30, pacing.text_digest("disk full"))]}
    verdict = pacing.protect([Entry((PHONE, "79990000002"), "disk full")], history, T0)
    assert not verdict.repeat and verdict.not_before == T0 - 30 + REPEAT_WINDOW + SAFETY


def test_the_50th_short_gap_sms_waits_until_the_run_is_broken() -> None:
    run = [Send(T0 - 100 + n, f"t{n}") for n in range(FLOOD_LIMIT - 1)]
    verdict = pacing.protect([Entry((PHONE,), "one more")], {PHONE: run}, T0)
    assert verdict.not_before == run[-1].at + FLOOD_GAP + SAFETY and "would block" in verdict.reason
    assert pacing.protect([Entry((PHONE,), "one more")], {PHONE: run[:-1]}, T0).not_before == 0.0


def send(port: int, text: str) -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo()
        client.mail("cron@db1.example.com")
        client.rcpt(f"{PHONE}@sms.example.com")
        code, reply = client.data(f"Subject: alert\r\n\r\n{text}".encode())
        assert code == 250
        return reply.decode()


async def test_a_plain_route_never_gets_a_phone_refused_or_blocked(
    replying_relay: Any, tmp_path: Path, capsys: Any
) -> None:
    limits = ProviderLimits()
    fake, relay = await replying_relay(ReplyingProvider(answer=limits.answer))
    first = await asyncio.to_thread(send, relay.port, "disk full on db1")
    assert first.startswith("2.0.0 queued as ")
    again = await asyncio.to_thread(send, relay.port, "disk full on db1")
    assert "not sent, a repeat" in again and "within the provider's minute" in again
    for n in range(60):  # a storm of different texts to one phone, without storm control
        await asyncio.to_thread(send, relay.port, f"disk full on db1, check {n}")
    last = await asyncio.to_thread(send, relay.port, "the last one")
    assert "held until" in last and "to protect the phone" in last
    await wait_for(lambda: len(fake.received) == FLOOD_LIMIT - 1, timeout=30)
    found = await states(relay)
    counted = {s: list(found.values()).count(s) for s in set(found.values())}
    assert counted.get("repeat") == 1 and counted.get("deferred") == 63 - 1 - (
        FLOOD_LIMIT - 1
    )  # 63 mails, 1 repeat
    assert limits.rejections == []  # the provider refused nothing: the phone is not blocked
    # The held ones wait for the run to be broken: more than FLOOD_GAP after the last one sent.
    due = await relay.spool.next_due()
    assert due is not None and due >= time.time() + FLOOD_GAP - 30
    held = relay.metrics.registry.get_sample_value("smsc_relay_phone_protected_total", {"action": "held"})
    assert held == 63 - 1 - (FLOOD_LIMIT - 1)
    assert (
        await asyncio.to_thread(cli.main, ["queue", "list", "--json", "-c", str(tmp_path / "relay.yaml")])
        == 0
    )
    listed = json.loads(capsys.readouterr().out)
    waiting = [m for m in listed if m["state"] == "deferred"]
    assert waiting and all("short gaps: the provider would block it" in m["error"] for m in waiting)
    assert all("next_attempt" in m for m in waiting)


async def test_phone_limits_can_be_switched_off(replying_relay: Any) -> None:
    limits = ProviderLimits()
    _fake, relay = await replying_relay(
        ReplyingProvider(answer=limits.answer), provider_extra="  phone_limits: false\n"
    )
    await asyncio.to_thread(send, relay.port, "disk full on db1")
    again = await asyncio.to_thread(send, relay.port, "disk full on db1")
    assert "repeat" not in again
    await wait_for(lambda: len(limits.rejections) == 1)  # as before: the provider's error 9
