"""`serve`'s event loop (relay/daemon/loop.py): uvloop when it is installed, asyncio's when it is
not or SMSC_RELAY_LOOP=asyncio says so. uvloop is optional: these tests pass without it."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import re
import signal
import subprocess
import sys
import types
from pathlib import Path
from typing import cast

import pytest

from relay.daemon import loop
from relay.errors import ConfigError, Exit
from relay.smtp.transports import writable
from tests.helpers import closed_port
from tests.relays import write_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError


@pytest.fixture
def fake_uvloop(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """An installed uvloop, whether or not this machine has one: its factory is asyncio's."""
    fake = types.ModuleType("uvloop")
    fake.__version__ = "9.9.9"  # type: ignore[attr-defined]
    fake.new_event_loop = lambda: asyncio.new_event_loop()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "uvloop", fake)
    return fake


def test_asyncio_when_uvloop_is_absent(without_uvloop: None) -> None:
    assert loop.choose({}) == ("asyncio", asyncio.new_event_loop)


def test_uvloop_when_it_is_installed(fake_uvloop: types.ModuleType) -> None:
    assert loop.choose({}) == ("uvloop-9.9.9", fake_uvloop.new_event_loop)
    assert loop.choose({loop.LOOP_ENV: "auto"})[0] == "uvloop-9.9.9"
    assert loop.choose({loop.LOOP_ENV: " UVLOOP "})[0] == "uvloop-9.9.9"


def test_the_environment_forces_asyncio(fake_uvloop: types.ModuleType) -> None:
    assert loop.choose({loop.LOOP_ENV: "asyncio"}) == ("asyncio", asyncio.new_event_loop)


def test_uvloop_asked_for_but_absent_is_a_config_error(without_uvloop: None) -> None:
    with pytest.raises(ConfigError, match=r"SMSC_RELAY_LOOP: is uvloop, which is not installed"):
        loop.choose({loop.LOOP_ENV: "uvloop"})


def test_an_unknown_loop_is_a_config_error(fake_uvloop: types.ModuleType) -> None:
    with pytest.raises(ConfigError, match=r"SMSC_RELAY_LOOP: is one of auto, asyncio, uvloop, not 'tokio'"):
        loop.choose({loop.LOOP_ENV: "tokio"})


def test_run_says_which_loop_and_runs_on_it(without_uvloop: None, caplog: pytest.LogCaptureFixture) -> None:
    async def which() -> type[asyncio.AbstractEventLoop]:
        return type(asyncio.get_running_loop())

    with caplog.at_level(logging.INFO, logger="relay.daemon"):
        ran_on = loop.run(which(), {})
    assert ran_on.__module__.startswith("asyncio.")
    assert [r.getMessage() for r in caplog.records] == ["event=event_loop loop=asyncio"]


def test_run_refuses_before_starting(without_uvloop: None) -> None:
    async def never() -> None:
        raise AssertionError("ran")

    with pytest.raises(ConfigError):
        loop.run(never(), {loop.LOOP_ENV: "uvloop"})  # and no "never awaited" warning (filterwarnings=error)


class ForeignTransport:
    """A transport as uvloop's are: it writes and closes, but is no asyncio.Transport subclass."""

    def __init__(self, closing: bool = False) -> None:
        self.closing = closing

    def is_closing(self) -> bool:
        return self.closing

    def write(self, data: bytes) -> None:
        raise NotImplementedError


class ReadOnly(asyncio.ReadTransport):
    def is_closing(self) -> bool:
        return False


def test_a_session_writes_its_last_reply_on_any_loop() -> None:
    """relay/smtp/transports.py: isinstance(t, asyncio.WriteTransport) is False on uvloop."""
    foreign = cast(asyncio.BaseTransport, ForeignTransport())
    assert not isinstance(foreign, asyncio.WriteTransport)
    assert writable(foreign) is foreign
    assert writable(cast(asyncio.BaseTransport, ForeignTransport(closing=True))) is None
    assert writable(None) is None
    assert writable(ReadOnly()) is None  # it cannot write


