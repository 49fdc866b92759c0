"""Config validation: every problem reported at once, with key path and line; secrets hidden."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from relay.cli import main as cli
from relay.config import load as config_mod
from relay.config.schema import StormSettings
from relay.errors import ConfigError, Exit
from relay.model import SpoolBackend
from tests.helpers import BASE_CONFIG, PASSWORD, make_config, render

EXAMPLE = Path(__file__).parent.parent / "config" / "relay.example.yaml"


def problems(text: str, env: dict[str, str] | None = None, base_dir: Path = Path(".")) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config_mod.parse(text, env=env or {}, base_dir=base_dir)
    return [str(p) for p in info.value.problems]


def test_example_config_is_valid_and_dry_run() -> None:
    cfg = config_mod.load(EXAMPLE, env={})
    assert cfg.provider.outbox is not None  # out of the box nothing leaves the machine
    assert cfg.provider.outbox.is_absolute()
    assert cfg.provider.test
    assert len(cfg.routes) == 6
    # the storm section shows the defaults: what it says is what `storm: true` gives
    (monitoring,) = [r for r in cfg.routes if r.storm is not None]
    defaults = StormSettings(translit=monitoring.translit)
    assert monitoring.storm is not None
    assert monitoring.storm == defaults


@pytest.mark.parametrize(
    ("eml", "kind", "key"),
    [
        ("zabbix_problem.eml", "problem", "zabbix app-03 high cpu utilization (over 90% for 5m)"),
        ("zabbix_recovery.eml", "recovery", "zabbix app-03 high cpu utilization (over 90% for 5m)"),
        ("nagios_host_problem.eml", "problem", "nagios web01"),
        ("nagios_service_recovery.eml", "recovery", "nagios web01 http"),
        (
            "alertmanager_text_and_html.eml",
            "recovery",
            "alertmanager instancedown node-exporter db1:9100 critical",
        ),
        (
            "alertmanager_default_html.eml",
            "problem",
            "alertmanager instancedown node-exporter db1:9100 critical",
        ),
    ],
)
def test_the_example_storm_route_knows_the_corpus_senders_with_no_patterns(
    eml: str, kind: str, key: str
) -> None:
    cfg = config_mod.load(EXAMPLE, env={})
    raw = (Path(__file__).parent / "corpus" / eml).read_bytes()
    rendered = render(raw, ["alerts@sms.example.com"], cfg)
    (alert,) = rendered.alerts
    assert (alert.kind.value, alert.key) == (kind, key), alert.text[:120]


def test_base_config_values() -> None:
    cfg = make_config()
    assert cfg.provider.login == "mylogin"
    assert cfg.provider.password.value == PASSWORD
    assert cfg.provider.hosts == ("send.smscentre.com",)
    assert cfg.listen.max_message_size == 2 * 1024 * 1024
    assert [r.name for r in cfg.routes] == ["number", "oncall", "ops", "legacy"]
    assert cfg.routes[1].phones == ("+79990000001", "+79990000002")


def test_every_problem_is_reported_at_once_with_path_and_line() -> None:
    text = """\
listen:
  port: seventy
  networks: [10.0.0.0/33]
provider:
  login: "bad:login"
  password: "a:b"
  reply_address: not-an-address
  charset: klingon
  tset: true
routes:
  - match: {recipient: '(unclosed'}
  - match: {recipient: '^x@y$'}
    sender: "WAY-TOO-LONG-SENDER"
    translit: 7
    time: "25-26"
  - match: {recipient: '^z@y$'}
    template: "{subject.__class__}"
