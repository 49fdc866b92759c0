"""The provider's HTTP API as transport: real relay, real HTTP to a fake that answers like the
provider (tests/fake_api.py), real SQLite spool.

Cyrillic and emoji intact (charset=utf-8), every error code's policy, 5xx and timeouts, the
uncertain send that must not become two SMS, mirrors, the password in no log line or URL.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from decimal import Decimal
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from relay import pipeline
from relay.daemon.main import Daemon
from relay.delivery.http import ApiClient, HttpTransport
from relay.delivery.transport import Outgoing
from relay.errors import UpstreamUnavailable
from relay.formatters import api as api_form
from relay.formatters import mime
from relay.formatters import provider as provider_fmt
from relay.parsers import command
from tests import spooldb
from tests.fake_api import API_KEY, FakeApi
from tests.fakes import wait_for
from tests.helpers import NOW, PASSWORD, closed_port, make_config, render, sample, smtplib_send, wait_state

Start = Callable[..., Any]


def sms(to: str, body: str, subject: str = "") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "app@example.com"
    msg["To"] = f"{to}@sms.example.com"
    if subject:
        msg["Subject"] = subject
    msg.set_content(body)
    return msg


def sends(fake: FakeApi) -> list[dict[str, str]]:
    return [form for method, form in fake.forms if method == "send"]


def methods(fake: FakeApi) -> list[str]:
    """What the relay asked, balance checks left out (the daemon makes one at start)."""
    return [m for m, _ in fake.forms if m != "balance"]


async def send(relay: Daemon, to: str, body: str) -> None:
    await asyncio.to_thread(smtplib_send, relay.port, sms(to, body))


async def test_cyrillic_and_emoji_arrive_intact_with_cost_and_balance(http_relay: Start) -> None:
    fake, relay = await http_relay()
    text = "Сервер упал 🔥 — диск /var заполнен на 99%: проверьте & перезапустите"
    await send(relay, "+79990000001", text)
    r = await wait_state(relay, "confirmed")
    assert fake.texts("+79990000001") == [text]
    assert (r["via"], r["sms_count"], r["cost"], r["balance"]) == ("http", 1, "1.50", "98.50")
    sent = sends(fake)[0]
    assert (sent["charset"], sent["fmt"], sent["cost"], sent["op"], sent["id"]) == (
        "utf-8",
        "3",
        "3",
        "1",
        r["id"],
    )
    assert sample(relay, "smsc_relay_provider_balance") == 98.5
    # The answer is kept with the message, as a reply mail would be.
    replies = await spooldb.rows(relay, "replies")
    assert [(x["relay_id"], x["outcome"], x["mail_from"]) for x in replies] == [
        (r["id"], "confirmed", "<http answer>")
    ]


async def test_the_fake_garbles_cyrillic_sent_without_charset(api: Start) -> None:
    """The fake reads windows-1251 by default, as the provider does: a client that forgot
    charset=utf-8 would send mojibake, and the test above would see it."""
    fake, url = await api()
    async with httpx.AsyncClient() as client:
        data = {"login": "mylogin", "psw": PASSWORD, "phones": "+79990000001", "mes": "Привет", "fmt": "3"}
        await client.post(url + "send.php", data=data)
    assert fake.texts("+79990000001") == ["Привет".encode().decode("cp1251", "replace")]
    assert fake.texts("+79990000001") != ["Привет"]


@pytest.mark.parametrize(
    ("code", "state", "paused"),
    [(1, "failed", False), (6, "failed", False), (7, "failed", False), (8, "failed", False),
     (2, "queued", True), (3, "queued", True), (4, "deferred", True)],
)  # fmt: skip
async def test_each_error_code_has_its_policy(http_relay: Start, code: int, state: str, paused: bool) -> None:
    fake, relay = await http_relay()
    fake.errors["+79990000001"] = code
    await send(relay, "+79990000001", "hello")
    r = await wait_state(relay, state)
    assert r["error_code"] == code
    assert f"provider ERROR {code}" in r["last_error"]
    control = await relay.spool.control()
    assert ("paused_until" in control) is paused
    if paused:
        expected = 600 if code == 4 else 3600  # block_backoff, pause_interval
        assert float(control["paused_until"]) - r["updated"] == pytest.approx(expected, abs=2)
        assert relay.deliverer.pause_reason.startswith(f"provider ERROR {code}")
    assert fake.sms == []


async def test_error_5_is_a_bad_time_and_fails(http_relay: Start) -> None:
    fake, relay = await http_relay()
    fake.errors["+79990000001"] = 5
    await send(relay, "+79990000001", "hello")
    r = await wait_state(relay, "failed")
    assert r["error_code"] == 5


async def test_http_5xx_defers_and_the_retry_sends_once(http_relay: Start) -> None:
    fake, relay = await http_relay()
    fake.faults = ["500"]
    await send(relay, "+79990000001", "after a 500")
    r = await wait_state(relay, "confirmed")
    assert r["attempts"] == 2
    assert fake.texts("+79990000001") == ["after a 500"]
    assert len(sends(fake)) == 2


async def test_a_5xx_after_processing_is_not_sent_twice(http_relay: Start) -> None:
    """502 after the provider registered it: uncertain; status.php is asked before a resend."""
    fake, relay = await http_relay()
    fake.faults = ["500-after"]
    await send(relay, "+79990000001", "registered, then 502")
    r = await wait_state(relay, "confirmed")
    assert fake.texts("+79990000001") == ["registered, then 502"]
    assert methods(fake) == ["send", "status"]
    assert r["uncertain"] == 0


async def test_a_timeout_after_processing_is_not_sent_twice_and_is_delivered(
    http_relay: Start, clock: Any
) -> None:
    fake, relay = await http_relay(
        FakeApi(clock=clock, stall_for=3.0), api_extra="  track_delivery: true\n", timeout=1, clock=clock
    )
    fake.faults = ["stall"]
    await send(relay, "+79990000001", "slow provider")
    r = await wait_state(relay, "confirmed")
    assert r["attempts"] == 2
    assert fake.texts("+79990000001") == ["slow provider"]  # exactly one SMS
    clock.now += 120
    relay.tracker.wake()
    r = await wait_state(relay, "delivered")
    assert fake.texts("+79990000001") == ["slow provider"]


def http_config(url: str, login: str = "mylogin", password: str = PASSWORD) -> Any:
    return make_config(f"""
