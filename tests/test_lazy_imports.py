"""What `serve` loads (issue 23): psycopg, httpx, dkimpy and inscriptis (with libpq, lxml and
dnspython: ~27 MiB of RSS together) only when the config uses them, each on its first use.

In subprocesses: this one has imported all of them already."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import HTTP_ROUTES
from tests.relays import write_config

ROOT = Path(__file__).resolve().parent.parent
# The optional libraries and what each brings along (dnspython comes with dkimpy, lxml with inscriptis).
WATCHED = ("psycopg", "psycopg_pool", "httpx", "httpcore", "dkim", "dns", "inscriptis", "lxml")

COMMON = r"""
import asyncio, json, sys
from pathlib import Path

WATCHED = set(json.loads(sys.argv[2]))


def loaded() -> set[str]:
    return {name.split(".")[0] for name in sys.modules} & WATCHED
"""

# As `smsc-relay serve` runs (relay/cli/main.py cmd_serve): the command line's modules, logging,
# the config, the daemon on the chosen loop; then one plain-text mail in and out over SMTP.
SERVE = r"""
import aiosmtplib

from relay.cli import main as cli  # every command's module, as the `smsc-relay` command imports them
from relay.config.load import load
from relay.daemon import logs, loop
from relay.daemon.main import Daemon
from tests.fakes import FakeProvider, wait_for


async def main() -> None:
    fake = FakeProvider()
    server = await asyncio.get_running_loop().create_server(fake.factory, "127.0.0.1", 0)
    path = Path(sys.argv[1])
    path.write_text(path.read_text().replace("PROVIDER_PORT", str(server.sockets[0].getsockname()[1])))
    daemon = Daemon(path, load(path))
    await daemon.start()
    await aiosmtplib.send(
        "From: nagios@example.com\r\nSubject: disk\r\n\r\n/var is 95% full\r\n",
        sender="nagios@example.com", recipients=["79991234567@sms.example.com"],
        hostname="127.0.0.1", port=daemon.port,
    )
    await wait_for(lambda: fake.received, timeout=30)
    await daemon.stop()
    server.close()
    print(json.dumps({"loaded": sorted(loaded()), "sms": fake.received[0].sms.entries[0].text}))


logs.setup_logging("WARNING")
loop.run(main())
"""

# A relay that uses them all, step by step: what each step loads that was not loaded before.
STEPS = r"""
import email.policy, socket
from email.message import EmailMessage

steps: dict[str, list[str]] = {}
before: set[str] = set()


def step(name: str) -> None:
    global before
    steps[name] = sorted(loaded() - before)
    before = loaded()


from relay.cli import main as cli
from relay.config.load import load
from relay.daemon.main import Daemon
from relay.delivery import dkim
from relay.errors import UpstreamUnavailable
from relay.parsers import inbound

step("serve's modules")
closed = socket.socket()  # bound, never listening: a request to it is refused at once
closed.bind(("127.0.0.1", 0))
path = Path(sys.argv[1])
path.write_text(path.read_text().replace("API_PORT", str(closed.getsockname()[1])))
cfg = load(path, env={})
step("a config with a PostgreSQL DSN")
daemon = Daemon(path, cfg)  # the spool's pool connects in open(): no database is needed here
step("the daemon built")


async def ask() -> str:
    try:
        return await daemon.api.balance()
    except UpstreamUnavailable as exc:
        return str(exc)
    finally:
        await daemon.api.close()


http = asyncio.run(ask())
step("a request to the HTTP API")
verdict = dkim.verify(b"From: a@smsc.ru\r\n\r\nOK\r\n", domains=["smsc.ru"], dnsfunc=lambda *a, **k: None)
step("a reply checked for DKIM")
html = EmailMessage(policy=email.policy.SMTP)
html["Subject"] = "disk"
html.set_content("<html><body><p>/var is <b>95%</b> full</p></body></html>", subtype="html")
mail = inbound.parse(html.as_bytes(), settings=cfg.parsing)
step("an HTML-only mail")
print(json.dumps({"steps": steps, "http": http, "dkim": verdict.reason, "html": mail.text}))
"""


def child(script: str, config: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", COMMON + script, str(config), json.dumps(WATCHED)],
        cwd=ROOT, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_a_sqlite_smtp_relay_serves_without_any_of_them(tmp_path: Path) -> None:
    result = child(SERVE, write_config(tmp_path / "relay.yaml"))
    assert result["sms"] == "disk\n/var is 95% full"  # it did serve: the mail went out over SMTP
    assert result["loaded"] == []


def test_each_is_imported_by_its_first_use(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "relay.yaml",
        provider_port=25,  # the SMTP gateway: not used with transport: http
        routes=HTTP_ROUTES,
        spool='{backend: postgresql, dsn: "host=127.0.0.1 port=1 dbname=relay user=relay", relay_name: t}',
        provider_extra="  transport: http\n  api_url: http://127.0.0.1:API_PORT/sys/\n  test: false\n",
    )
    result = child(STEPS, config)
    assert result["steps"] == {
        "serve's modules": [],
        "a config with a PostgreSQL DSN": ["psycopg"],
        "the daemon built": ["psycopg_pool"],  # the PostgreSQL spool; httpx waits for a request
        "a request to the HTTP API": ["httpcore", "httpx"],
        "a reply checked for DKIM": ["dkim", "dns"],
        "an HTML-only mail": ["inscriptis", "lxml"],
    }
    # and each did its work once loaded
    assert "balance.php" not in str(result["http"]) and "127.0.0.1" in str(result["http"])
    assert result["dkim"] == "DKIM: no valid signature"
    assert result["html"] == "/var is 95% full"