def serve(tmp_path: Path, env: dict[str, str]) -> tuple[int, str]:
    """`smsc-relay serve` as systemd runs it, until ready (or exited), then SIGTERM: (exit code, log)."""
    with closed_port() as provider_port:
        config = write_config(tmp_path / "relay.yaml", provider_port=provider_port)
        log = tmp_path / "relay.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "relay", "serve", "-c", str(config)],
                cwd=ROOT, stdout=out, stderr=out, env={**os.environ, **env},
            )  # fmt: skip
        try:
            for _ in range(400):  # bounded: 20 s to be ready
                if "event=ready" in log.read_text() or proc.poll() is not None:
                    break
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(0.05)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            code = proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return code, log.read_text()


def loop_line(text: str) -> str:
    m = re.search(r"event=event_loop loop=(\S+)", text)
    assert m, text
    return m.group(1)


@pytest.mark.slow
def test_serve_runs_on_asyncio_without_uvloop(tmp_path: Path) -> None:
    hidden = tmp_path / "hide" / "uvloop"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('uvloop hidden by the test')\n")
    path = os.pathsep.join(filter(None, [str(hidden.parent), os.environ.get("PYTHONPATH")]))
    code, text = serve(tmp_path, {"PYTHONPATH": path})
    assert (code, loop_line(text)) == (Exit.OK, "asyncio"), text
    assert "event=ready" in text and "event=stopped" in text


@pytest.mark.slow
def test_serve_on_the_loop_installed_or_asked_for(tmp_path: Path) -> None:
    installed = uvloop_installed()  # `make setup` installs it
    code, text = serve(tmp_path, {})
    assert code == Exit.OK, text
    assert loop_line(text).startswith("uvloop-") if installed else loop_line(text) == "asyncio"
    code, text = serve(tmp_path, {loop.LOOP_ENV: "asyncio"})
    assert (code, loop_line(text)) == (Exit.OK, "asyncio"), text


@pytest.mark.slow
def test_serve_refuses_a_loop_it_does_not_have(tmp_path: Path) -> None:
    code, text = serve(tmp_path, {loop.LOOP_ENV: "tokio"})
    assert code == Exit.CONFIG and "SMSC_RELAY_LOOP: is one of auto, asyncio, uvloop" in text
    assert "event=ready" not in text


@pytest.mark.slow
@pytest.mark.parametrize("choice", ["asyncio", "auto"])  # auto: uvloop where it is installed
async def test_serve_keeps_its_caps_and_says_421_at_stop(tmp_path: Path, choice: str) -> None:
    """What a session does with its transport, on the loop `serve` runs on: a connection past
    max_connections is told 421 and closed, an idle one is told 421 at SIGTERM."""
    with closed_port() as provider_port:
        config = write_config(tmp_path / "relay.yaml", provider_port=provider_port, max_connections=1)
        log = tmp_path / "relay.log"
        with open(log, "wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "relay", "serve", "-c", str(config),
                cwd=ROOT, stdout=out, stderr=out, env={**os.environ, loop.LOOP_ENV: choice},
            )  # fmt: skip
        try:
            for _ in range(400):  # bounded: 20 s to be ready
                m = re.search(r"event=ready listen=127\.0\.0\.1:(\d+)", log.read_text())
                if m or proc.returncode is not None:
                    break
                await asyncio.sleep(0.05)
            assert m, log.read_text()
            first = await asyncio.open_connection("127.0.0.1", int(m.group(1)))
            assert (await first[0].readline()).startswith(b"220 ")
            second = await asyncio.open_connection("127.0.0.1", int(m.group(1)))
            assert (await asyncio.wait_for(second[0].readline(), 10)).startswith(b"421 4.7.0")
            assert await asyncio.wait_for(second[0].read(), 10) == b""  # and closed
            proc.send_signal(signal.SIGTERM)
            assert (await asyncio.wait_for(first[0].readline(), 10)).startswith(b"421 4.3.2")
            assert await asyncio.wait_for(proc.wait(), 30) == Exit.OK
            first[1].close()
            second[1].close()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    text = log.read_text()
    assert "Traceback" not in text, text
    assert loop_line(text).startswith("uvloop-" if choice == "auto" and uvloop_installed() else "asyncio")


def uvloop_installed() -> bool:
    return importlib.util.find_spec("uvloop") is not None
