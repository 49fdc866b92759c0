"""CLI paths beyond the corpus: stdin, --to, a missing file, no command, `python -m relay`."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

import relay
from relay.cli import main as cli
from relay.errors import Exit
from relay.spool.admin import SpoolAdmin
from tests.helpers import CORPUS

CONFIG = str(CORPUS / "relay.yaml")


def test_render_from_stdin_with_explicit_recipient(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = b"Subject: Door open\r\nTo: someone@else.example\r\n\r\nServer room door open\r\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw)))
    assert cli.main(["render", "-c", CONFIG, "--to", "79991234567@sms.example.com", "--json", "-"]) == 0
    (item,) = json.loads(capsys.readouterr().out)
    assert item["rcpt"] == ["79991234567@sms.example.com"]  # --to wins over the To: header
    assert item["text"] == "Door open\nServer room door open"


def test_render_reports_unroutable_header_recipient(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    mail = tmp_path / "m.eml"
    mail.write_bytes(b"Subject: x\r\nTo: nobody@example.com\r\n\r\ny\r\n")
    assert cli.main(["render", "-c", CONFIG, str(mail)]) == Exit.DATAERR
    assert "rejected: 550 5.1.1 no route for <nobody@example.com>" in capsys.readouterr().err


def test_missing_file_and_no_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["render", "-c", CONFIG, "/nonexistent/mail.eml"]) == Exit.NOINPUT
    assert "cannot read /nonexistent/mail.eml" in capsys.readouterr().err
    assert cli.main([]) == Exit.USAGE


def test_python_dash_m_relay() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "relay", "check", "-c", CONFIG], capture_output=True, text=True
    )
    assert done.returncode == 0 and "OK (3 route(s)" in done.stdout


def test_render_shows_a_held_alert_of_a_storm_route(capsys: pytest.CaptureFixture[str]) -> None:
    example = str(Path(__file__).parent.parent / "config" / "relay.example.yaml")
    eml = str(CORPUS / "zabbix_problem.eml")
    assert cli.main(["render", "-c", example, "--to", "alerts@sms.example.com", "--json", eml]) == 0
    (item,) = json.loads(capsys.readouterr().out)
    assert item["route"] == "monitoring" and item["phones"] == ["+79990000001", "+79990000002"]
    assert item["held"].startswith(
        "held 3 s after a quiet spell, 20 s in a storm to merge with other alerts; repeats counted for 300 s"
    )
    assert (
        item["text"]
        == "PROBLEM app-03: High CPU utilization (over 90% for 5m): Current utilization: 97.2 %, Warning"
    )
    assert "route monitoring: zabbix summary" in " ".join(item["notes"])
    assert "mylogin:***:" in item["command"] and "ALERTS" in item["command"]
    assert cli.main(["render", "-c", example, "--to", "alerts@sms.example.com", eml]) == 0
    assert "storm:    held 3 s after a quiet spell" in capsys.readouterr().out


def _spool_config(tmp_path: Path, password: str = 'password: "T0p-s3cret,pw"') -> Path:
    cfg = tmp_path / "relay.yaml"
    cfg.write_text(
        f"provider: {{login: mylogin, {password}, reply_address: replies@relay.example.com}}\n"
        f"spool: {{path: {tmp_path / 'spool.db'}}}\n"
        "routes:\n  - match: {recipient: '^(?P<phones>[0-9]{11})@sms\\.example\\.com$'}\n"
    )
    return cfg


@pytest.mark.parametrize(
    "where",
    [["-c", "{cfg}", "queue", "list"], ["queue", "-c", "{cfg}", "list"], ["queue", "list", "-c", "{cfg}"]],
)
def test_config_option_before_or_after_the_command(
    where: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _spool_config(tmp_path)
    spool = SpoolAdmin.open(tmp_path / "spool.db")  # an empty spool, as a relay leaves it
    spool.close()
    assert cli.main([a.format(cfg=cfg) for a in where] + ["--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_config_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMSC_RELAY_CONFIG", str(_spool_config(tmp_path)))
    assert cli.main(["check"]) == 0
    assert str(tmp_path / "relay.yaml") in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"smsc-relay {relay.__version__}"


def test_queue_and_stats_need_no_password_check_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "credentials" / "password"
    cfg = _spool_config(tmp_path, f"password_file: {missing}")
    SpoolAdmin.open(tmp_path / "spool.db").close()
    assert cli.main(["stats", "--json", "-c", str(cfg)]) == 0  # what the service user may run
    assert json.loads(capsys.readouterr().out)["total"] == 0
    assert cli.main(["check", "-c", str(cfg)]) == Exit.CONFIG
    assert f"cannot read {missing}" in capsys.readouterr().err


def test_queue_list_columns_hold_the_longest_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from relay.model import State
    from relay.spool import messages
    from tests.helpers import make_config, render

    cfg = _spool_config(tmp_path)
    admin = SpoolAdmin.open(tmp_path / "spool.db")
    mails = render(b"Subject: x\r\n\r\ny", ["79991234567@sms.example.com"], make_config()).provider_mails
    for state in (State.UNCONFIRMED, State.SENT):
        rows = messages.new_rows(mails, mail_from="a@b", inbound_id="", state=state, attempts=1, now=1.0)
        messages.insert(admin.conn, [dataclasses.replace(r, id=f"id-{state.value}") for r in rows])
    admin.close()
    assert cli.main(["queue", "list", "-c", str(cfg)]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    starts = {line[25:].split()[0]: line.index(line[25:].split()[1], 25) for line in lines}
    assert set(starts) == {"unconfirmed", "sent"} and len(set(starts.values())) == 1  # one column
    assert header.index("ATT") <= min(starts.values())


def test_route_says_what_a_recipient_gets_without_a_mail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No password needed (the file does not exist here): routing reads only the routes."""
    from tests.helpers import BASE_CONFIG, PASSWORD

    cfg = tmp_path / "relay.yaml"
    cfg.write_text(BASE_CONFIG.replace(f'password: "{PASSWORD}"', "password_file: /nonexistent/pw"))
    assert cli.main(["route", "oncall@sms.example.com", "-c", str(cfg), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["route"], shown["mode"], shown["phones"], shown["sender"]) == (
        "oncall", "command", ["+79990000001", "+79990000002"], "ALERTS",
    )  # fmt: skip
    assert cli.main(["route", "79991234567@sms.example.com", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "route:         number\n" in out and "phones:        79991234567\n" in out
    assert cli.main(["route", "nobody@sms.example.com", "-c", str(cfg), "--subject", "hello"]) == 1
    assert "550 5.1.1 no route for <nobody@sms.example.com>" in capsys.readouterr().err


def test_config_shows_the_effective_configuration_with_secrets_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.helpers import BASE_CONFIG, PASSWORD

    dsn = "host=/tmp user=relay password=s3cret-dsn dbname=spool"
    cfg = tmp_path / "relay.yaml"
    cfg.write_text(BASE_CONFIG + f"spool: {{backend: postgresql, dsn: '{dsn}'}}\n")
    assert cli.main(["config", "-c", str(cfg), "--json"]) == 0
    out = capsys.readouterr().out
    assert PASSWORD not in out and "s3cret-dsn" not in out
    full = json.loads(out)
    assert full["listen"]["port"] == 2525 and full["delivery"]["concurrency"] == 2  # defaults filled in
    assert full["spool"]["dsn"] == "***" and full["spool"]["backend"] == "postgresql"
    assert cli.main(["config", "-c", str(cfg), "--diff", "--json"]) == 0
    diff = json.loads(capsys.readouterr().out)
    assert "listen" not in diff and "delivery" not in diff  # nothing there differs from the defaults
    assert diff["provider"]["login"] == "mylogin" and diff["spool"]["backend"] == "postgresql"
    assert [r["name"] for r in diff["routes"]] == ["number", "oncall", "ops", "legacy"]
    assert cli.main(["config", "-c", str(cfg)]) == 0  # YAML for people
    assert "listen:\n  host: 127.0.0.1\n  port: 2525\n" in capsys.readouterr().out


def _spool_only_config(tmp_path: Path) -> Path:
    """A config whose password file does not exist here, and an existing (empty) spool."""
    import sqlite3

    from relay.spool import schema
    from tests.helpers import BASE_CONFIG, PASSWORD

    spool = tmp_path / "spool.db"
    conn = sqlite3.connect(spool)
    schema.migrate(conn)
    conn.close()
    cfg = tmp_path / "relay.yaml"
    text = BASE_CONFIG.replace(f'password: "{PASSWORD}"', "password_file: /nonexistent/pw")
    cfg.write_text(text + f"spool: {{path: {spool}}}\n")
    return cfg


def test_send_test_needs_no_password_and_removes_what_no_relay_took(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _spool_only_config(tmp_path)
    assert cli.main(["send-test", "+79990001122", "hello", "--wait", "0.5", "-c", str(cfg)]) == Exit.TEMPFAIL
    err = capsys.readouterr().err
    assert (
        "is the relay running?" in err
        and "no relay took it within 0 s: removed (--keep leaves it queued)" in err
    )
    assert cli.main(["queue", "list", "--json", "-c", str(cfg)]) == 0
    assert json.loads(capsys.readouterr().out) == []  # nothing left to go out when a relay next starts
    assert (
        cli.main(["send-test", "+79990001122", "again", "--wait", "0.5", "--keep", "-c", str(cfg)])
        == Exit.TEMPFAIL
    )
    capsys.readouterr()
    assert cli.main(["queue", "list", "--json", "-c", str(cfg)]) == 0
    assert [m["state"] for m in json.loads(capsys.readouterr().out)] == ["queued"]
