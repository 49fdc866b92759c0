"""The PostgreSQL spool's message lifecycle on a real cluster (tests/pg.py): two relays share
one queue; no row is claimed twice; a dead relay's claims come back when its lease runs out."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import psycopg
import pytest

from relay.model import State
from relay.spool.postgres import PostgresSpool
from tests.helpers import Clock, make_config, render


def mails(count: int, start: int = 0) -> list[Any]:
    cfg = make_config()
    found = []
    for n in range(start, start + count):
        rendered = render(
            f"Subject: x\r\n\r\nalert {n}".encode(), [f"7999{3_000_000 + n:07d}@sms.example.com"], cfg
        )
        found.append(dataclasses.replace(rendered.provider_mails[0], relay_id=f"p{n}"))
    return found


async def test_enqueue_is_durable_and_readable(pg_dsn: str) -> None:
    spool = PostgresSpool(pg_dsn, relay="a")
    await spool.open()
    try:
        rows = (await spool.enqueue(mails(3), mail_from="app@example.com", inbound_id="<x@y>")).rows
        got = await spool.get(rows[0].id)
        assert got is not None and got.message == rows[0].message and got.state is State.QUEUED
        assert await spool.counts() == {State.QUEUED: 3}
        async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
            await conn.execute("SET synchronous_commit = on")
            value = await (await conn.execute("SHOW synchronous_commit")).fetchone()
            assert value is not None and value[0] == "on"
    finally:
        await spool.close()


async def test_two_relays_never_claim_the_same_row(pg_dsn: str) -> None:
    a, b = PostgresSpool(pg_dsn, relay="a"), PostgresSpool(pg_dsn, relay="b")
    await a.open()
    await b.open()  # the second migrate finds the schema made
    try:
        await a.enqueue(mails(400), mail_from="app@example.com", inbound_id="<x@y>")
        claimed: dict[str, list[str]] = {"a": [], "b": []}

        async def worker(spool: PostgresSpool) -> None:
            for _ in range(200):  # bounded
                rows = await spool.claim(7, now=spool.clock() + 1)
                if not rows:
                    return
                claimed[spool.relay] += [r.id for r in rows]
                for r in rows:
                    assert await spool.finish(r.id, State.SENT)

        await asyncio.gather(worker(a), worker(b), worker(a), worker(b))
        assert not set(claimed["a"]) & set(claimed["b"])
        assert len(claimed["a"]) + len(claimed["b"]) == 400
        assert claimed["a"] and claimed["b"]  # both relays did work
        assert await a.counts() == {State.SENT: 400}
    finally:
        await a.close()
        await b.close()


async def test_a_dead_relays_claims_return_when_its_lease_runs_out(pg_dsn: str) -> None:
    clock = Clock(1_000_000.0)
    a = PostgresSpool(pg_dsn, relay="a", clock=clock, lease=60)
    b = PostgresSpool(pg_dsn, relay="b", clock=clock, lease=60)
    await a.open()
    await b.open()
    try:
        await a.enqueue(mails(5), mail_from="app@example.com", inbound_id="<x@y>")
        taken = await a.claim(5, now=clock.now + 1)
        assert len(taken) == 5
        clock.now += 30
        assert await a.keep_claims() == 0  # alive: renewed, still its own
        clock.now += 59
        assert await b.keep_claims() == 0 and await b.claim(5, now=clock.now) == []
        clock.now += 2  # a stopped renewing (it died): the lease ran out
        assert await b.keep_claims() == 5
        again = await b.claim(5, now=clock.now)
        assert sorted(r.id for r in again) == sorted(r.id for r in taken)
        assert all(r.uncertain and r.attempts == 2 for r in again)
        assert not await a.finish(taken[0].id, State.SENT)  # a's late outcome does not overwrite b's claim
        assert await b.finish(taken[0].id, State.SENT)
    finally:
        await a.close()
        await b.close()


async def test_a_pause_seen_by_one_relay_holds_the_other(pg_dsn: str) -> None:
    a, b = PostgresSpool(pg_dsn, relay="a"), PostgresSpool(pg_dsn, relay="b")
    await a.open()
    await b.open()
    try:
        await a.enqueue(mails(2), mail_from="app@example.com", inbound_id="<x@y>")
        now = a.clock()
        await a.set_control("paused_until", f"{now + 3600:.3f}")
        assert await b.claim(5, now=now + 1) == []
        await b.set_control("paused_until", None)
        assert len(await b.claim(5, now=now + 1)) == 2
    finally:
        await a.close()
        await b.close()


async def test_an_unreachable_database_is_a_spool_error_without_the_dsn(tmp_path: Path) -> None:
    from relay.errors import SpoolError

    spool = PostgresSpool(
        f"host={tmp_path} user=relay password=s3cret-dsn dbname=none connect_timeout=2", relay="a"
    )
    with pytest.raises(SpoolError) as info:
        await spool.open()
    assert "s3cret-dsn" not in str(info.value) and "s3cret-dsn" not in repr(spool)
