"""docs/install.md's "Without systemd" recipe, run as written: `make install` moved into a
temporary directory, then the relay as the service user `smsc-relay` in dry run on a loopback
port of the system's choosing; one mail in, its provider mail in the outbox, a clean stop.

The commands are read out of the doc (the block after its marker comment): doc and test cannot
drift. Like .ci/run's own install it creates the system user smsc-relay when there is none."""

from __future__ import annotations

import os
import pwd
import queue
import re
import shutil
import signal
import smtplib
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import IO

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "install.md"
MARK = "<!-- tests/test_install_recipe.py runs this block"
USER = "smsc-relay"
# The variables that move the install (scripts/install.sh) and the default paths the doc types.
MOVED = {
    "PREFIX": "/opt/smsc-relay",
    "ETC": "/etc/smsc-relay",
    "STATE_DIR": "/var/lib/smsc-relay",
    "UNIT_DIR": "/etc/systemd/system",
    "BIN_DIR": "/usr/local/bin",
    "MAN_DIR": "/usr/local/share/man",
}
WAIT = 60.0  # seconds, at most, for the relay to listen and for the mail to reach the outbox

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def recipe() -> list[str]:
    """The commands of the marked block, in order (comment lines and blank lines left out)."""
    text = DOC.read_text()
    assert text.count(MARK) == 1, f"{DOC} must mark exactly one block with {MARK!r}"
    block = re.match(r"[^\n]*-->\n```sh\n(?P<body>.*?)\n```", text[text.index(MARK) :], re.DOTALL)
    assert block, f"the marker in {DOC} must stand right above a ```sh block"
    return [c for c in block["body"].splitlines() if c.strip() and not c.lstrip().startswith("#")]


def test_the_doc_marks_the_install_and_the_serve_command() -> None:
    commands = recipe()
    assert commands[0].split("#")[0].split() == ["make", "install"]
    assert f" {USER} serve -c /etc/smsc-relay/relay.yaml" in commands[-1]
    script = (ROOT / "scripts" / "install.sh").read_text()
    for var, default in MOVED.items():  # the paths this test moves are the install's defaults
        assert f"{var}=${{{var}:-{default}}}" in script


@pytest.fixture
def place() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="smsc-relay-install-"))
    folder.chmod(0o755)  # the service user walks into it, as it would into /opt and /etc
    closed = [p for p in folder.parents if not p.stat().st_mode & stat.S_IXOTH]
    assert not closed, f"{closed[0]} is closed to other users: set TMPDIR to a directory they may enter"
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _moved(command: str, where: dict[str, str]) -> str:
    for var, default in MOVED.items():
        command = command.replace(default, where[var])
    return command


def _lines(stream: IO[str], into: queue.Queue[str | None]) -> None:
    for text in stream:
        into.put(text)
    into.put(None)


def _wait_for(pattern: str, lines: queue.Queue[str | None], log: list[str]) -> re.Match[str]:
    """The first log line matching pattern; the whole log in the failure if none comes in time."""
    deadline = time.monotonic() + WAIT
    while (left := deadline - time.monotonic()) > 0:
        try:
            got = lines.get(timeout=left)
        except queue.Empty:
            break
        if got is None:
            pytest.fail(f"the relay ended before {pattern!r}:\n{''.join(log)}")
        log.append(got)
        if found := re.search(pattern, got):
            return found
    pytest.fail(f"no {pattern!r} within {WAIT} s:\n{''.join(log)}")


def test_the_recipe_without_systemd_runs_as_written(place: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test installs the relay and becomes its user: run it as root (CI does)")
    where = {var: str(place / var.lower()) for var in MOVED}
    env = {**os.environ, **where, "PATH": f"{where['BIN_DIR']}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    for systemds in ("CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(systemds, None)  # without systemd: nothing it hands a service
    *install, serve = recipe()

    for command in install:  # as root, in the checkout, as section 1 of the doc has it
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", _moved(command, where)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"

    service = pwd.getpwnam(USER)
    state, etc = Path(where["STATE_DIR"]), Path(where["ETC"])
    made = state.stat()
    assert (made.st_uid, made.st_gid, stat.S_IMODE(made.st_mode)) == (service.pw_uid, service.pw_gid, 0o700)
    secret = (etc / "password").stat()
    assert (secret.st_uid, secret.st_gid, stat.S_IMODE(secret.st_mode)) == (0, service.pw_gid, 0o640)
    assert (
        Path(where["BIN_DIR"], "smsc-relay").resolve() == Path(where["PREFIX"], "bin", "smsc-relay").resolve()
    )
    page = Path(where["PREFIX"], "share", "man", "man8", "smsc-relay.8")
    assert page.read_text().startswith(".TH SMSC\\-RELAY 8")
    assert Path(where["MAN_DIR"], "man8", "smsc-relay.8").resolve() == page
    unit = Path(where["UNIT_DIR"], "smsc-relay.service").read_text()
    assert f"ExecStart={where['PREFIX']}/bin/smsc-relay serve -c {where['ETC']}/relay.yaml" in unit

    # The one edit an operator makes here: a port of the system's choosing, not 2525.
    config = etc / "relay.yaml"
    text, edits = re.subn(r"^(listen:\n(?:  #.*\n)*  host: 127\.0\.0\.1 .*\n  port: )2525\b", r"\g<1>0",
                          config.read_text(), count=1, flags=re.MULTILINE)  # fmt: skip
    assert edits == 1, "the installed relay.yaml no longer starts with listen: host, port 2525"
    config.write_text(text)
    password = (etc / "password").read_text().strip()

    relay = subprocess.Popen(["bash", "-c", "exec " + _moved(serve, where)], cwd=ROOT, env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)  # fmt: skip
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_lines, args=(relay.stderr, lines), daemon=True)
    reader.start()
    log: list[str] = []
    try:
        port = int(_wait_for(r"event=ready listen=127\.0\.0\.1:(\d+) ", lines, log)[1])
        uid = re.search(r"^Uid:\s+(\d+)", Path(f"/proc/{relay.pid}/status").read_text(), re.MULTILINE)
        assert uid and int(uid[1]) == service.pw_uid, "the relay does not run as the service user"

        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = (
            "cron@db1.example.com",
            "79991234567@sms.example.com",
            "Backup failed",
        )
        mail.set_content("pg_dump: No space left on device")
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo()
            assert client.mail("cron@db1.example.com")[0] == 250
            assert client.rcpt("79991234567@sms.example.com")[0] == 250
            code, reply = client.data(mail.as_bytes())
        assert code == 250, reply
        queued = re.search(r"queued as (\S+)", reply.decode())
        assert queued, reply
        relay_id = queued[1]
        _wait_for(rf"event=dry_run id={re.escape(relay_id)} ", lines, log)

        outbox = state / "outbox"
        for written in (outbox / f"{relay_id}.eml", outbox / f"{relay_id}.txt"):
            assert written.stat().st_uid == service.pw_uid
            assert password not in written.read_text(errors="replace")
        assert ":79991234567:Backup failed" in (outbox / f"{relay_id}.txt").read_text()  # the provider's line
        assert (state / "spool.db").stat().st_uid == service.pw_uid

        relay.send_signal(signal.SIGTERM)  # setpriv exec'd the relay: the signal reaches it
        assert relay.wait(timeout=30) == 0, "".join(log)
        _wait_for(r"event=stopped", lines, log)
    finally:
        if relay.poll() is None:
            relay.kill()
            relay.wait(timeout=10)
        reader.join(timeout=10)  # it ends at the pipe's end, when the relay is gone
        assert relay.stderr
        relay.stderr.close()
    assert password not in "".join(log)