"""
    found = problems(text)
    expected = [
        "listen.port (line 2): expected int",
        "listen.networks[0] (line 3): not a network",
        "provider.login (line 5): login may hold only",
        "provider.password (line 6): password contains ':'",
        "provider.reply_address (line 7): 'not-an-address' is not a valid e-mail address",
        "provider.charset (line 8): unknown charset 'klingon'",
        "provider.tset (line 9): unknown key (did you mean 'test'?)",
        "routes[0].match.recipient (line 11): bad regular expression",
        "routes[1].sender (line 13): sender 'WAY-TOO-LONG-SENDER' must be",
        "routes[1].translit (line 14): 7 is out of range 0..2",
        "routes[1].time (line 15): time window '25-26' needs 0 <= h1 < h2 <= 24",
        "routes[1].phones (line 12): a command route needs phones",
        "routes[2].template (line 17): unknown field {subject.__class__}",
        "routes[0].phones (line 11): a command route needs phones",
        "routes[2].phones (line 16): a command route needs phones",
    ]
    for want in expected:
        assert any(p.startswith(want) for p in found), (want, found)
    assert len(found) == len(expected)
    lines = [int(p.split("(line ")[1].split(")")[0]) for p in found]
    assert lines == sorted(lines)


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ("routes: []", "routes (line 2): at least one route is required"),
        ("routes: [{phones: ['+79990000001']}]", "routes[0].match.recipient (line 2): is required"),
        (
            "routes: [{match: {recipient: 'a'}, phones: ['123']}]",
            "'123' is not an international phone number",
        ),
        ("routes: [{match: {recipient: 'a'}, phones: ['0079991234567']}]", "without 00"),
        (
            "routes: [{match: {recipient: 'a'}, phones: ['٧٩٩٩١٢٣٤٥٦٧']}]",
            "is not an international phone",
        ),
        ("routes: [{match: {recipient: 'a'}, phones: ['G12']}]", None),
        (
            "routes: [{match: {recipient: 'a'}, phones: ['+79990000001'], mode: passthrough}]",
            "no effect in passthrough",
        ),
        (
            "routes: [{match: {recipient: 'a'}, phones: [x]}]",
            "routes[0].phones[0] (line 2): 'x' is not an international",
        ),
        (
            "routes: [{match: {recipient: 'a'}, mode: smtp}]",
            "'smtp' is not one of command, email2sms",
        ),
        (
            "routes: [{match: {recipient: 'a'}, phones: ['+79990000001'], tz: 99}]",
            "tz '99' must be",
        ),
        (
            "routes: [{match: {recipient: 'a'}, phones: ['+79990000001'], max_parts: 99}]",
            "out of range 0..15",
        ),
        (
            "routes: [{match: {recipient: 'a'}, phones: ['+79990000001'], type: fax}]",
            "'fax' is not one of sms",
        ),
        (
            "routes: [{match: {recipient: 'a'}, phones: ['+79990000001'], template: '{nope}'}]",
            "unknown field {nope}",
        ),
        (
            "routes: [{match: {recipient: 'a'}, phones: ['+79990000001'], template: '{'}]",
            "bad template",
        ),
        (
            "routes: [{match: {recipient: 'a', subjekt: x}, phones: ['+79990000001']}]",
            "did you mean 'subject'",
        ),
        (
            "routes: [{match: {recipient: 'a'}, phones: ['+79990000001'], time: '22.11.26 10:30'}]",
            "time '22.11.26",
        ),
    ],
)
def test_route_problems(snippet: str, message: str | None) -> None:
    head = "provider: {password: x, reply_address: r@relay.example.com}\n"
    if message is None:
        config_mod.parse(head + snippet, env={})
        return
    found = problems(head + snippet)
    assert any(message in p for p in found), found


def test_email2sms_needs_a_login() -> None:
    found = problems(
        "provider: {password: k, reply_address: r@e.example}\n"
        "routes: [{match: {recipient: a}, mode: email2sms}]"
    )
    assert any("email2sms needs provider.login" in p for p in found)


def test_yaml_syntax_error_and_duplicate_keys_are_problems() -> None:
    assert "(yaml)" in problems("routes: [")[0]
    found = problems("provider: {password: a}\nprovider: {password: b}\n")
    assert "duplicate key 'provider'" in found[0]
    assert "line 2" in found[0]


@pytest.mark.parametrize(
    ("text", "line", "shown", "hint"),
    [
        ("listen:\n  host: 127.0.0.1\n\tport: 2525\n", 3, "→port: 2525", "YAML does not allow tabs"),
        (
            "provider:\n  login: a\n   password: x\n",
            3,
            "   password: x",
            "indented deeper than the key above",
        ),
        ("routes: [\n", 2, "", "not closed"),
    ],
)
def test_yaml_errors_name_line_column_the_line_and_a_hint(
    text: str, line: int, shown: str, hint: str
) -> None:
    with pytest.raises(ConfigError) as info:
        config_mod.parse(text, env={}, source="relay.yaml")
    (problem,) = info.value.problems
    assert problem.line == line and "at column" in problem.message
    assert f"\n      {shown}\n" in problem.message and "^" in problem.message
    assert "\n    hint: " in problem.message and hint in problem.message.split("hint: ")[1]
    assert "<unicode string>" not in str(info.value)


def test_password_from_env_with_default_and_missing() -> None:
    text = BASE_CONFIG.replace(f'password: "{PASSWORD}"', "password: ${SMSC_PASSWORD}")
    assert config_mod.parse(text, env={"SMSC_PASSWORD": "from-env"}).provider.password.value == "from-env"
    assert any("environment variable SMSC_PASSWORD is not set" in p for p in problems(text))
    text2 = BASE_CONFIG.replace(f'password: "{PASSWORD}"', "password: ${SMSC_PASSWORD:-fallback}")
    assert config_mod.parse(text2, env={}).provider.password.value == "fallback"


def test_password_file_relative_to_config(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("file-secret\n")
    text = BASE_CONFIG.replace(f'password: "{PASSWORD}"', "password_file: pw")
    cfg_file = tmp_path / "relay.yaml"
    cfg_file.write_text(text)
    assert config_mod.load(cfg_file, env={}).provider.password.value == "file-secret"
    (tmp_path / "pw").unlink()
    with pytest.raises(ConfigError) as info:
        config_mod.load(cfg_file, env={})
    assert "provider.password_file" in str(info.value)
    assert "FileNotFoundError" in str(info.value)


def test_both_password_kinds_and_none_are_problems() -> None:
    text = BASE_CONFIG.replace(f'password: "{PASSWORD}"', f'password: "{PASSWORD}"\n  password_file: /x')
    assert any("not both" in p for p in problems(text))
    text = BASE_CONFIG.replace(f'password: "{PASSWORD}"', "")
    assert any(p.startswith("provider.password") and "is required" in p for p in problems(text))


def test_secret_never_appears_in_errors_or_repr() -> None:
    secret = "hunter2:with-colon"
    text = BASE_CONFIG.replace(f'password: "{PASSWORD}"', f'password: "{secret}"') + "bogus: 1\n"
    with pytest.raises(ConfigError) as info:
        config_mod.parse(text, env={})
    assert "hunter2" not in str(info.value)
    cfg = make_config()
    assert PASSWORD not in repr(cfg)
    assert PASSWORD not in str(cfg.provider)


def test_check_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", "-c", str(EXAMPLE)]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen: {port: 99999}\nrouts: []\n")
    assert cli.main(["check", "-c", str(bad)]) == Exit.CONFIG and int(Exit.CONFIG) == 78
    err = capsys.readouterr().err
    assert "listen.port (line 1): 99999 is out of range" in err
    assert "routs (line 2): unknown key (did you mean 'routes'?)" in err
    assert cli.main(["check", "-c", str(tmp_path / "missing.yaml")]) == 78
    assert "cannot read" in capsys.readouterr().err


def test_check_warns_about_each_example_value_left_in_a_live_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live = tmp_path / "live.yaml"
    text = EXAMPLE.read_text().replace("  outbox: ../var/outbox", "  outbox: null")
    live.write_text(text.replace("../var/", str(tmp_path) + "/"))
    assert cli.main(["check", "-c", str(live)]) == 0  # valid: warnings only
    err = capsys.readouterr().err
    for key in ("provider.login", "provider.password", "provider.reply_address", "routes[1].phones",
                "routes[1].sender", "aliases.oncall"):  # fmt: skip
        assert f"warning: {key}: " in err, key
    assert "example value(s) in a live config" in err
    assert cli.main(["check", "-c", str(EXAMPLE)]) == 0  # the dry run as shipped: one note
    err = capsys.readouterr().err
    assert "fine for a dry run" in err and "warning:" not in err


def test_a_non_ascii_reply_address_is_refused_by_check() -> None:
    with pytest.raises(ConfigError, match=r"provider.reply_address.*must be plain ASCII"):
        make_config(BASE_CONFIG.replace("replies@relay.example.com", "ответы@пример.рф"))


@pytest.mark.parametrize("value", ["[x]", "{a: b}", "true"])
def test_a_password_that_is_not_a_string_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match=r"provider.password.*expected a string"):
        make_config(BASE_CONFIG.replace(f'password: "{PASSWORD}"', f"password: {value}"))


HTTP_BASE = """
provider:
  login: mylogin
  password: pw
  reply_address: replies@relay.example.com
{provider}
delivery: {{concurrency: {concurrency}}}
routes:
  - name: number
    match: {{recipient: '^(?P<phones>[0-9]+)@sms\\.example\\.com$'}}
{routes}
"""


def http_config(provider: str = "  transport: http", concurrency: int = 2, routes: str = "") -> str:
    return HTTP_BASE.format(provider=provider, concurrency=concurrency, routes=routes)


def test_http_transport_defaults() -> None:
    cfg = config_mod.parse(http_config())
    p = cfg.provider
    assert (p.transport.value, p.api_urls, p.failover, p.track_delivery, p.low_balance) == (
        "http",
        ("https://smsc.ru/sys/",),
        False,
        False,
        0.0,
    )
    cfg = config_mod.parse(
        http_config("  api_url: https://smsc.ru/sys\n  api_mirrors: [https://www2.smsc.ru/sys/]")
    )
    assert cfg.provider.api_urls == ("https://smsc.ru/sys/", "https://www2.smsc.ru/sys/")
    assert cfg.provider.transport.value == "smtp" and not cfg.provider.uses_api


@pytest.mark.parametrize(
    ("provider", "concurrency", "routes", "expected"),
    [
        ("  transport: http", 13, "", "delivery.concurrency"),
        ("  failover: true", 20, "", "at most 12 with the HTTP API"),
        ("  transport: http", 2, "  - name: ops\n    match: {recipient: '^ops@'}\n    mode: email2sms",
         "route ops is email2sms"),
        ("  transport: http\n  api_url: http://smsc.ru/sys/", 2, "", "use https"),
        ("  api_url: https://u:p@smsc.ru/sys/", 2, "", "no credentials, query or fragment"),
        ("  api_mirrors: [ftp://smsc.ru/]", 2, "", "is not an http(s) URL"),
        ("  transport: http\n  failover: true", 2, "", "failover"),
        ("  transport: pigeon", 2, "", "provider.transport"),
        ("  low_balance: -5", 2, "", "amount of money"),
        ("  track_timeout: 5", 2, "", "track_timeout"),
    ],
)  # fmt: skip
def test_http_settings_are_checked(provider: str, concurrency: int, routes: str, expected: str) -> None:
    found = problems(http_config(provider, concurrency, routes))
    assert any(expected in p for p in found), found


def test_http_to_loopback_is_allowed() -> None:
    cfg = config_mod.parse(http_config("  transport: http\n  api_url: http://127.0.0.1:8080/sys/"))
    assert cfg.provider.api_urls == ("http://127.0.0.1:8080/sys/",)


DSN = "host=db.example.com dbname=relay user=relay password=pg-s3cret"


def test_a_postgresql_spool_takes_its_dsn_from_env_or_a_file_and_never_shows_it(tmp_path: Path) -> None:
    text = (
        BASE_CONFIG
        + "spool: {backend: postgresql, dsn: '${SMSC_SPOOL_DSN}', relay_name: relay-1, lease: 30}\n"
    )
    cfg = config_mod.parse(text, env={"SMSC_SPOOL_DSN": DSN})
    assert cfg.spool.backend is SpoolBackend.POSTGRESQL and cfg.spool.dsn.value == DSN
    assert (cfg.spool.relay_name, cfg.spool.lease) == ("relay-1", 30)
    assert "pg-s3cret" not in repr(cfg) and "pg-s3cret" not in str(cfg.spool)
    (tmp_path / "dsn").write_text(DSN + "\n")
    in_file = config_mod.parse(
        BASE_CONFIG + "spool: {backend: postgresql, dsn_file: dsn}\n", base_dir=tmp_path
    )
    assert in_file.spool.dsn.value == DSN and in_file.spool.relay_name == ""  # hostname:port then


@pytest.mark.parametrize(
    ("spool", "expected"),
    [
        ("{backend: postgresql}", "spool.dsn: is required with backend: postgresql"),
        ("{backend: postgresql, dsn: 'x', dsn_file: /x}", "spool.dsn: give dsn or dsn_file, not both"),
        ("{backend: postgresql, dsn: 'host=a password=pg-s3cret =oops'}", "spool.dsn: is not a PostgreSQL"),
        ("{backend: postgresql, dsn: 'host=a', path: /x.db}", "spool.path: is the SQLite file"),
        ("{backend: postgresql, dsn: 'host=a', relay_name: 'a b'}", "spool.relay_name: letters, digits"),
        ("{backend: postgresql, dsn: 'host=a', lease: 1}", "spool.lease"),
        ("{dsn: 'host=a'}", "spool.dsn: is for backend: postgresql"),
        ("{backend: mysql}", "spool.backend: 'mysql' is not one of sqlite, postgresql"),
    ],
)
def test_postgresql_spool_settings_are_checked(spool: str, expected: str) -> None:
    found = [re.sub(r" \(line \d+\)", "", p) for p in problems(BASE_CONFIG + f"spool: {spool}\n")]
    assert any(p.startswith(expected) for p in found), found
    assert not any("pg-s3cret" in p for p in found)
