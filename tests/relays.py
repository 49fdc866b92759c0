"""Relays the load and HA tests run (tests/test_process.py, tests/test_ha.py,
tests/test_spool_outage.py): a relay as a real process, the config of a relay on a shared
PostgreSQL spool, and the marker a load test's mail carries."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

from tests.fakes import Received
from tests.helpers import PASSWORD, relay_config_text


class RelayProcess:
    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0

    async def start(self) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        log = open(self.log, "ab")  # noqa: SIM115 - the child owns it
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "relay", "serve", "-c", str(self.config), stderr=log, stdout=log
        )
        log.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while loop.time() < deadline:
            text = self.log.read_bytes()[offset:].decode(errors="replace")
            m = re.search(r"event=ready listen=127\.0\.0\.1:(\d+)", text)
            if m:
                self.port = int(m.group(1))
                return
            if self.proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        raise AssertionError("relay did not start:\n" + self.log.read_text(errors="replace"))

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)


def marker(received: Received) -> str:
    """The last line of a received SMS: the mark a load test gives each of its mails."""
    return str(received.sms.entries[0].text.split("\n")[-1])


def write_pg_config(tmp_path: Path, name: str, provider_port: int, dsn: str, **extra: Any) -> Path:
    """The config file of relay `name` on the PostgreSQL spool at `dsn` (`lease`: its claims')."""
    values: dict[str, Any] = {
        "networks": "[127.0.0.0/8]", "max_connections": 100, "provider_port": provider_port,
        "password": PASSWORD, "outbox": "null", "timeout": 5, "max_age": 3600, "listen_extra": "",
        "provider_extra": "", "extra": "",
        "spool": f'{{backend: postgresql, dsn: "{dsn}", relay_name: {name}, lease: {extra.pop("lease", 60)}}}',
    }  # fmt: skip
    values.update(extra)
    path = tmp_path / f"relay-{name}.yaml"
    path.write_text(relay_config_text(**values))
    return path


def write_config(path: Path, **values: object) -> Path:
    """A minimal relay config (tests/helpers.py) for a relay in a child process; PROVIDER_PORT and
    API_PORT the child fills in."""
    defaults: dict[str, object] = {
        "networks": "[127.0.0.0/8]", "max_connections": 10, "provider_port": "PROVIDER_PORT",
        "password": PASSWORD, "outbox": "null", "spool": path.parent / "spool.db", "timeout": 5,
        "max_age": 3600, "listen_extra": "", "provider_extra": "", "extra": "",
    }  # fmt: skip
    path.write_text(relay_config_text(**{**defaults, **values}))
    return path
