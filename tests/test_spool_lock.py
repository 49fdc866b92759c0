"""A relay holds its SQLite spool while it serves it: a second relay on the file is refused, and
`spool migrate` will not copy a spool a relay still serves (a lock the relay takes, not a guess)."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.cli import main as cli
from relay.errors import SpoolError
from relay.spool.sqlite import SqliteSpool, held
from tests.helpers import BASE_CONFIG


async def test_one_sqlite_spool_one_relay(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    first = SqliteSpool(path)
    await first.open()
    try:
        assert held(path)
        second = SqliteSpool(path)
        with pytest.raises(SpoolError, match=r"another relay serves .*spool\.db\.lock"):
            await second.open()
        await second.close()
    finally:
        await first.close()
    assert not held(path)  # let go at close (and by the kernel if the relay dies)
    again = SqliteSpool(path)
    await again.open()
    await again.close()


async def test_migrate_refuses_a_spool_a_relay_serves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "spool.db"
    cfg = tmp_path / "relay.yaml"
    cfg.write_text(
        BASE_CONFIG + "spool: {backend: postgresql, dsn: 'host=/nonexistent dbname=x connect_timeout=1'}\n"
    )
    relay = SqliteSpool(source)
    await relay.open()
    try:
        assert cli.main(["spool", "migrate", "--from", str(source), "-c", str(cfg)]) == 1
        err = capsys.readouterr().err
        assert f"a relay serves {source}" in err and "stop it first" in err and "--force" in err
        # --force passes that check (and here finds no database to copy into)
        assert cli.main(["spool", "migrate", "--from", str(source), "--force", "-c", str(cfg)]) == 1
        assert "nothing copied" in capsys.readouterr().err
    finally:
        await relay.close()
