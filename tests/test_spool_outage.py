"""A database outage under the PostgreSQL spool (docs/ha.md, issue 22 item 4): a mail gets 451
within spool.outage_reply (never a 250 for what was not stored, never a 5xx), and once the
database is back both relays on it take mail again, without a restart; the writer gives up on
an operation that waits behind a transaction, without waiting for that transaction."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from relay.config import load as config_mod
from relay.errors import ConfigError, SpoolError
from relay.spool import interface as spools
from relay.spool.postgres import PostgresSpool
from relay.spool.sqlite import connect
from relay.spool.writer import GroupCommitWriter, SqliteEngine
from tests.fakes import FakeProvider, wait_for
from tests.helpers import make_config, render
from tests.pg import Cluster, new_database
from tests.relays import write_pg_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
MARGIN = 3.0  # seconds past the bound a reply may take: far above any scheduling delay
numbers = itertools.count(6_000_000)


async def send(port: int, sent: asyncio.Event | None = None) -> tuple[int, float]:
    """One mail in a session of its own: the reply's code, and the seconds from the end of
    DATA (the final dot sent; `sent` is set then) to the reply."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def say(line: bytes) -> int:
        if line:
            writer.write(line)
            await writer.drain()
        for _ in range(20):  # bounded: a reply has a few lines
            got = await asyncio.wait_for(reader.readline(), 60)
            if got[3:4] != b"-":
                return int(got[:3])
        raise AssertionError("a reply of more than 20 lines")

    try:
        assert await say(b"") == 220
        assert await say(b"EHLO client.example.com\r\n") == 250
        assert await say(b"MAIL FROM:<ops@example.com>\r\n") == 250
        assert await say(f"RCPT TO:<7999{next(numbers):07d}@sms.example.com>\r\n".encode()) == 250
        assert await say(b"DATA\r\n") == 354
        writer.write(b"Subject: x\r\n\r\nthe database is down\r\n.\r\n")
        await writer.drain()
        start = loop.time()
        if sent is not None:
            sent.set()
        code = await say(b"")
        return code, loop.time() - start
    finally:
        writer.close()


