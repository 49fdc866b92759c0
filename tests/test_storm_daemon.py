"""Alert storms through the whole daemon: real SMTP in, the spool, a provider that enforces its
duplicate and flood rules and answers like the real one; time is simulated so that holds and
windows of minutes take milliseconds."""

from __future__ import annotations

import asyncio
import json
from email.message import EmailMessage
from typing import Any

import pytest

from relay.cli import main as cli
from relay.daemon.main import Daemon
from tests.fakes import ProviderLimits, ReplyingProvider, wait_for
from tests.helpers import STORM_ROUTES, Clock, drain, smtplib_send, until, wait_settled
from tests.storms import DEFAULT_STORM_ROUTES, T0, alerts_in, sms_texts, to, variant, volatile

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def start(replying_relay: Any, clock: Clock) -> tuple[ReplyingProvider, Daemon, ProviderLimits]:
    limits = ProviderLimits(clock=clock)
    fake = ReplyingProvider(answer=limits.answer)
    fake, relay = await replying_relay(fake, routes=STORM_ROUTES, clock=clock)
    return fake, relay, limits


async def test_replies_say_held_repeat_and_flap(
    replying_relay: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = Clock(T0)
    fake, relay, _ = await start(replying_relay, clock)
    send = asyncio.to_thread
    reply = await send(
        smtplib_send, relay.port, to(variant("zabbix_problem.eml", 1), "zabbix@sms.example.com")
    )
    assert reply == {}
    raw = await send(_data_reply, relay.port, to(variant("zabbix_problem.eml", 1), "zabbix@sms.example.com"))
    assert raw.startswith("2.0.0 repeat counted as r")
    raw = await send(_data_reply, relay.port, to(variant("zabbix_recovery.eml", 1), "zabbix@sms.example.com"))
    assert raw.startswith("2.0.0 flap closed as r")
    # a plain route in the same mail is queued at once, as always
    msg = to(variant("zabbix_problem.eml", 2), "zabbix@sms.example.com")
    both = await send(_data_reply, relay.port, msg, ["zabbix@sms.example.com", "79991234567@sms.example.com"])
    assert both.startswith("2.0.0 queued as r") and "; held as r" in both
    await wait_for(lambda: len(fake.received) == 1)
    await drain(relay, clock)
    await wait_for(lambda: len(fake.received) == 2)
    texts = sms_texts(fake)
    assert len(texts) == 2 and "app-02" in texts[1] and not any("app-01" in t for t in texts)
    code = await asyncio.to_thread(cli.main, ["stats", "--json", "-c", str(relay.config_path)])
    stats = json.loads(capsys.readouterr().out)
    assert code == 0 and stats["storm_alerts"] == {"sent": 1, "repeat": 1, "cancelled": 2}
    args = ["queue", "alerts", "--json", "-c", str(relay.config_path)]
    code = await asyncio.to_thread(cli.main, args)
    alerts = json.loads(capsys.readouterr().out)
    assert sorted((a["state"], a["kind"]) for a in alerts) == [
        ("cancelled", "problem"), ("cancelled", "recovery"), ("repeat", "problem"), ("sent", "problem"),
    ]  # fmt: skip
    (sent,) = [a for a in alerts if a["state"] == "sent"]
    assert sent["message_id"] == fake.received[1].relay_id and "app-02" in sent["text"]
    (flapped,) = [a for a in alerts if a["state"] == "cancelled" and a["kind"] == "problem"]
    assert "recovered before it was sent" in flapped["note"]
    code = await asyncio.to_thread(cli.main, ["queue", "alerts", "-c", str(relay.config_path)])
    out = capsys.readouterr().out
    assert code == 0 and sent["message_id"] in out and "recovered before it was sent" in out


def _data_reply(port: int, msg: EmailMessage, rcpts: list[str] | None = None) -> str:
    import smtplib

    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo()
        client.mail("zabbix@mon.example.com")
        for r in rcpts or [str(msg["To"])]:
            client.rcpt(r)
        code, text = client.data(msg.as_bytes())
        assert code == 250
        return text.decode()


async def test_restart_in_the_middle_of_a_hold_loses_nothing_and_sends_nothing_twice(
    replying_relay: Any, relay_factory: Any
) -> None:
    clock = Clock(T0)
    fake, relay, limits = await start(replying_relay, clock)
    for n in (1, 2, 3, 1):  # three problems and one repeat
        clock.now += 1
        msg = to(variant("zabbix_problem.eml", n), "zabbix@sms.example.com")
        await asyncio.to_thread(smtplib_send, relay.port, msg)
    await until(relay, clock, T0 + 10)  # still inside the 20 s hold
    assert fake.received == []
    await relay.stop()

    relay = await relay_factory(relay.cfg.provider.port, routes=STORM_ROUTES, clock=clock)
    fake.relay_port = relay.port
    await until(relay, clock, T0 + 21)
    await wait_for(lambda: len(fake.received) == 1)
    (first,) = sms_texts(fake)
    # compact summaries: all three fit in max_parts, the oldest first
    assert first.startswith("3 alerts:\nPROBLEM app-01: High CPU") and "(+" not in first
    assert first.index("app-01") < first.index("app-02") < first.index("app-03")

    await relay.stop()  # and again, inside the dedup window that counted the repeat
    relay = await relay_factory(relay.cfg.provider.port, routes=STORM_ROUTES, clock=clock)
    fake.relay_port = relay.port
    await drain(relay, clock)
    await wait_for(lambda: len(fake.received) == 2)
    (followup,) = sms_texts(fake)[1:]
    assert clock.now >= T0 + 300
    assert followup.startswith("Repeated 1 more time in 5 min: PROBLEM app-01: High CPU")
    await until(relay, clock, clock.now + 3600)
    assert await relay.spool.count_waiting() == 0 and not relay.deliverer.in_flight  # nothing more to go
    assert len(fake.received) == 2 and limits.rejections == []


@pytest.mark.parametrize(
    ("problem", "recovery", "rcpt", "tag"),
    [
        ("zabbix_problem.eml", "zabbix_recovery.eml", "zabbix@sms.example.com", "app-{:02}"),
        ("nagios_host_problem.eml", "nagios_host_problem.eml", "nagios@sms.example.com", "web{:02}"),
    ],
)
async def test_corpus_storm(replying_relay: Any, problem: str, recovery: str, rcpt: str, tag: str) -> None:
    """200 mails in 100 s: 20 problems repeated over and over; 0-4 recover within the hold (flaps:
    neither is sent), 17-19 recover later. The provider refuses nothing, far fewer SMS go than
    mails came, every problem that did not flap is in some SMS, and a recovery goes out whenever
    its problem did."""
    clock = Clock(T0)
    fake, relay, limits = await start(replying_relay, clock)
    mails: list[EmailMessage] = []
    for i in range(200):
        if i < 30:
            mails.append(variant(problem, i % 20))
        elif i < 35:
            mails.append(variant(recovery, i - 30, recovery=True))
        elif i in (150, 151, 152):
            mails.append(variant(recovery, i - 133, recovery=True))
        else:  # after their recoveries, 17-19 stay quiet
            n = 5 + i % 15
            mails.append(variant(problem, n - 10 if i > 152 and n in (17, 18, 19) else n))
    for i, msg in enumerate(mails):
        clock.now = T0 + i * 0.5
        await asyncio.to_thread(smtplib_send, relay.port, to(msg, rcpt))
        if i == 39:  # the first hold ends at T0 + 20: the flaps' recoveries came before it
            assert fake.received == []
        if i % 10 == 0:
            await until(relay, clock, clock.now)
    await drain(relay, clock)
    # The planner is done; delivery may still be sending its last SMS (a busy machine): wait for
    # the queue to be empty, then for the provider's replies.
    await wait_settled(relay, timeout=60)
    await wait_for(lambda: not fake.tasks)
    assert limits.rejections == []
    units = [alert for t in sms_texts(fake) for alert in alerts_in(t)]
    for n in range(20):
        mentioned = [unit for unit in units if tag.format(n) in unit]
        problems = [x for x in mentioned if not any(w in x for w in ("Resolved", "RESOLVED", "RECOVERY"))]
        recoveries = [x for x in mentioned if x not in problems]
        if n < 5:
            assert not mentioned, n  # flapped within the hold
        elif n in (17, 18, 19):  # recovered after their hold: the problem and its recovery are news
            assert problems and recoveries, (n, mentioned)
        else:
            assert problems and not recoveries, n
    assert len(fake.received) <= 25, len(fake.received)  # against 200 mails sent one-to-one


async def test_a_storm_with_volatile_fields_on_default_settings_names_every_host(replying_relay: Any) -> None:
    """No patterns: the recognisers give identity. 6 hosts share the Zabbix CPU trigger and 4
    Nagios hosts are down; 120 mails whose times, values and event ids all differ."""
    clock = Clock(T0)
    limits = ProviderLimits(clock=clock)
    fake, relay = await replying_relay(
        ReplyingProvider(answer=limits.answer), routes=DEFAULT_STORM_ROUTES, clock=clock
    )
    hosts = [("zabbix_problem.eml", f"app-{n:02}") for n in range(6)]
    hosts += [("nagios_host_problem.eml", f"web{n:02}") for n in range(4)]
    for i in range(120):
        name, host = hosts[i % len(hosts)]
        clock.now = T0 + i * 0.5
        await asyncio.to_thread(
            smtplib_send, relay.port, to(volatile(name, host, i), "defaults@sms.example.com")
        )
        if i % 10 == 0:
            await until(relay, clock, clock.now)
    await drain(relay, clock)
    # The planner is done; delivery may still be sending its last SMS (a busy machine): wait for
    # the queue to be empty, then for the provider's replies.
    await wait_settled(relay, timeout=60)
    await wait_for(lambda: not fake.tasks)
    assert limits.rejections == []
    texts = sms_texts(fake)
    lines = [a for t in texts for a in alerts_in(t)]
    for _, host in hosts:
        named = [x for x in lines if f" {host}" in x and not x.startswith("Repeated")]
        assert len(named) == 1, (host, named)  # every alert named, and named once
    repeats = [x for x in lines if x.startswith("Repeated")]
    assert len(repeats) == len(hosts)  # the other 110 mails were counted, not sent
    # the first digest: the oldest first, as many as fit, the rest named in the next ones
    assert texts[0].startswith("10 alerts:\nPROBLEM app-00: High CPU utilization") and "(+" in texts[0]
