"""provider.transport: smpp end to end (issue 24): the relay as a real process (smpp34 runs in
it: see tests/test_smpp_session.py), a mail from a real SMTP client, the fake SMSC
(tests/fake_smsc.py) taking its submits and pushing receipts, the outcome read with the
relay's own `queue show`, /health and /metrics. A mail goes out over SMPP and its receipt
delivers it; an undelivered part fails its phone; unknown receipts and incoming SMS are kept;
a dropped session re-binds and loses nothing; a refused bind says why; failover takes the HTTP
API while no session binds; a SIGKILL with submits outstanding loses nothing and sends again
only what the SMSC had not answered."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import json
import signal
import smtplib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from relay.cli import main as cli
from relay.cli.queue import open_admin
from relay.config import load as config_mod
from tests.fake_api import FakeApi
from tests.fake_smsc import FakeSmsc, text_of
from tests.fakes import FakeProvider, wait_for
from tests.helpers import free_port, relay_config_text
from tests.relays import RelayProcess
from tests.scrape import get, value

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
PASSWORD = "s3cr-t8!"  # SMPP 3.4: a bind's password has 8 characters at most
# The number route as the tests' routes have it, without summaries: a long text goes as parts.
ROUTES = r"""
routes:
  - name: number
    match: {recipient: '^(?P<phones>\+?[0-9]{10,15})@sms\.example\.com$'}
    summary: "off"
"""
LONG = "Disk /var on db01 is 97% full. " * 8  # 248 GSM-7 characters: two parts


class Setup:
    def __init__(self, tmp_path: Path, smsc: FakeSmsc, smsc_port: int, spool_yaml: str) -> None:
        self.tmp_path, self.smsc, self.smsc_port, self.spool_yaml = tmp_path, smsc, smsc_port, spool_yaml
        self.metrics_port = free_port()
        self.relays: list[RelayProcess] = []

    def config(self, provider_extra: str = "", extra: str = "") -> Path:
        path = self.tmp_path / "relay.yaml"
        path.write_text(
            relay_config_text(
                networks="[127.0.0.0/8]", max_connections=20, provider_port=1, password=PASSWORD,
                outbox="null", spool=self.spool_yaml, timeout=5, max_age=3600, listen_extra="",
                provider_extra=(
                    "  transport: smpp\n  test: false\n"
                    f"  smpp: {{host: 127.0.0.1, port: {self.smsc_port}, backup_host: '', bind_timeout: 2}}\n"
                    + provider_extra
                ),
                extra=f"metrics: {{listen: '127.0.0.1:{self.metrics_port}'}}\n{extra}", routes=ROUTES,
            )
        )  # fmt: skip
        return path

    async def relay(self, provider_extra: str = "", extra: str = "") -> RelayProcess:
        rp = RelayProcess(self.config(provider_extra, extra), self.tmp_path / "relay.log")
        await rp.start()
        self.relays.append(rp)
        return rp

    def cli(self, *args: str) -> tuple[int, str]:
        """The relay's own command line on this config (its output captured)."""
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = cli.main([*args, "-c", str(self.tmp_path / "relay.yaml")])
        return code, out.getvalue()

    def items(self) -> list[dict[str, Any]]:
        code, out = self.cli("queue", "list", "--json")
        assert code == 0
        return list(json.loads(out))

    def states(self) -> list[str]:
        return sorted(i["state"] for i in self.items())

    def log(self) -> str:
        return (self.tmp_path / "relay.log").read_text(errors="replace")


@pytest.fixture
async def setup(tmp_path: Path, spool_yaml: str) -> AsyncIterator[Setup]:
    """A fake SMSC, and relays on the test's spool backend (each test runs on both)."""
    smsc = FakeSmsc(system_id="mylogin", password=PASSWORD)
    port = await smsc.start()
    s = Setup(tmp_path, smsc, port, spool_yaml)
    yield s
    for rp in s.relays:
        if rp.proc and rp.proc.returncode is None:
            rp.proc.kill()
            await rp.proc.wait()
    await smsc.stop()


