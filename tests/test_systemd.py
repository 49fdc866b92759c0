"""sd_notify against a real AF_UNIX datagram socket, and the unit file itself."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeProvider
from tests.helpers import message, smtplib_send

pytestmark = pytest.mark.timeout(60)
UNIT = Path(__file__).parent.parent / "systemd" / "smsc-relay.service"


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # keep-alives every 0.1 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    yield sock
    sock.close()


async def datagrams(sock: socket.socket, until: str, timeout: float = 5.0) -> list[str]:
    loop = asyncio.get_running_loop()
    got: list[str] = []
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            got.append(sock.recv(4096).decode())
            if until in got[-1]:
                return got
        except BlockingIOError:
            await asyncio.sleep(0.01)
    raise AssertionError(f"no {until!r} in {got}")


async def test_notify_lifecycle(
    notify_socket: socket.socket, provider: tuple[FakeProvider, int], relay_factory: Any
) -> None:
    _fake, port = provider
    relay = await relay_factory(port)
    ready = await datagrams(notify_socket, "READY=1")
    assert ready[0] == f"READY=1\nSTATUS=listening on 127.0.0.1:{relay.port}, 0 queued"
    await datagrams(notify_socket, "WATCHDOG=1")  # keep-alives from the event loop
    relay.reload()
    reload_msgs = await datagrams(notify_socket, "READY=1")
    assert any(m.startswith("RELOADING=1\nMONOTONIC_USEC=") for m in reload_msgs)
    await asyncio.to_thread(smtplib_send, relay.port, message())
    await relay.stop()
    assert "STOPPING=1\nSTATUS=stopping" in await datagrams(notify_socket, "STOPPING=1")


def test_unit_exposure_is_ok() -> None:
    out = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT)],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    score = float(out.rsplit("Overall exposure level for smsc-relay.service: ", 1)[1].split()[0])
    assert score <= 2.0
    text = UNIT.read_text()
    for needed in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure", "StateDirectory=",
                   "ConfigurationDirectory=", "LoadCredential=password:", "WatchdogSec=", "User=smsc-relay"):  # fmt: skip
        assert needed in text
    caps = [
        line
        for line in text.splitlines()
        if line.startswith(("AmbientCapabilities", "CapabilityBoundingSet"))
    ]
    assert caps == ["AmbientCapabilities=CAP_NET_BIND_SERVICE", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE"]