async def until_accepted(port: int) -> tuple[int, float]:
    """Mail again and again until one is accepted: how many were refused (451, and nothing
    else), and the seconds until the 250."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for refused in range(50):  # bounded: each refusal takes up to the bound
        code, _ = await send(port)
        if code == 250:
            return refused, loop.time() - start
        assert code == 451, code
    raise AssertionError("no mail accepted after the database came back")


async def test_an_outage_is_a_451_within_the_bound_and_both_relays_take_mail_after_it(
    own_cluster: Cluster, relays: Any, provider: tuple[FakeProvider, int], capsys: pytest.CaptureFixture[str]
) -> None:
    _, port = provider
    dsn = new_database(own_cluster.dsn)
    a = await relays("a", port, dsn)
    b = await relays("b", port, dsn)
    bound = a.cfg.spool.outage_reply
    assert [(await send(r.port))[0] for r in (a, b)] == [250, 250]
    await asyncio.to_thread(own_cluster.stop)  # as a crash: connections cut, none taken
    try:
        # First one mail each, on the connections the outage broke; then two each at once, and
        # two more once those wait: a mail that comes while another waits for the database is
        # answered within its own bound, not after the other's.
        replies = list(await asyncio.gather(send(a.port), send(b.port)))
        sent = [asyncio.Event() for _ in range(4)]
        waiting = [asyncio.create_task(send(r.port, e)) for r, e in zip((a, b, a, b), sent, strict=True)]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in sent)), 30)
        behind = [asyncio.create_task(send(r.port)) for r in (a, b, a, b)]
        replies += await asyncio.gather(*waiting, *behind)
    finally:
        await asyncio.to_thread(own_cluster.start)
    assert {code for code, _ in replies} == {451}, replies  # the client keeps the mail
    assert max(took for _, took in replies) < bound + MARGIN, replies
    back = await asyncio.gather(until_accepted(a.port), until_accepted(b.port))
    with capsys.disabled():
        print(
            f"\n[db-outage] 451 after {sorted(round(t, 2) for _, t in replies)} s; back (refused, s) {back}"
        )
    # The first mail after the restart is taken: a connection the outage broke is replaced,
    # not handed to it, and the pool has tried the database again within a second or so.
    assert [refused for refused, _ in back] == [0, 0], back
    assert all(took < bound + MARGIN for _, took in back), back


def one_mail(n: int) -> Any:
    rendered = render(
        f"Subject: x\r\n\r\noutage {n}".encode(), [f"7999{7_000_000 + n:07d}@sms.example.com"], make_config()
    )
    return dataclasses.replace(rendered.provider_mails[0], relay_id=f"outage{n}")


async def test_the_spool_gives_up_after_outage_reply_and_keeps_nothing_it_refused(
    own_cluster: Cluster,
) -> None:
    dsn = new_database(own_cluster.dsn)
    spool = PostgresSpool(dsn, relay="a", outage_reply=2)
    await spool.open()
    loop = asyncio.get_running_loop()
    try:
        await asyncio.to_thread(own_cluster.stop)

        async def enqueue(n: int) -> float:
            start = loop.time()
            with pytest.raises(SpoolError):
                await spool.enqueue([one_mail(n)], mail_from="app@example.com", inbound_id=f"<{n}@x>")
            return loop.time() - start

        # Mails and a claim (delivery), then more mails while those wait for the database.
        tasks = [asyncio.create_task(enqueue(n)) for n in range(3)]
        claim = asyncio.create_task(spool.claim(10, spool.clock()))
        await wait_for(lambda: not spool.writer._pending)  # taken into a batch, which waits
        tasks += [asyncio.create_task(enqueue(n)) for n in range(3, 6)]
        took = await asyncio.gather(*tasks)
        with pytest.raises(SpoolError):
            await claim
        assert max(took) < 2 + MARGIN, took
        await asyncio.to_thread(own_cluster.start)
        enqueued = await spool.enqueue([one_mail(9)], mail_from="app@example.com", inbound_id="<9@x>")
        assert [r.id for r in enqueued.rows] == ["outage9"]  # at once: no 451 after the restart
        for n in range(6):  # what was refused was not stored: the client's copy is the only one
            assert await spool.get(f"outage{n}") is None
    finally:
        await spool.close()


async def test_an_operation_behind_a_stuck_transaction_fails_at_its_deadline(tmp_path: Path) -> None:
    """The writer's bound on its own: an operation waiting for a batch that does not end fails
    after give_up, and never runs; the stuck batch commits when it ends."""
    conn = connect(tmp_path / "w.db")
    conn.execute("CREATE TABLE log (v TEXT NOT NULL)")
    executor = ThreadPoolExecutor(max_workers=1)
    writer = GroupCommitWriter(SqliteEngine(conn), executor, give_up=0.5)
    writer.start()
    release, started = threading.Event(), threading.Event()

    def stuck(c: sqlite3.Connection) -> None:
        started.set()
        assert release.wait(timeout=30)  # bounded: the test sets it
        c.execute("INSERT INTO log VALUES ('stuck')")

    try:
        first = asyncio.create_task(writer.write(stuck))
        assert await asyncio.to_thread(started.wait, 10)
        with pytest.raises(SpoolError):
            await writer.write(lambda c: c.execute("INSERT INTO log VALUES ('behind')"))
        assert not first.done()  # it gave up while the batch before it still ran
        release.set()
        await first
        assert [v for (v,) in conn.execute("SELECT v FROM log")] == ["stuck"]
    finally:
        release.set()
        await writer.stop()
        executor.shutdown()
        conn.close()


def test_outage_reply_is_a_postgresql_setting(tmp_path: Path) -> None:
    path = write_pg_config(tmp_path, "a", 1, "host=/nowhere dbname=smsc user=relay")
    text = path.read_text()
    path.write_text(text.replace("lease: 60}", "lease: 60, outage_reply: 2}"))
    cfg = config_mod.load(path, env={})
    assert cfg.spool.outage_reply == 2
    spool = spools.make(cfg.spool, "host:25")  # what the daemon makes of it (not opened)
    assert isinstance(spool, PostgresSpool) and spool.outage_reply == 2
    lines = [
        ("spool: {path: spool.db, outage_reply: 2}" if x.startswith("spool:") else x)
        for x in text.splitlines()
    ]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"spool\.outage_reply"):
        config_mod.load(path, env={})