def send(port: int, text: str, to: tuple[str, ...] = ("79991234567",), subject: str = "alert") -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        rcpts = [f"{phone}@sms.example.com" for phone in to]
        smtp.sendmail("monitor@example.com", rcpts, f"Subject: {subject}\r\n\r\n{text}\r\n")


async def until(what: Callable[[], bool], timeout: float = 20) -> None:
    """A condition on the CLI's view, polled off the loop (the fake SMSC runs on it)."""

    async def check() -> bool:
        return await asyncio.to_thread(what)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.1)


async def test_mail_goes_out_over_smpp_and_its_receipt_delivers_it(setup: Setup) -> None:
    relay = await setup.relay()
    await asyncio.to_thread(send, relay.port, "CRITICAL db01 disk 97%")
    await wait_for(lambda: len(setup.smsc.ids) == 1, timeout=20)
    ((message_id, pdu),) = setup.smsc.ids.items()
    assert pdu.destination_addr == b"79991234567" and pdu.registered_delivery == 1
    assert text_of(pdu)[2].startswith("alert\nCRITICAL db01 disk 97%")
    assert pdu.validity_period == b"000001000000000R"  # a day, relative (provider.smpp.validity)
    await until(lambda: setup.states() == ["confirmed"])
    status, body = await get(setup.metrics_port, "/health")
    assert (status, body) == (200, "ok\n")
    status, text = await get(setup.metrics_port, "/metrics")
    assert value(text, "smsc_relay_smpp_sessions_bound") == 1.0

    assert await setup.smsc.push_receipt(message_id, "DELIVRD")
    await until(lambda: setup.states() == ["delivered"])
    (item,) = setup.items()
    code, out = setup.cli("queue", "show", item["id"])
    assert code == 0 and PASSWORD not in out
    assert "SMPP parts:" in out and message_id in out
    assert "79991234567      1 delivered" in out  # the phone's status, from the receipt
    code, out = setup.cli("queue", "show", item["id"], "--json")
    (part,) = json.loads(out)["smpp_parts"]
    assert (part["message_id"], part["status"], part["part"]) == (message_id, 1, 1)
    _, text = await get(setup.metrics_port, "/metrics")
    assert 'smsc_relay_smpp_deliver_sm_total{kind="receipt"} 1.0' in text
    assert 'smsc_relay_transport_sends_total{transport="smpp"} 1.0' in text

    # send-test goes through the running relay as any mail does: out over SMPP, confirmed.
    code, out = await asyncio.to_thread(setup.cli, "send-test", "--wait", "30", "+79991234568", "smpp test")
    assert code == 0 and "confirmed" in out
    assert any(p.destination_addr == b"79991234568" for p in setup.smsc.submits)

    relay.signal(signal.SIGTERM)
    assert await relay.wait() == 0  # and no crash of the SMPP library's runtime at exit
    await wait_for(lambda: "unbind" in setup.smsc.events)


