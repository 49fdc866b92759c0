"""No traceback reaches an operator: every subcommand, run as an unprivileged user against a
missing, unreadable or corrupt config or spool, answers in one line that says what is wrong."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import BASE_CONFIG, PASSWORD

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root to become another user (CI runs as root)"
)

# Run as `nobody`: everything the commands import is imported first, as root, since the
# interpreter's own files may be readable by root only.
AS_NOBODY = """
import os, sys
import relay.cli.main, relay.cli.queue, relay.cli.queue_change, relay.cli.render, relay.cli.route
import relay.cli.showconfig, relay.cli.sendtest, relay.cli.spool, relay.spool.admin, relay.spool.sqlite
import relay.spool.migrate, relay.pipeline, relay.summaries, json, yaml, email.parser
import encodings.idna, encodings.koi8_r, encodings.cp1251, encodings.utf_8, encodings.ascii, encodings.latin_1
os.setgroups([]); os.setgid({gid}); os.setuid({uid})
sys.exit(relay.cli.main.main(sys.argv[1:]))
"""
COMMANDS = [
    ["check"], ["route", "oncall@sms.example.com"], ["config", "--diff"], ["render", "{mail}"],
    ["queue", "list"], ["queue", "show", "r1"], ["queue", "retry", "r1", "--yes"], ["queue", "drop", "--all", "--yes"],
    ["queue", "alerts"], ["queue", "resume"], ["stats"], ["send-test", "+79990000001", "hello", "--wait", "0"],
    ["spool", "migrate", "--from", "{spool}"],
]  # fmt: skip


@pytest.fixture
def place() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="smsc-relay-perm-"))
    folder.chmod(0o755)
    yield folder
    subprocess.run(["rm", "-rf", str(folder)], check=False)


def _setup(place: Path, condition: str) -> Path:
    spool = place / "spool.db"
    config = place / "relay.yaml"
    config.write_text(BASE_CONFIG + f"spool: {{path: {spool}}}\n")
    config.chmod(0o644)
    (place / "mail.eml").write_bytes(b"Subject: x\r\nTo: oncall@sms.example.com\r\n\r\ny\r\n")
    (place / "mail.eml").chmod(0o644)
    if condition == "config missing":
        config.unlink()
    elif condition == "config unreadable":
        config.chmod(0o600)
    elif condition == "config corrupt":
        config.write_text("routes: [\n\tprovider: {")
    elif condition == "spool corrupt":
        spool.write_bytes(b"this is not a database" * 100)
        spool.chmod(0o666)
    elif condition == "spool unreadable":
        import sqlite3

        sqlite3.connect(spool).close()
        spool.chmod(0o600)
    return config


@pytest.mark.parametrize(
    "condition",
    [
        "config missing",
        "config unreadable",
        "config corrupt",
        "spool missing",
        "spool unreadable",
        "spool corrupt",
    ],
)
def test_no_subcommand_prints_a_traceback(place: Path, condition: str) -> None:
    config = _setup(place, condition)
    # The child turns into nobody, who cannot write the coverage data of `make test` (its
    # subprocess measurement would print that failure at exit): it runs unmeasured.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")} | {"SMSC_RELAY_DEBUG": ""}
    nobody = pwd.getpwnam("nobody")
    code = AS_NOBODY.format(uid=nobody.pw_uid, gid=nobody.pw_gid)
    for command in COMMANDS:
        args = [a.format(mail=place / "mail.eml", spool=place / "spool.db") for a in command]
        done = subprocess.run([sys.executable, "-c", code, *args, "-c", str(config)], capture_output=True,
                              text=True, timeout=60, env=env)  # fmt: skip
        said = done.stdout + done.stderr
        assert "Traceback" not in said, (command, condition, said)
        assert PASSWORD not in said
        if done.returncode != 0:
            assert done.stderr.strip(), (command, condition, "failed without a word")


def test_a_spool_the_user_may_not_open_is_explained(place: Path) -> None:
    config = _setup(place, "spool unreadable")
    nobody = pwd.getpwnam("nobody")
    code = AS_NOBODY.format(uid=nobody.pw_uid, gid=nobody.pw_gid)
    done = subprocess.run([sys.executable, "-c", code, "queue", "list", "-c", str(config)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 75, done.stderr
    assert f"permission denied: {place / 'spool.db'} is root:root -rw------- (600)" in done.stderr
    assert "this command runs as nobody" in done.stderr and "sudo -u" in done.stderr


@pytest.mark.parametrize(
    ("condition", "said"),
    [
        ("spool corrupt", "is not a readable SQLite database"),
        ("config unreadable", "relay.yaml is root:root -rw-------"),
    ],
)
def test_a_corrupt_spool_and_an_unreadable_config_are_named(place: Path, condition: str, said: str) -> None:
    config = _setup(place, condition)
    nobody = pwd.getpwnam("nobody")
    code = AS_NOBODY.format(uid=nobody.pw_uid, gid=nobody.pw_gid)
    done = subprocess.run([sys.executable, "-c", code, "stats", "-c", str(config)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode in (75, 78) and said in done.stderr, done.stderr
