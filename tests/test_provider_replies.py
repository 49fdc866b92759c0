"""Provider replies close the loop: every request ends confirmed, failed, duplicate, or visibly
unconfirmed; errors that every request would hit pause delivery instead of burning the queue."""

from __future__ import annotations

import asyncio
import email
import json
import smtplib
import time
from typing import Any

import pytest

from relay import ids
from relay.cli import main as cli
from relay.config.schema import ParsingConfig
from relay.model import ProviderReply, ReplyKind, State
from relay.parsers import reply
from relay.spool import replies as spool_replies
from tests import spooldb
from tests.fakes import ReplyingProvider, wait_for
from tests.helpers import closed_port, make_config, message, render, sample, smtplib_send, wait_state
from tests.spooldb import row, states

pytestmark = pytest.mark.timeout(60)
RID = "r19a3f0c2b1d-5e0f2a9c"


@pytest.mark.parametrize(
    ("body", "want"),
    [
        (f"OK - 2 SMS, ID - {RID}", [(ReplyKind.OK, RID, 2, None)]),
        (f"ERROR = 7 (invalid phone number format), ID - {RID}", [(ReplyKind.ERROR, RID, None, 7)]),
        ("ERROR = 2 (authorise error)", [(ReplyKind.ERROR, "r1111111111a-00000000", None, 2)]),
        (f"> OK - 1 SMS, ID - {RID}\n> quoted", [(ReplyKind.OK, RID, 1, None)]),
        (f"Hello,\n\nresult:\n  ok - 3 sms, id - {RID}\n\nRegards", [(ReplyKind.OK, RID, 3, None)]),
        (
            "OK - 1 SMS, ID - a1\nERROR = 8 (undeliverable), ID - a2",
            [(ReplyKind.OK, "a1", 1, None), (ReplyKind.ERROR, "a2", None, 8)],
        ),
        ("Something else entirely", [(ReplyKind.UNKNOWN, "r1111111111a-00000000", None, None)]),
    ],
)
def test_reply_parser(body: str, want: list[tuple[Any, ...]]) -> None:
    raw = ("Subject: Re: SMS x\r\nIn-Reply-To: <r1111111111a-00000000@relay.test>\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body).encode()  # fmt: skip
    got = reply.parse(raw, settings=ParsingConfig())
    assert [(r.kind, r.relay_id, r.sms_count, r.code) for r in got] == want


def test_reply_parser_koi8r_and_html() -> None:
    koi = (
        b"Content-Type: text/plain; charset=koi8-r\r\n\r\n"
        + f"ERROR = 6 (сообщение запрещено), ID - {RID}".encode("koi8-r")
    )
    (r,) = reply.parse(koi, settings=ParsingConfig())
    assert (r.code, r.description, r.relay_id) == (6, "сообщение запрещено", RID)
    html = f"Content-Type: text/html\r\n\r\n<html><body><p><b>OK</b> - 1 SMS, ID - {RID}</p></body></html>".encode()
    (h,) = reply.parse(html, settings=ParsingConfig())
    assert (h.kind, h.sms_count) == (ReplyKind.OK, 1)


@pytest.fixture
async def replying(replying_relay: Any) -> tuple[ReplyingProvider, Any]:
    return await replying_relay()  # type: ignore[no-any-return]


async def test_ok_reply_confirms(
    replying: tuple[ReplyingProvider, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, relay = replying
    await asyncio.to_thread(smtplib_send, relay.port, message(to="oncall@sms.example.com"))
    r = await wait_state(relay, "confirmed")
    assert r["sms_count"] == 2  # two on-call phones
    replies = await spooldb.select(relay, "replies", "kind", "outcome", "line")
    assert replies == [("ok", "confirmed", f"OK - 2 SMS, ID - {r['id']}")]
    config = str(relay.config_path)
    assert await asyncio.to_thread(cli.main, ["queue", "show", r["id"], "--json", "-c", config]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["state"], shown["sms_count"]) == ("confirmed", 2)
    assert [x["line"] for x in shown["provider_replies"]] == [f"OK - 2 SMS, ID - {r['id']}"]
    # What `queue show` says was sent is what was sent: the tagged return path, in the envelope
    # and in the provider mail's From:.
    (sent,) = fake.received
    assert "+" in sent.mail_from and shown["envelope_from"] == sent.mail_from
    header = email.message_from_bytes(sent.raw)["From"]
    assert header == sent.mail_from and f"From: {sent.mail_from}\r\n" in shown["message"]


@pytest.mark.parametrize(
    ("answer", "state", "code"),
    [
        (lambda got: f"ERROR = 7 (invalid phone), ID - {got.relay_id}", "failed", 7),
        (lambda got: "ERROR = 1 (error in parameters)", "failed", 1),  # no ID: matched by In-Reply-To
        (lambda got: "ERROR = 9 (duplicate request)", "duplicate", 9),
    ],
)
async def test_error_replies(
    replying: tuple[ReplyingProvider, Any], answer: Any, state: str, code: int
) -> None:
    fake, relay = replying
    fake.answer = answer
    await asyncio.to_thread(smtplib_send, relay.port, message())
    r = await wait_state(relay, state)
    assert r["error_code"] == code and r["last_error"].startswith(f"provider ERROR {code}: ")
    assert await relay.spool.next_due() is None  # nothing waits for another attempt
    assert len(fake.received) == 1


async def test_funds_error_pauses_until_resumed(
    replying: tuple[ReplyingProvider, Any], tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, relay = replying
    fake.answer = lambda got: "ERROR = 3 (not enough money), ID - " + got.relay_id
    await asyncio.to_thread(smtplib_send, relay.port, message("first"))
    r = await wait_state(relay, "queued")  # not sent by the provider: it waits, nothing lost
    assert r["error_code"] == 3
    await wait_for(lambda: relay.deliverer.pause_reason.startswith("provider ERROR 3"))
    await asyncio.to_thread(smtplib_send, relay.port, message("second"))  # still accepted
    # Delivery holds while paused: both wait in the queue and no worker may claim them.
    assert sorted((await states(relay)).values()) == ["queued", "queued"]
    assert await relay.spool.claim(10, time.time()) == []
    assert len(fake.received) == 1
    config = str(tmp_path / "relay.yaml")
    assert await asyncio.to_thread(cli.main, ["stats", "--json", "-c", config]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["paused"].startswith("provider ERROR 3")
    fake.answer = None  # the operator topped up the account
    assert await asyncio.to_thread(cli.main, ["queue", "resume", "-c", config]) == 0
    await wait_for(lambda: len(fake.received) == 3, timeout=15)  # the held one again, and the new one
    for _ in range(200):
        found = [s for (s,) in await spooldb.select(relay, "messages", "state")]
        if found == ["confirmed", "confirmed"]:
            break
        await asyncio.sleep(0.02)
    assert found == ["confirmed", "confirmed"]


async def test_blocked_ip_holds_the_queue(replying: tuple[ReplyingProvider, Any]) -> None:
    fake, relay = replying
    fake.answer = lambda got: "ERROR = 4 (IP blocked)"
    await asyncio.to_thread(smtplib_send, relay.port, message())
    r = await wait_state(relay, "deferred")
    assert r["error_code"] == 4
    await wait_for(lambda: relay.deliverer.pause_reason.startswith("provider ERROR 4"))


async def test_unknown_id_and_unreadable_replies_are_kept(replying: tuple[ReplyingProvider, Any]) -> None:
    _fake, relay = replying
    for body in ("OK - 1 SMS, ID - nosuchid", "Your account statement is attached."):
        mail = f"From: noreply@smsc.ru\r\nSubject: result\r\n\r\n{body}\r\n"
        await asyncio.to_thread(_send_raw, relay.port, mail, tagged_for(relay, "nosuchid"))
    rows = await spooldb.select(relay, "replies", "kind", "relay_id", "outcome")
    assert rows == [
        ("ok", "nosuchid", "unknown id"),
        ("unknown", "", "kept (unreadable)"),
    ]


def tagged_for(relay: Any, relay_id: str) -> str:
    """The reply address as the provider mail for `relay_id` went out from."""
    return ids.tagged("replies@relay.example.com", ids.reply_tag(relay.spool.reply_key, relay_id))


def _send_raw(port: int, mail: str, to: str = "replies@relay.example.com") -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("noreply@smsc.ru", [to], mail)


async def test_a_reply_counts_only_at_the_address_tagged_for_its_message(
    replying: tuple[ReplyingProvider, Any],
) -> None:
    """Ids are no secret: a forged OK naming a real id changes nothing unless it came to that
    id's tagged return path, which only the provider mail carried."""
    fake, relay = replying
    fake.answer = lambda got: None  # the real provider stays silent: only forgeries come
    await asyncio.to_thread(smtplib_send, relay.port, message())
    sent = await wait_state(relay, "sent")
    assert fake.received[0].mail_from == tagged_for(relay, sent["id"])  # envelope sender...
    assert f"From: {tagged_for(relay, sent['id'])}" in fake.received[0].raw.decode()  # ...and From:
    forged = f"From: noreply@smsc.ru\r\nSubject: r\r\n\r\nERROR = 2 (forged), ID - {sent['id']}\r\n"
    await asyncio.to_thread(_send_raw, relay.port, forged)  # untagged
    await asyncio.to_thread(_send_raw, relay.port, forged, tagged_for(relay, "someone-else"))
    outcomes = [o for (o,) in await spooldb.select(relay, "replies", "outcome")]
    assert outcomes == [
        "kept (untrusted: no reply tag: mail to the untagged reply address)",
        "kept (untrusted: the reply tag is not the one of that message)",
    ]
    assert (await row(relay))["state"] == "sent" and relay.deliverer.pause_reason == ""  # nothing paused
    good = f"From: noreply@smsc.ru\r\nSubject: r\r\n\r\nOK - 1 SMS, ID - {sent['id']}\r\n"
    await asyncio.to_thread(_send_raw, relay.port, good, tagged_for(relay, sent["id"]))
    assert (await row(relay))["state"] == "confirmed"


async def test_replies_accepted_from_outside_networks_but_only_there(relay_factory: Any) -> None:
    relay = await relay_factory(1, networks="[10.0.0.0/8]")  # the provider is never reached

    def both() -> dict[str, Any]:
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
            return client.sendmail("noreply@smsc.ru", [tagged_for(relay, "x1"), "79991234567@sms.example.com"],
                                   "Subject: r\r\n\r\nOK - 1 SMS, ID - x1")  # fmt: skip

    refused = await asyncio.to_thread(both)
    assert refused == {"79991234567@sms.example.com": (554, b"5.7.1 client host rejected: access denied")}
    kinds = await spooldb.select(relay, "replies", "outcome")
    assert kinds == [("unknown id",)]
    assert await spooldb.count(relay, "messages") == 0


async def test_reply_before_sent_is_not_overwritten(relay_factory: Any) -> None:
    with closed_port() as port:
        relay = await relay_factory(port)
    pm = render(b"Subject: x\r\n\r\ny", ["79991234567@sms.example.com"], make_config()).provider_mails
    # Inserted as claimed but never handed to a worker: no delivery touches it meanwhile.
    (claimed,) = (await relay.spool.enqueue(pm, mail_from="a@b", inbound_id="", claimed=True)).rows
    ok = ProviderReply(ReplyKind.OK, relay_id=claimed.id, sms_count=1)
    await relay.spool.record_reply(ok, mail_from="noreply@smsc.ru", raw=b"")
    await relay.spool.finish(claimed.id, State.SENT)  # delivery's bookkeeping, arriving late
    assert (await row(relay))["state"] == "confirmed"


async def test_unconfirmed_sweep(
    replying: tuple[ReplyingProvider, Any], capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    fake, relay = replying
    fake.answer = lambda got: None  # the provider never answers
    await asyncio.to_thread(smtplib_send, relay.port, message())
    await wait_state(relay, "sent")
    assert await relay.spool.sweep_unconfirmed(0) == 1
    assert (await row(relay))["state"] == "unconfirmed"
    assert await asyncio.to_thread(cli.main, ["stats", "--json", "-c", str(tmp_path / "relay.yaml")]) == 0
    assert json.loads(capsys.readouterr().out)["states"]["unconfirmed"] == 1


# Every code, in the form the SMTP page gives it: 1, 2, 4, 5, 9 without an ID; 3, 6, 7, 8 with one.
CODES = {1: "failed", 2: "queued", 3: "queued", 4: "deferred", 5: "failed", 6: "failed", 7: "failed",
         8: "failed", 9: "duplicate"}  # fmt: skip


@pytest.mark.parametrize("code", sorted(CODES))
async def test_every_provider_error_code(replying: tuple[ReplyingProvider, Any], code: int) -> None:
    fake, relay = replying
    with_id = code in (3, 6, 7, 8)
    fake.answer = lambda got: (
        f"ERROR = {code} (description {code})" + (f", ID - {got.relay_id}" if with_id else "")
    )
    await asyncio.to_thread(smtplib_send, relay.port, message())
    r = await wait_state(relay, CODES[code])
    hint = " (if the route sets a sender name, is it registered with the account?)" if code == 6 else ""
    assert (r["error_code"], r["last_error"]) == (code, f"provider ERROR {code}: description {code}{hint}")
    paused = relay.deliverer.pause_reason
    assert bool(paused) == (code in (2, 3, 4))


async def test_retention_prunes_only_old_finished_rows(replying: tuple[ReplyingProvider, Any]) -> None:
    fake, relay = replying
    for n in range(3):
        await asyncio.to_thread(smtplib_send, relay.port, message(f"m{n}"))
    await wait_for(lambda: len(fake.received) == 3)
    for _ in range(500):
        found = [s for (s,) in await spooldb.select(relay, "messages", "state")]
        replies = await spooldb.count(relay, "replies")
        if found.count("confirmed") == 3 and replies == 3:
            break
        await asyncio.sleep(0.02)
    assert found.count("confirmed") == 3 and replies == 3
    # Age two of them, and their replies; queue a fresh message that must survive whatever its age.
    by_age = [i for (i,) in await spooldb.select(relay, "messages", "id", order="created")]
    await spooldb.update(relay, "messages", {"id": by_age[:2]}, updated=0)
    await spooldb.update(relay, "replies", {"n": [1, 2]}, received=0)  # the first two (n counts from 1)
    await spooldb.update(relay, "messages", {"id": by_age[-1]}, state="queued", updated=0, next_attempt=1e12)
    assert await relay.spool.prune(older_than=1000) == (2, 2)
    left = [s for (s,) in await spooldb.select(relay, "messages", "state")]
    assert left == ["queued"]
    assert await spooldb.count(relay, "replies") == 1


async def test_error_codes_are_a_fixed_set_of_metric_labels(replying_relay: Any) -> None:
    """A reply mail comes from anyone: 500 made-up codes must not become 500 metric series."""
    _fake, relay = await replying_relay(provider_extra="  reply_tags: false\n")  # every line counts
    body = (
        "\r\n".join(f"ERROR = {100 + n} (made up), ID - x{n}" for n in range(500))
        + "\r\nERROR = 7 (bad), ID - y"
    )
    await asyncio.to_thread(_send_raw, relay.port, f"From: noreply@smsc.ru\r\nSubject: r\r\n\r\n{body}\r\n")
    text = relay.metrics.exposition().decode()
    series = [line for line in text.splitlines() if line.startswith("smsc_relay_provider_errors_total{")]
    assert sorted(series) == [
        'smsc_relay_provider_errors_total{code="7"} 1.0',
        'smsc_relay_provider_errors_total{code="other"} 500.0',
    ]


def _data_to_reply_address(port: int, mail: bytes) -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo()
        client.mail("noreply@smsc.ru")
        client.rcpt("replies@relay.example.com")
        code, text = client.data(mail)
        return code, text.decode()


async def test_the_reply_address_refuses_what_no_reply_looks_like_before_decoding(
    replying: tuple[ReplyingProvider, Any],
) -> None:
    _fake, relay = replying
    big = b"From: x@smsc.ru\r\nSubject: r\r\n\r\n" + b"OK - 1 SMS, ID - nosuchid\r\n" * 1500  # ~40 KB
    code, text = await asyncio.to_thread(_data_to_reply_address, relay.port, big)
    assert (code, text.split(" ", 1)[0]) == (552, "5.3.4") and "provider replies are small" in text
    words = (
        b"Subject: " + b" ".join(b"=?utf-8?b?0L8=?=" for _ in range(300)) + b"\r\n\r\nOK - 1 SMS, ID - x\r\n"
    )
    started = asyncio.get_running_loop().time()
    code, text = await asyncio.to_thread(_data_to_reply_address, relay.port, words)
    assert (code, text.split(" ", 1)[0]) == (554, "5.6.0") and "encoded words" in text
    assert asyncio.get_running_loop().time() - started < 5  # refused, not decoded
    stored = await spooldb.count(relay, "replies")
    assert stored == 0  # neither was kept


async def test_a_stored_reply_is_bounded(replying: tuple[ReplyingProvider, Any]) -> None:
    _fake, relay = replying
    body = "OK - 1 SMS, ID - nosuchid\r\n" + "filler text of a long mail\r\n" * 900  # ~26 KB
    await asyncio.to_thread(_send_raw, relay.port, f"From: noreply@smsc.ru\r\nSubject: r\r\n\r\n{body}")
    (raw,) = (await spooldb.select(relay, "replies", "raw"))[0]
    assert len(raw) <= 4096


async def test_an_ok_for_a_message_waiting_to_be_resent_confirms_it_and_cancels_the_resend(
    relay_factory: Any,
) -> None:
    """The provider took the mail but the connection dropped before its 250: the relay deferred
    it for a resend. The provider's OK then says it went out: no second SMS."""
    with closed_port() as port:
        relay = await relay_factory(port)
    pm = render(b"Subject: x\r\n\r\ny", ["79991234567@sms.example.com"], make_config()).provider_mails
    (claimed,) = (await relay.spool.enqueue(pm, mail_from="a@b", inbound_id="", claimed=True)).rows
    await relay.spool.finish(claimed.id, State.DEFERRED, next_attempt=time.time() + 60, last_error="dropped")
    ok = ProviderReply(ReplyKind.OK, relay_id=claimed.id, sms_count=1)
    applied = await relay.spool.record_reply(ok, mail_from="noreply@smsc.ru", raw=b"")
    assert applied.outcome.value == "confirmed"
    assert (await row(relay))["state"] == "confirmed" and await relay.spool.next_due() is None


def _replies_from(source: str, port: int, count: int) -> list[int]:
    """`count` forged replies from `source` on one connection: the RCPT code of each."""
    codes = []
    with smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=(source, 0)) as client:
        client.ehlo()
        for n in range(count):
            client.mail("noreply@smsc.ru")
            code, _ = client.rcpt("replies@relay.example.com")
            codes.append(code)
            if code == 250:
                client.data(f"Subject: r\r\n\r\nOK - 1 SMS, ID - forged{n}\r\n".encode())
            else:
                client.rset()
    return codes


async def test_the_reply_address_is_rate_limited_per_client_address(relay_factory: Any) -> None:
    relay = await relay_factory(1, networks="[127.0.0.1/32]", provider_extra="  reply_rate_limit: 20\n")
    codes = await asyncio.to_thread(_replies_from, "127.0.0.2", relay.port, 30)
    assert codes == [250] * 20 + [450] * 10
    # Another address has its own allowance; a trusted client has no limit.
    assert await asyncio.to_thread(_replies_from, "127.0.0.3", relay.port, 5) == [250] * 5
    assert await asyncio.to_thread(_replies_from, "127.0.0.1", relay.port, 25) == [250] * 25
    stored = await spooldb.count(relay, "replies")
    assert stored == 50
    assert sample(relay, "smsc_relay_mails_rejected_total", reason="reply_rate") == 10


async def test_replies_that_change_nothing_are_bounded_in_number_size_and_time(
    relay_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_replies, "MAX_KEPT", 20)
    monkeypatch.setattr(spool_replies, "TRIM_EVERY", 10)
    relay = await relay_factory(1, networks="[10.0.0.0/8]", provider_extra="  reply_rate_limit: 0\n")
    filler = "filler text of a long forged reply\r\n" * 500  # ~18 KB, under the 32 KB cap
    for n in range(6):
        await asyncio.to_thread(_send_raw, relay.port, f"Subject: r\r\n\r\nOK - 1 SMS, ID - f{n}\r\n{filler}")
    assert await asyncio.to_thread(_replies_from, "127.0.0.1", relay.port, 54) == [250] * 54
    raws = [raw for (raw,) in await spooldb.select(relay, "replies", "raw")]
    assert len(raws) <= 20 + 10 and max(map(len, raws)) <= spool_replies.KEPT_RAW_BYTES
    # Kept a day, not spool.keep_days.
    await spooldb.age(relay, "replies", 90000)
    await relay.spool.prune(time.time() - 30 * 86400)
    assert await spooldb.count(relay, "replies") == 0