async def test_an_undelivered_part_fails_its_phone_and_the_rest_is_kept(
    setup: Setup, provider: tuple[FakeProvider, int]
) -> None:
    mta, mta_port = provider  # where the sender's notice goes (notify.smarthost)
    relay = await setup.relay(extra=f"notify: {{smarthost: 127.0.0.1, port: {mta_port}}}\n")
    await asyncio.to_thread(send, relay.port, LONG, ("79990000001", "79990000002"))  # one request
    await wait_for(lambda: len(setup.smsc.ids) == 4, timeout=20)
    await until(lambda: setup.states() == ["confirmed"])
    parts = collections.defaultdict(list)
    for message_id, pdu in sorted(setup.smsc.ids.items(), key=lambda i: i[1].short_message[5]):
        _, count, _ = text_of(pdu)
        assert count == 2
        parts[pdu.destination_addr.decode()].append(message_id)  # in order: the UDH's part number
    first, second = sorted(parts)
    # A receipt for an id the relay never had, and an incoming SMS: kept, nothing changes.
    assert await setup.smsc.push_receipt("deadbeef", "DELIVRD", phone=first)
    assert await setup.smsc.push_sms("STOP", phone=second)
    for message_id in parts[first]:
        assert await setup.smsc.push_receipt(message_id, "DELIVRD")
    await until(lambda: _phone(setup, first) == 1)
    assert setup.states() == ["confirmed"]  # one phone delivered, the other still open
    a, b = parts[second]
    assert await setup.smsc.push_receipt(a, "DELIVRD")
    assert await setup.smsc.push_receipt(b, "UNDELIV")
    await until(lambda: setup.states() == ["undelivered"])
    (item,) = setup.items()
    assert f"phone {second}: status 20 (cannot be delivered)" in item["error"]
    await wait_for(lambda: len(mta.received) == 1, timeout=20)  # the sender is told, as tracking does
    assert mta.received[0].rcpt_tos == ["monitor@example.com"] and b"SMS not delivered" in mta.received[0].raw
    assert await setup.smsc.push_receipt(b, "DELIVRD")  # late and contradicting: changes nothing
    await wait_for(lambda: setup.smsc.deliver_resps == 7, timeout=10)  # every deliver_sm answered
    await until(
        lambda: (
            "event=smpp_receipt message_id=" + b in setup.log() and setup.log().count("smpp_receipt ") >= 6
        )
    )
    assert setup.states() == ["undelivered"]
    _code, out = setup.cli("queue", "show", item["id"], "--json")
    statuses = {(p["phone"].lstrip("+"), p["part"]): p["status"] for p in json.loads(out)["smpp_parts"]}
    assert statuses == {(first, 1): 1, (first, 2): 1, (second, 1): 1, (second, 2): 20}
    kept = _kept(setup)
    assert [k["kind"] for k in kept] == ["sms", "receipt"]
    assert "STOP" in kept[0]["digest"] and "deadbeef" in kept[1]["digest"]


def _phone(setup: Setup, phone: str) -> int | None:
    (item,) = setup.items()
    _code, out = setup.cli("queue", "show", item["id"], "--json")
    found = [d["status"] for d in json.loads(out)["delivery"] if d["phone"].lstrip("+") == phone]
    return found[0] if found else None


def _kept(setup: Setup) -> list[dict[str, Any]]:
    cfg = config_mod.load(setup.tmp_path / "relay.yaml", secrets=False)
    with contextlib.closing(open_admin(cfg.spool)) as spool:
        return spool.smpp_inbound(10)


async def test_a_dropped_session_rebinds_and_loses_nothing(setup: Setup) -> None:
    relay = await setup.relay()
    await asyncio.to_thread(send, relay.port, "first")
    await wait_for(lambda: len(setup.smsc.ids) == 1, timeout=20)
    setup.smsc.drop_sessions()
    for n in range(5):
        await asyncio.to_thread(send, relay.port, f"after the drop {n}")
    await until(lambda: setup.states() == ["confirmed"] * 6, timeout=40)
    texts = sorted(text_of(p)[2] for p in setup.smsc.submits)
    assert len(texts) == 6 and len(set(texts)) == 6  # each once
    assert setup.smsc.events.count("bind_transceiver") >= 2
    assert "event=smpp_session_lost" in setup.log() and setup.log().count("event=smpp_bound") >= 2


async def test_a_refused_bind_says_why_and_failover_takes_the_http_api(setup: Setup) -> None:
    setup.smsc.refuse_binds = True
    relay = await setup.relay()
    await wait_for(lambda: setup.smsc.events.count("bind_transceiver") >= 1, timeout=20)

    async def health() -> tuple[int, str]:
        return await get(setup.metrics_port, "/health")

    for _ in range(100):  # "not bound yet" until the first bind has failed
        status, body = await health()
        if "cannot bind" in body:
            break
        await asyncio.sleep(0.1)
    assert status == 503 and body.startswith("no SMPP session bound: cannot bind (")
    assert "SMPP access off" in body and "allowed list" in body and PASSWORD not in body
    relay.signal(signal.SIGTERM)
    assert await relay.wait() == 0

    api = FakeApi(password=PASSWORD)
    runner, url = await api.start()
    try:
        relay = await setup.relay(f"  failover: true\n  api_url: {url}\n")
        await asyncio.to_thread(send, relay.port, "while SMPP is down")
        await until(lambda: setup.states() == ["confirmed"], timeout=30)
        assert [s.text for s in api.sms] == ["alert\nwhile SMPP is down"] and not setup.smsc.submits
        (item,) = setup.items()
        assert item["via"] == "http"
        assert "event=failover to=http" in setup.log()
        status, body = await health()
        assert status == 200  # with failover, mail still goes out
    finally:
        await runner.cleanup()