provider:
  login: "{login}"
  password: "{password}"
  reply_address: replies@relay.example.com
  transport: http
  api_url: {url}
routes:
  - name: number
    match: {{recipient: '^(?P<phones>\\+?[0-9]{{10,15}})@sms\\.example\\.com$'}}
""")


def direct(cfg: Any, text: str, timeout: float = 5.0) -> tuple[ApiClient, HttpTransport, Outgoing]:
    """The HTTP transport on its own, and one rendered provider mail for it."""
    raw = f"Subject: x\r\n\r\n{text}\r\n".encode()
    mail = render(raw, ["+79990000001@sms.example.com"], cfg).provider_mails[0]
    client = ApiClient(lambda: cfg.provider, lambda: timeout)
    return client, HttpTransport(client), Outgoing(mail.relay_id, mail.mail_from, mail.rcpt_to, mail.message)


async def test_error_9_on_an_unmarked_resend_asks_status_and_confirms(api: Start) -> None:
    """The provider got the first request (its answer was lost) and nothing marked the message
    uncertain: the resend gets ERROR 9, status.php knows the id: confirmed, one SMS."""
    fake, url = await api(FakeApi(stall_for=2.0))
    client, transport, out = direct(http_config(url), "once only", timeout=1.0)
    fake.faults = ["stall"]
    with pytest.raises(Exception, match="timed out") as caught:
        await transport.send(out)
    assert getattr(caught.value, "uncertain", False)
    accepted = await transport.send(out)  # uncertain=False: as if the mark were lost
    assert accepted.answer is not None and accepted.answer.kind.value == "ok"
    assert "registered by an earlier attempt" in accepted.reply
    assert methods(fake) == ["send", "send", "status"]
    assert [a.get("error_code") for m, a in fake.answers if m == "send" and isinstance(a, dict)].count(9) == 1
    assert len(fake.sms) == 1
    await client.close()


async def test_many_uncertain_requests_are_checked_in_one_minute(api: Start) -> None:
    """After a crash, every request cut off is uncertain: each is asked about in status.php's
    single form, a phone at a time (five a minute for each message), not as one list request
    each (one a minute in all, so eight of them would take eight minutes)."""
    fake, url = await api(FakeApi())
    cfg = http_config(url)
    client = ApiClient(lambda: cfg.provider, lambda: 5.0)
    transport = HttpTransport(client)
    for n in range(8):
        raw = f"Subject: x\r\n\r\ncut off {n}\r\n".encode()
        rendered = pipeline.render(raw, mail_from="a@b.example", rcpt_tos=["+79990000001@sms.example.com"],
                                   config=cfg, new_id=f"cut{n}".strip, now=NOW, hostname="relay")  # fmt: skip
        m = rendered.provider_mails[0]
        accepted = await transport.send(
            Outgoing(m.relay_id, m.mail_from, m.rcpt_to, m.message, uncertain=True)
        )
        assert accepted.answer is not None and accepted.answer.kind.value == "ok"  # asked, then sent
    assert fake.status_errors == 0 and not fake.status_lists  # no list request, no ERROR 9
    asked = [f for m, f in fake.forms if m == "status"]
    assert len(asked) == 8 and all("," not in f["id"] and "," not in f["phone"] for f in asked)
    assert len(fake.sms) == 8
    await client.close()


async def test_error_9_for_a_request_the_provider_does_not_know_waits_a_minute(http_relay: Start) -> None:
    """Too many concurrent requests also answer 9: status.php says -3, so it is sent again, but
    only after the provider's minute, and it is never called a duplicate or failed."""
    fake, relay = await http_relay()
    fake.inflight = 14  # the 15th concurrent request is refused with error 9
    await send(relay, "+79990000001", "busy provider")
    r = await wait_state(relay, "deferred")
    assert "does not know the message" in r["last_error"]
    assert r["next_attempt"] - r["updated"] >= 60
    assert fake.sms == []
    fake.inflight = 0
    await spooldb.update(relay, "messages", next_attempt=0)
    relay.deliverer.wake()
    await wait_state(relay, "confirmed")
    assert fake.texts("+79990000001") == ["busy provider"]


