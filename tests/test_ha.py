"""Two relays sharing one PostgreSQL spool (docs/ha.md), on the tests' own cluster: a relay
killed in the middle of 2,000 mails, a storm split across both, the database stopped for 30 s
under load, a provider pause seen by one, and the move from a SQLite spool."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import re
import signal
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from relay.cli import main as cli
from relay.model import ProviderReply, ReplyKind, State
from relay.spool.admin import SpoolAdmin
from relay.spool.messages import new_rows
from relay.spool.sqlite import SqliteSpool
from tests import spooldb
from tests.fakes import FakeProvider, ProviderLimits, Received, ReplyingProvider, wait_for
from tests.helpers import (
    Clock,
    drain,
    make_config,
    message,
    render,
    serve_fake,
    smtplib_send,
    until,
)  # fmt: skip
from tests.pg import Cluster, new_database
from tests.relays import RelayProcess, marker, write_pg_config
from tests.storms import DEFAULT_STORM_ROUTES, T0, alerts_in, sms_texts, to, volatile

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def relay_id(received: Received) -> str:
    return received.sms.request_id


async def test_a_provider_pause_seen_by_one_relay_stops_the_other(
    relays: Any, pg_dsn: str, tmp_path: Path
) -> None:
    fake = ReplyingProvider(answer=lambda got: "ERROR = 3 (not enough money), ID - " + got.relay_id)
    server, port = await serve_fake(fake)
    try:
        a = await relays("a", port, pg_dsn)
        b = await relays("b", port, pg_dsn)
        fake.relay_port = a.port  # the provider answers to one relay: here a
        await asyncio.to_thread(smtplib_send, b.port, message("first"))  # sent by b
        # a gets the ERROR 3 for b's message; b stops too, told by the shared spool.
        await wait_for(lambda: a.deliverer.pause_reason.startswith("provider ERROR 3"))
        await wait_for(lambda: b.deliverer.pause_reason.startswith("provider ERROR 3"))
        first = fake.received[0]
        got = await b.spool.get(relay_id(first))
        assert got is not None and got.state is State.QUEUED  # held for the resume, not failed
        for relay in (a, b):
            await asyncio.to_thread(smtplib_send, relay.port, message(f"held by {relay.spool!r}"))
        assert await a.spool.claim(10, a.spool.clock()) == []  # neither may take them
        assert await b.spool.claim(10, b.spool.clock()) == []
        assert len(fake.received) == 1
        fake.answer = None  # topped up; `queue resume` against either relay's config
        assert (
            await asyncio.to_thread(cli.main, ["queue", "resume", "-c", str(tmp_path / "relay-b.yaml")]) == 0
        )
        await wait_for(lambda: len(fake.received) == 4, timeout=20)  # the held one again, and both new
        await wait_for(lambda: not a.deliverer.pause_reason and not b.deliverer.pause_reason)
        assert sorted(marker(r) for r in fake.received[1:]) == sorted(
            ["first", f"held by {a.spool!r}", f"held by {b.spool!r}"]
        )
    finally:
        await asyncio.gather(*fake.tasks, return_exceptions=True)
        server.close()


async def test_a_storm_split_across_both_relays_keeps_the_providers_rules(relays: Any, pg_dsn: str) -> None:
    """The storm of test_storm_daemon's volatile test, every other mail to the other relay: the
    dedup windows, phone history and planner are shared, so the provider refuses nothing, every
    host is named once, and the other mails are counted, not sent; replies all go to relay a."""
    clock = Clock(T0)
    limits = ProviderLimits(clock=clock)
    fake = ReplyingProvider(answer=limits.answer)
    server, port = await serve_fake(fake)
    try:
        a = await relays("a", port, pg_dsn, clock=clock, routes=DEFAULT_STORM_ROUTES)
        b = await relays("b", port, pg_dsn, clock=clock, routes=DEFAULT_STORM_ROUTES)
        fake.relay_port = a.port
        hosts = [("zabbix_problem.eml", f"app-{n:02}") for n in range(6)]
        hosts += [("nagios_host_problem.eml", f"web{n:02}") for n in range(4)]
        for i in range(120):
            name, host = hosts[i % len(hosts)]
            clock.now = T0 + i * 0.5
            relay = (a, b)[i % 2]
            await asyncio.to_thread(
                smtplib_send, relay.port, to(volatile(name, host, i), "defaults@sms.example.com")
            )
            if i % 10 == 0:
                await until((a, b)[i // 10 % 2], clock, clock.now)  # the planners take turns
        await drain(b, clock)
        await drain(a, clock)
        await wait_for(lambda: not fake.tasks)
        assert limits.rejections == []
        lines = [x for t in sms_texts(fake) for x in alerts_in(t)]
        for _, host in hosts:
            named = [x for x in lines if f" {host}" in x and not x.startswith("Repeated")]
            assert len(named) == 1, (host, named)  # every alert named, and named once
        assert len([x for x in lines if x.startswith("Repeated")]) == len(hosts)
        states = await a.spool.counts()
        assert set(states) == {State.CONFIRMED}, states  # every reply landed, wherever it came
    finally:
        await asyncio.gather(*fake.tasks, return_exceptions=True)
        server.close()


async def test_the_database_stopped_30s_under_load(
    own_cluster: Cluster, relays: Any, provider: tuple[FakeProvider, int], capsys: pytest.CaptureFixture[str]
) -> None:
    """Clients keep sending to both relays while the database is down for 30 s: they get 451
    (never a 5xx, never a 250 for what was not stored), and after it is back both relays take
    mail and deliver everything accepted, without a restart."""
    fake, port = provider
    dsn = new_database(own_cluster.dsn)
    a = await relays("a", port, dsn)
    b = await relays("b", port, dsn)
    accepted: set[str] = set()
    refused: collections.Counter[str] = collections.Counter()
    unanswered: list[str] = []
    phase = {"now": "before"}
    after = {"a": 0, "b": 0}

    async def client(k: int) -> None:
        relay, name = ((a, "a"), (b, "b"))[k % 2]
        for n in range(10_000):  # bounded by the phases below
            if phase["now"] == "done":
                return
            mark = f"c{k}n{n}"
            try:
                async with aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.port, timeout=20) as smtp:
                    rcpt = f"7999{2_000_000 + k * 10_000 + n:07d}@sms.example.com"
                    await smtp.sendmail("load@example.com", [rcpt], f"Subject: x\r\n\r\n{mark}\r\n")
                accepted.add(mark)
                if phase["now"] == "after":
                    after[name] += 1
            except aiosmtplib.SMTPResponseException as exc:
                assert exc.code == 451, exc  # a temporary failure: the client keeps the mail
                refused[phase["now"]] += 1
                await asyncio.sleep(0.2)  # an MTA's retry, much shortened
            except (aiosmtplib.SMTPException, OSError) as exc:  # no answer within 20 s, or none at all
                unanswered.append(f"{phase['now']}: {exc!r}")
                await asyncio.sleep(0.2)

    tasks = [asyncio.create_task(client(k)) for k in range(4)]
    await wait_for(lambda: len(accepted) >= 40, timeout=30)
    own_cluster.stop()
    phase["now"] = "down"
    loop = asyncio.get_running_loop()
    down_at = loop.time()
    await wait_for(lambda: refused["down"] >= 4, timeout=30)
    await asyncio.sleep(max(0.0, 30 - (loop.time() - down_at)))  # the outage itself: 30 s
    own_cluster.start()
    phase["now"] = "after"
    await wait_for(lambda: after["a"] >= 10 and after["b"] >= 10, timeout=60)
    phase["now"] = "done"
    await asyncio.gather(*tasks)
    await wait_for(lambda: accepted <= {marker(r) for r in fake.received}, timeout=60)
    lost = len(accepted - {marker(r) for r in fake.received})
    with capsys.disabled():
        print(f"\n[db-down] accepted={len(accepted)} refused={dict(refused)} lost={lost} after={after}")
    assert lost == 0 and refused["down"] >= 4
    assert unanswered == []  # every session got its answer: 250, or 451 within the client's timeout


async def test_two_relays_take_2000_mails_and_one_is_killed(
    tmp_path: Path, provider: tuple[FakeProvider, int], pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """20 clients, each with a first relay and the other as its fallback (MX priority); relay a
    is SIGKILLed at 700 accepted and stays dead. b takes its queue once a's lease (5 s) runs
    out: every accepted mail reaches the provider, a duplicate carries the same relay id."""
    fake, port = provider
    procs = {
        name: RelayProcess(write_pg_config(tmp_path, name, port, pg_dsn, lease=5), tmp_path / f"{name}.log")
        for name in ("a", "b")
    }
    for rp in procs.values():
        await rp.start()
    total, clients = 2000, 20
    accepted: set[str] = set()
    attempts = collections.Counter[str]()
    killed: list[int] = []

    async def client(k: int, numbers: list[int]) -> None:
        order = [procs["a"], procs["b"]] if k % 2 == 0 else [procs["b"], procs["a"]]
        pending, smtp, turn = list(numbers), None, 0
        for _ in range(total * 20):  # bounded: every message gets many tries, like an MTA
            if not pending:
                break
            n = pending[0]
            try:
                if smtp is None or not smtp.is_connected:
                    rp = order[turn % 2]
                    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=rp.port, timeout=10)
                    await smtp.connect()
                attempts[f"m{n}"] += 1
                rcpt = f"7999{4_000_000 + n:07d}@sms.example.com"
                await smtp.sendmail("load@example.com", [rcpt], f"Subject: x\r\n\r\nm{n}\r\n")
                accepted.add(f"m{n}")
                pending.pop(0)
            except (aiosmtplib.SMTPException, OSError):
                smtp, turn = None, turn + 1  # the next MX
                await asyncio.sleep(0.05)
        if smtp is not None and smtp.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException):
                await smtp.quit()
        assert not pending, f"client gave up on {len(pending)} messages"

    async def killer() -> None:
        await wait_for(lambda: len(accepted) >= 700, timeout=60)
        procs["a"].signal(signal.SIGKILL)
        await procs["a"].wait()
        killed.append(len(accepted))

    try:
        tasks = [asyncio.create_task(client(k, list(range(k, total, clients)))) for k in range(clients)]
        await asyncio.gather(killer(), *tasks)
        assert len(accepted) == total and killed
        await wait_for(lambda: accepted <= {marker(r) for r in fake.received}, timeout=120)
        by_marker: dict[str, set[str]] = collections.defaultdict(set)
        counts = collections.Counter(marker(r) for r in fake.received)
        for r in fake.received:
            by_marker[marker(r)].add(relay_id(r))
        duplicates = sum(c - 1 for c in counts.values())
        lost = len(accepted - set(counts))
        log_b = (tmp_path / "b.log").read_text()
        taken_over = sum(int(x) for x in re.findall(r"event=claims_expired rows=(\d+)", log_b))
        with capsys.disabled():
            print(f"\n[two relays] killed a at={killed[0]} accepted={len(accepted)} lost={lost} "
                  f"delivered={len(counts)} duplicates={duplicates} taken_over_by_b={taken_over} "
                  f"provider_mails={len(fake.received)}")  # fmt: skip
        assert lost == 0 and set(counts) == accepted
        # A resend by the relays (not a client's second submission) is the same request id.
        for m, ids in by_marker.items():
            if attempts[m] == 1:
                assert len(ids) == 1, (m, ids)
        assert duplicates <= clients + 10
    finally:
        for rp in procs.values():
            if rp.proc and rp.proc.returncode is None:
                rp.proc.kill()
                await rp.proc.wait()


def test_spool_migrate_copies_a_sqlite_spool_into_postgresql(tmp_path: Path, pg_dsn: str) -> None:
    path = tmp_path / "old.db"
    cfg = make_config()
    mails = [
        dataclasses.replace(
            render(f"Subject: x\r\n\r\nold {n}".encode(), [f"7999{5_000_000 + n:07d}@sms.example.com"], cfg)
            .provider_mails[0], relay_id=f"old{n}",
        )
        for n in range(4)
    ]  # fmt: skip

    async def make_old() -> bytes:
        spool = SqliteSpool(path)
        await spool.open()
        await spool.enqueue(mails[:3], mail_from="app@example.com", inbound_id="<a@b>", protect=True)
        await spool.enqueue(mails[3:], mail_from="app@example.com", inbound_id="<c@d>", claimed=True)
        (sent,) = await spool.claim(1, spool.clock() + 1)
        await spool.finish(sent.id, State.SENT)
        await spool.record_reply(
            ProviderReply(ReplyKind.OK, sent.id, line=f"OK - 1 SMS, ID - {sent.id}", sms_count=1),
            mail_from="noreply@smsc.ru", raw=b"raw reply",
        )  # fmt: skip
        key = spool.reply_key
        await spool.close()  # old3 stays `sending`, as a crash leaves it
        return key

    key = asyncio.run(make_old())
    config = write_pg_config(tmp_path, "a", 1, pg_dsn)
    assert cli.main(["spool", "migrate", "--from", str(path), "-c", str(config)]) == 0
    admin = SpoolAdmin.open_postgres(pg_dsn)
    try:
        rows = {r.id: r for r in admin.newest(10)}
        assert sorted(rows) == ["old0", "old1", "old2", "old3"]
        assert rows["old0"].state is State.CONFIRMED and rows["old0"].sms_count == 1
        assert rows["old3"].state is State.QUEUED and rows["old3"].uncertain  # was `sending`
        assert rows["old1"].texts == list(mails[1].texts) and rows["old1"].phones == list(mails[1].phones)
        assert [r["line"] for r in admin.replies("old0")] == ["OK - 1 SMS, ID - old0"]
        assert bytes.fromhex(admin.stats().control["reply_tag_key"]) == key  # old tags still verify
        sends = spooldb.count_on(admin.conn, "phone_sends")
        assert sends == 3  # the provider's per-phone limits keep counting
    finally:
        admin.close()
    # Again: refused, nothing doubled.
    assert cli.main(["spool", "migrate", "--from", str(path), "-c", str(config)]) == 1


async def test_a_row_queued_elsewhere_wakes_the_relays_by_notify(
    relays: Any, pg_dsn: str, provider: tuple[FakeProvider, int]
) -> None:
    """Idle relays that would not look at the queue for an hour: a row queued by another
    process (`send-test`, `queue retry`, another relay) is delivered at once, woken by NOTIFY."""
    fake, port = provider
    a = await relays("a", port, pg_dsn)
    b = await relays("b", port, pg_dsn)
    for relay in (a, b):
        commits = relay.spool.commits
        relay.deliverer.idle_poll = 3600.0
        relay.deliverer.wake()  # the workers' next nap is the hour: they claim (one commit), find
        await wait_for(lambda r=relay, c=commits: r.spool.commits > c)  # nothing, and naps
    mail = dataclasses.replace(
        render(b"Subject: x\r\n\r\nfrom elsewhere", ["79995550001@sms.example.com"], make_config())
        .provider_mails[0], relay_id="elsewhere1",
    )  # fmt: skip
    rows = new_rows([mail], mail_from="", inbound_id="", state=State.QUEUED, attempts=0, now=a.spool.clock())
    admin = SpoolAdmin.open_postgres(pg_dsn)
    try:
        await asyncio.to_thread(admin.enqueue, rows, [mail], protect=False)
    finally:
        admin.close()
    await wait_for(lambda: len(fake.received) == 1, timeout=15)
    assert marker(fake.received[0]) == "from elsewhere"