async def _sigkill_with_submits_out(setup: Setup, provider_extra: str = "") -> tuple[float, int]:
    """Mails out as submits the SMSC has not answered, a SIGKILL, a restart: (seconds from the
    restart until every mail is confirmed, submits sent again)."""
    setup.smsc.answer_delay = 30.0  # none answered before the kill
    relay = await setup.relay(provider_extra)
    total = 8
    for n in range(total):
        await asyncio.to_thread(send, relay.port, f"mail {n}")
    await wait_for(lambda: len(setup.smsc.submits) >= 2, timeout=20)
    answered_before = len(setup.smsc.ids)
    relay.signal(signal.SIGKILL)
    await relay.wait()
    outstanding = len(setup.smsc.submits) - answered_before
    assert outstanding > 0  # the kill came with submits out, unanswered
    setup.smsc.answer_delay = 0.0
    loop = asyncio.get_running_loop()
    restarted = loop.time()
    relay = await setup.relay(provider_extra)
    await until(lambda: setup.states() == ["confirmed"] * total, timeout=120)
    took = loop.time() - restarted
    texts = collections.Counter(text_of(p)[2] for p in setup.smsc.submits)
    assert sorted(texts) == sorted(f"alert\nmail {n}" for n in range(total))  # nothing lost
    duplicates = sum(texts.values()) - total
    assert duplicates <= outstanding  # only what the SMSC had not answered went twice
    assert "event=recovered" in setup.log() and "event=uncertain_resend" in setup.log()
    return took, duplicates


@pytest.mark.sqlite_only
@pytest.mark.timeout(240)
async def test_sigkill_with_submits_outstanding_waits_the_minute_then_loses_nothing(setup: Setup) -> None:
    """No HTTP API to ask: what the crash cut off goes again only after the provider's minute."""
    took, _ = await _sigkill_with_submits_out(setup)
    assert "event=uncertain_held" in setup.log()
    assert took >= 60  # held: within the minute the provider would refuse the identical request


async def test_sigkill_with_submits_outstanding_asks_status_php_first(setup: Setup) -> None:
    """With the HTTP API in use (failover), status.php is asked first: no minute's wait."""
    api = FakeApi(password=PASSWORD)
    runner, url = await api.start()
    try:
        took, _ = await _sigkill_with_submits_out(setup, f"  failover: true\n  api_url: {url}\n")
    finally:
        await runner.cleanup()
    assert "event=uncertain_held" not in setup.log() and took < 60
    assert api.status_by_id  # asked by the relay's ids before sending again


async def test_sighup_with_new_smpp_settings_binds_new_sessions(setup: Setup) -> None:
    """SIGHUP with another window: the sessions unbind and new ones bind; mail goes on."""
    relay = await setup.relay()
    await wait_for(lambda: setup.smsc.events.count("bind_transceiver") == 1, timeout=20)
    path = setup.tmp_path / "relay.yaml"
    path.write_text(path.read_text().replace("bind_timeout: 2}", "bind_timeout: 2, window: 5}"))
    relay.signal(signal.SIGHUP)
    await until(lambda: "event=smpp_sessions_renewed sessions=1" in setup.log())
    await wait_for(lambda: setup.smsc.events.count("bind_transceiver") == 2, timeout=20)
    assert "unbind" in setup.smsc.events  # the old session ended on purpose
    await asyncio.to_thread(send, relay.port, "after the reload")
    await until(lambda: setup.states() == ["confirmed"])