async def test_garbage_answer_is_uncertain_not_failed(http_relay: Start) -> None:
    fake, relay = await http_relay()
    fake.faults = ["garbage"]
    await send(relay, "+79990000001", "maintenance page")
    await wait_state(relay, "confirmed")
    assert fake.texts("+79990000001") == ["maintenance page"]


async def test_mirrors_are_tried_in_order(http_relay: Start) -> None:
    with closed_port() as dead:
        fake, relay = await http_relay(
            urls=lambda url: f"  api_url: http://127.0.0.1:{dead}/sys/\n  api_mirrors: [{url}]\n"
        )
        await send(relay, "+79990000001", "via the mirror")
        r = await wait_state(relay, "confirmed")
    assert fake.texts("+79990000001") == ["via the mirror"]
    assert r["attempts"] == 1


async def test_unreachable_api_defers_and_pauses_like_smtp(http_relay: Start) -> None:
    with closed_port() as dead:
        fake, relay = await http_relay(urls=lambda url: f"  api_url: http://127.0.0.1:{dead}/sys/\n")
        await send(relay, "+79990000001", "nobody home")
        r = await wait_state(relay, "deferred")
    assert "127.0.0.1" in r["last_error"] and r["uncertain"] == 0  # never connected: certainly not sent
    assert relay.deliverer.paused_until > 0
    assert fake.sms == []


