"""The spool's schema versions: a spool made before versions existed upgrades and reads whole."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from relay.errors import SpoolError
from relay.model import AlertState, Encoding, RouteMode, State
from relay.spool import schema
from relay.spool.admin import SpoolAdmin
from relay.spool.sqlite import SqliteSpool, connect

V0 = Path(__file__).parent / "data" / "spool-v0.db"  # made by tests/data/make_spool_v0.py


@pytest.fixture
def v0(tmp_path: Path) -> Path:
    copy = tmp_path / "spool.db"
    shutil.copy(V0, copy)
    return copy


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


async def test_a_spool_from_before_versions_upgrades_and_reads_every_message(v0: Path) -> None:
    assert user_version(v0) == 0
    spool = SqliteSpool(v0)
    assert await spool.open() == 1  # the row the old relay left `sending` is queued again
    try:
        assert user_version(v0) == schema.VERSION
        rows = [await spool.get(f"r0-{n:04d}") for n in range(4)]
        assert [r.state if r else None for r in rows] == [
            State.QUEUED, State.CONFIRMED, State.FAILED, State.QUEUED,
        ]  # fmt: skip
        assert all(r is not None and r.mode is RouteMode.COMMAND for r in rows)
        texts = [r.texts for r in rows if r]
        assert texts == [["alert 0\nDisk /var is full"], ["alert 1\nПривет, мир"], ["alert 2\nbackup done"],
                         ["alert 3\nload high"]]  # fmt: skip
        assert {r.encoding for r in rows if r} == {Encoding.GSM7, Encoding.UCS2}
        assert rows[1] is not None and rows[1].sms_count == 1
        assert rows[2] is not None and (rows[2].error_code, rows[2].last_error) == (554, "554 5.7.1 rejected")
        # The queue works on the upgraded file: both waiting rows can be claimed.
        claimed = await spool.claim(10, 2e9)
        assert sorted(r.id for r in claimed) == ["r0-0000", "r0-0003"]
    finally:
        await spool.close()
    admin = SpoolAdmin.open(v0)
    try:
        stats = admin.stats()
        assert stats.alerts == {AlertState.HELD: 1}
        assert [r["outcome"] for r in admin.replies("r0-0001")] == ["confirmed"]
    finally:
        admin.close()


async def test_migrating_twice_changes_nothing(v0: Path) -> None:
    for _ in range(2):
        conn = connect(v0)
        schema.migrate(conn)
        conn.close()
    assert user_version(v0) == schema.VERSION


async def test_a_spool_newer_than_this_relay_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {schema.VERSION + 1}")
    spool = SqliteSpool(path)
    with pytest.raises(SpoolError, match="newer than this relay knows"):
        await spool.open()
    await spool.close()


async def test_a_failing_migration_leaves_the_spool_as_it_was(
    v0: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = (*schema.MIGRATIONS, "CREATE TABLE extra (x);\nTHIS IS NOT SQL;")
    monkeypatch.setattr(schema, "MIGRATIONS", broken)
    monkeypatch.setattr(schema, "VERSION", len(broken))
    conn = connect(v0)
    with pytest.raises(sqlite3.OperationalError):
        schema.migrate(conn)
    # The real versions went in whole; the broken last one not at all.
    assert user_version(v0) == len(broken) - 1
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'extra'").fetchone() is None
    conn.close()
