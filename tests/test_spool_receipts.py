"""SMPP receipts in the spool (relay/spool/receipts.py), on both backends: a receipt that comes
before its part is written is matched when it is; parts make their phone's status (one failed
part fails the phone, all delivered deliver it); nothing settles a message before the provider's
OK is recorded; a final status stays; what matches nothing is kept as a digest, bounded in
count and age."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relay.config.schema import SpoolConfig
from relay.model import Inbound, PartStatus, Secret, SpoolBackend, State
from relay.spool import interface as spools
from relay.spool import receipts
from tests import spooldb
from tests.helpers import render

P1, P2 = "79990000001", "79990000002"


@pytest.fixture
async def spool(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[spools.Spool]:
    if backend == "sqlite":
        cfg = SpoolConfig(path=tmp_path / "spool.db")
    else:
        dsn = request.getfixturevalue("pg_dsn")
        cfg = SpoolConfig(backend=SpoolBackend.POSTGRESQL, dsn=Secret(dsn), relay_name="test")
    s = spools.make(cfg, "host:25")
    await s.open()
    yield s
    await s.close()


def receipt(message_id: str, status: int, err: int = 0) -> PartStatus:
    return PartStatus(Inbound.RECEIPT, f"id:{message_id} stat:{status}", message_id, status, err, time.time())


async def sending(spool: spools.Spool) -> str:
    """A two-phone request, claimed by a worker (as when its submits go out)."""
    mails = render(b"Subject: x\r\n\r\ny", [f"{P1}@sms.example.com", f"{P2}@sms.example.com"]).provider_mails
    (row,) = (await spool.enqueue(mails, mail_from="a@b", inbound_id="", claimed=True)).rows
    assert list(row.phones) == [P1, P2]
    return row.id


async def test_receipts_settle_a_message_only_once_its_ok_is_recorded(spool: spools.Spool) -> None:
    relay_id = await sending(spool)
    now = time.time()
    # The receipt of the first part comes before the worker has written the parts.
    assert await spool.record_receipts([receipt("m1", 1)], (), now) == []
    assert [r["message_id"] for r in await spooldb.rows(spool, "smpp_inbound")] == ["m1"]
    await spool.start_tracking(
        relay_id, via="smpp", next_poll=now + 600, until=now + 3600,
        parts=[(P1, "m1"), (P1, "m2"), (P2, "m3")],
    )  # fmt: skip
    assert await spooldb.count(spool, "smpp_inbound") == 0  # matched, so no longer kept
    parts = {
        r["message_id"]: (r["phone"], r["part"], r["status"]) for r in await spooldb.rows(spool, "smpp_parts")
    }
    assert parts == {"m1": (P1, 1, 1), "m2": (P1, 2, None), "m3": (P2, 1, None)}
    # Still `sending`: a receipt now changes its part and phone, but must not end tracking.
    assert await spool.record_receipts([receipt("m2", 1)], (), now) == []
    (row,) = await spooldb.rows(spool, "messages", id=relay_id)
    assert row["next_poll"] == pytest.approx(now + 600) and row["state"] == State.SENDING.value
    assert await spool.finish(relay_id, State.CONFIRMED)
    # The worker asks once the OK is in: P1 is delivered, P2 still open.
    assert await spool.record_receipts([], [relay_id], now) == []
    statuses = {r["phone"]: r["status"] for r in await spooldb.rows(spool, "phone_status", relay_id=relay_id)}
    assert statuses == {P1: 1}
    (done,) = await spool.record_receipts([receipt("m3", 20, err=12)], (), now)
    assert (done.relay_id, done.state, done.code) == (relay_id, State.UNDELIVERED, 20)
    assert done.detail == f"phone {P2}: status 20 (cannot be delivered), reason 12"
    # A late, contradicting receipt (a duplicate, another SMSC's retry) changes nothing.
    assert await spool.record_receipts([receipt("m3", 1)], (), now) == []
    (row,) = await spooldb.rows(spool, "messages", id=relay_id)
    assert (row["state"], row["next_poll"]) == (State.UNDELIVERED.value, None)
    (m3,) = await spooldb.rows(spool, "smpp_parts", message_id="m3")
    assert m3["status"] == 20


async def test_every_part_delivered_delivers_and_a_failed_one_fails_the_phone(spool: spools.Spool) -> None:
    relay_id = await sending(spool)
    now = time.time()
    await spool.start_tracking(
        relay_id, via="smpp", next_poll=now + 600, until=now + 3600, parts=[(P1, "a"), (P2, "b1"), (P2, "b2")]
    )
    assert await spool.finish(relay_id, State.CONFIRMED)
    assert await spool.record_receipts([receipt("a", 1), receipt("b1", 1), receipt("b2", 0)], (), now) == []
    statuses = {r["phone"]: r["status"] for r in await spooldb.rows(spool, "phone_status", relay_id=relay_id)}
    assert statuses == {P1: 1, P2: 0}  # b2 handed to the operator: the phone is on its way
    (done,) = await spool.record_receipts([receipt("b2", 1)], (), now)
    assert (done.state, done.detail) == (State.DELIVERED, "2 phone(s) delivered")


async def test_what_matches_nothing_is_kept_bounded(
    spool: spools.Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = time.time()
    monkeypatch.setattr(receipts, "MAX_KEPT", 5)
    kept = [PartStatus(Inbound.SMS, f"from {P1}: reply {n}") for n in range(4)]
    kept += [PartStatus(Inbound.MALFORMED, "from x: stat:?"), receipt("nobody", 1)] + [
        receipt(f"x{n}", 1) for n in range(3)
    ]
    assert await spool.record_receipts(kept, (), now) == []
    rows = await spooldb.rows(spool, "smpp_inbound")
    assert len(rows) == 5  # the newest five
    assert sorted(r["digest"] for r in rows)[0].startswith("from x: stat:?")
    assert {r["kind"] for r in rows} == {"malformed", "receipt"}
    await spool.prune(now + 1)  # retention: older than keep_days
    assert await spooldb.count(spool, "smpp_inbound") == 0


async def test_receipts_that_never_come(spool: spools.Spool) -> None:
    """With track_delivery, status.php is asked after smpp.receipt_wait about the phones still
    without a final receipt only; without a final status by track_until: status-unknown."""
    relay_id = await sending(spool)
    now = time.time()
    wait, until = 600.0, 3600.0  # next_poll = now + receipt_wait (the worker's, from poll_after)
    await spool.start_tracking(
        relay_id, via="smpp", next_poll=now + wait, until=now + until, parts=[(P1, "a"), (P2, "b")]
    )
    assert await spool.finish(relay_id, State.CONFIRMED)
    assert await spool.record_receipts([receipt("a", 1)], (), now) == []
    assert await spool.tracking_due(now + wait - 1, 100) == []  # the receipts' time first
    assert await spool.tracking_due(now + wait, 100) == [(relay_id, P2)]  # P1 has its receipt
    assert await spool.expire_tracking(now + until - 1) == []
    (done,) = await spool.expire_tracking(now + until)
    assert done.state is State.STATUS_UNKNOWN
    assert done.detail == f"no final delivery status in time: {P1}: 1 (delivered), {P2}: -"