async def test_api_key_instead_of_login(api: Start) -> None:
    fake, url = await api()
    client, transport, out = direct(http_config(url, login="", password=API_KEY), "by key")
    accepted = await transport.send(out)
    assert accepted.answer is not None and accepted.answer.sms_count == 1
    assert await client.balance() == "98.50"
    await client.close()
    for _, form in fake.forms:
        assert form["apikey"] == API_KEY and "psw" not in form and "login" not in form


async def test_list_form_and_sender_and_flash(http_relay: Start) -> None:
    fake, relay = await http_relay()
    await asyncio.to_thread(smtplib_send, relay.port, sms("oncall", "line one\nline two", subject="Disk"))
    await wait_state(relay, "confirmed")
    form = sends(fake)[0]
    assert form["sender"] == "ALERTS"
    assert "list" in form
    assert fake.texts("+79990000001") == ["Disk\nline one\nline two"]
    assert fake.texts("+79990000002") == ["Disk\nline one\nline two"]


async def test_the_password_is_in_no_log_line_and_no_url(
    http_relay: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake, relay = await http_relay(api_extra="  track_delivery: true\n  low_balance: 1000\n")
    fake.faults = ["500-after", "stall-before"]
    fake.stall_for = 0.5
    fake.errors["+79990000002"] = 2
    await send(relay, "+79990000001", "secret-free")
    await wait_for(lambda: bool(fake.texts("+79990000001")))
    await send(relay, "+79990000002", "login error")
    await wait_for(lambda: any(isinstance(a, dict) and a.get("error_code") == 2 for _, a in fake.answers))
    await wait_for(lambda: bool(relay.deliverer.pause_reason))
    await relay.stop()
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert "event=provider_reply" in everything
    assert PASSWORD not in everything
    assert all(PASSWORD not in u and "psw" not in u for u in fake.urls)
    assert len(fake.urls) >= 3


async def test_the_http_request_is_the_spooled_command() -> None:
    """What `render` shows is what goes out over HTTP: the transport reads the spooled command
    mail (masked; the password put in at send time, as for SMTP)."""
    cfg = make_config()
    mail = render(b"Subject: Disk\r\n\r\nfull\r\n", ["+79990000001@sms.example.com"], cfg).provider_mails[0]
    real = provider_fmt.unmask(mail.masked.encode("ascii"), cfg.provider)
    form = dict(api_form.send_form(command.parse(mime.body_text(real))))
    assert (form["list"], form["psw"], form["id"]) == ("+79990000001:Disk\\nfull", PASSWORD, mail.relay_id)
    assert "phones" not in form and "mes" not in form


@pytest.fixture
def clock() -> Any:
    import time

    from tests.helpers import Clock

    return Clock(time.time())


async def test_balance_gauge_from_every_send(http_relay: Start) -> None:
    fake, relay = await http_relay()
    fake.balance = Decimal("10.00")
    await send(relay, "+79990000001", "one")
    await wait_state(relay, "confirmed")
    assert relay.balance.balance == Decimal("8.50")


async def test_tls_is_verified_against_the_system_trust_store(ca: Any) -> None:
    """An https API whose certificate no system CA signed is refused before anything is sent
    (the password is in the request body: it must never reach an unverified server)."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    fake = FakeApi()
    runner, url = await fake.start(ssl_context=server_ctx)
    try:
        client, transport, out = direct(http_config(url), "secret-bearing")
        with pytest.raises(
            UpstreamUnavailable, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"
        ) as info:
            await transport.send(out)
        assert not info.value.uncertain  # the connection was never made: certainly not sent
        assert fake.forms == [] and fake.sms == []
        await client.close()
    finally:
        await runner.cleanup()
