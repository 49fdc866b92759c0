"""provider.smpp (issue 24): the config reader's defaults and refusals, and what `smsc-relay check`
says of an SMPP config (where it binds, a password in the clear) without connecting anywhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from relay.cli import main as cli
from relay.config import load as config_mod
from relay.config.schema import SmppConfig
from relay.errors import ConfigError, Exit
from relay.model import TransportKind

PASSWORD = "s3cr-t8!"  # an SMPP 3.4 bind's password: 8 characters at most

# No example value (placeholders.py) in it, so that check's only warnings are the SMPP ones.
SMPP_BASE = """
provider:
  login: acme
  password: "{password}"
  reply_address: sms-replies@relay.acme.lan
  transport: {transport}
{provider}
spool: {{path: {spool}}}
delivery: {{concurrency: {concurrency}}}
routes:
  - name: number
    match: {{recipient: '^(?P<phones>[0-9]+)@sms\\.relay\\.test$'}}
{routes}
"""
EMAIL2SMS_ROUTE = """  - name: ops
    match: {recipient: '^ops@sms\\.relay\\.test$'}
    mode: email2sms
"""


def smpp_config(
    provider: str = "",
    *,
    transport: str = "smpp",
    password: str = PASSWORD,
    concurrency: int = 2,
    routes: str = "",
    spool: Path = Path("spool.db"),
) -> str:
    return SMPP_BASE.format(
        provider=provider, transport=transport, password=password, concurrency=concurrency,
        routes=routes, spool=spool,
    )  # fmt: skip


def smpp_of(provider: str = "") -> SmppConfig:
    cfg = config_mod.parse(smpp_config(provider), env={})
    assert cfg.provider.transport is TransportKind.SMPP
    return cfg.provider.smpp


def problems(text: str) -> list[str]:
    """Each problem without its line number (the snippets' lines are not what is tested)."""
    with pytest.raises(ConfigError) as info:
        config_mod.parse(text, env={})
    return [re.sub(r" \(line \d+\)", "", str(p)) for p in info.value.problems]


def test_the_defaults_are_the_providers_connection_page() -> None:
    for section in ("", "  smpp: {}", "  smpp:"):
        s = smpp_of(section)
        assert s == SmppConfig(), section
    assert (s.host, s.port, s.tls, s.backup_host, s.system_type) == (
        "smpp.smscentre.com", 3700, False, "smpp2.smscentre.com", "",
    )  # fmt: skip
    assert (s.sessions, s.window, s.enquire_link, s.bind_timeout) == (1, 10, 30.0, 10.0)
    assert (s.source_ton, s.source_npi, s.dest_ton, s.dest_npi) == (5, 0, 1, 1)
    assert (s.validity, s.receipt_wait, s.failover_to) == (1440, 600.0, TransportKind.HTTP)
    assert s.hosts == (("smpp.smscentre.com", 3700), ("smpp2.smscentre.com", 3700))


def test_tls_takes_the_providers_tls_port_unless_a_port_is_given() -> None:
    assert smpp_of("  smpp: {tls: true}").port == 3443
    assert smpp_of("  smpp: {tls: true, port: 3700}").port == 3700
    assert smpp_of("  smpp: {port: 2775}").port == 2775
    s = smpp_of("  smpp: {tls: true, backup_host: ''}")
    assert s.hosts == (("smpp.smscentre.com", 3443),)  # the backup shares the main host's port


def test_every_key_is_read() -> None:
    s = smpp_of(
        "  smpp: {host: 10.0.0.5, port: 2775, backup_host: smsc-b.example.net, system_type: ISO,"
        " sessions: 8, window: 300, enquire_link: 110, bind_timeout: 5, source_ton: 1, source_npi: 1,"
        " dest_ton: 0, dest_npi: 0, validity: 1, receipt_wait: 60, failover_to: smtp}"
    )
    assert s == SmppConfig(
        host="10.0.0.5", port=2775, backup_host="smsc-b.example.net", system_type="ISO", sessions=8,
        window=300, enquire_link=110.0, bind_timeout=5.0, source_ton=1, source_npi=1, dest_ton=0,
        dest_npi=0, validity=1, receipt_wait=60.0, failover_to=TransportKind.SMTP,
    )  # fmt: skip


def test_an_enquire_link_below_smpp34s_30_seconds_is_refused_with_the_reason() -> None:
    assert problems(smpp_config("  smpp: {enquire_link: 20}")) == [
        "provider.smpp.enquire_link: 20 is below 30: the SMPP library sends enquire_link every 30 s"
        " and cannot be set to send more often"
    ]
    assert any(
        "enquire_link: 111 is out of range" in p for p in problems(smpp_config("  smpp: {enquire_link: 111}"))
    )


@pytest.mark.parametrize(
    ("smpp", "expected"),
    [
        ("{window: 0}", "provider.smpp.window: 0 is out of range 1..300"),
        ("{window: 301}", "provider.smpp.window: 301 is out of range 1..300"),
        ("{sessions: 0}", "provider.smpp.sessions: 0 is out of range 1..8"),
        ("{sessions: 9}", "provider.smpp.sessions: 9 is out of range 1..8"),
        ("{validity: 1441}", "provider.smpp.validity: 1441 is out of range 1..1440"),
        ("{receipt_wait: 59}", "provider.smpp.receipt_wait: 59 is out of range 60..86400"),
        ("{system_type: abcdefghijklm}", "provider.smpp.system_type: expected up to 12 printable ASCII"),
        ("{system_type: 'тип'}", "provider.smpp.system_type: expected up to 12 printable ASCII"),
        ("{host: 'smpp.smscentre.com:3700'}", "provider.smpp.host: 'smpp.smscentre.com:3700' is not a host"),
        (
            "{host: 'smpp://smpp.smscentre.com'}",
            "provider.smpp.host: 'smpp://smpp.smscentre.com' is not a host",
        ),
        ("{backup_host: 'two words'}", "provider.smpp.backup_host: 'two words' is not a host"),
        ("{failover_to: smpp}", "provider.smpp.failover_to"),
        ("[smpp.smscentre.com]", "provider.smpp: expected a mapping"),  # any section, not only this
        ("{sistem_type: ISO}", "provider.smpp.sistem_type: unknown key (did you mean 'system_type'?)"),
    ],
)
def test_smpp_settings_are_checked(smpp: str, expected: str) -> None:
    found = problems(smpp_config(f"  smpp: {smpp}"))
    assert len(found) == 1 and found[0].startswith(expected), found


def test_the_longest_system_type_is_accepted() -> None:
    assert smpp_of("  smpp: {system_type: abcdefghijkl}").system_type == "abcdefghijkl"


@pytest.mark.parametrize("transport", ["smtp", "http"])
def test_an_smpp_section_is_refused_with_another_transport(transport: str) -> None:
    found = problems(smpp_config("  smpp: {window: 20}", transport=transport))
    assert found == ["provider.smpp: is read only with transport: smpp"]


def test_smpp_needs_a_login_and_an_ascii_password() -> None:
    text = smpp_config().replace("  login: acme\n", "")
    assert problems(text) == [
        "provider.login: is required with transport: smpp (the SMPP system_id is the login)"
    ]
    found = problems(smpp_config(password="пароль"))
    assert found == [
        "provider.password: must be Latin letters, digits and signs for SMPP (the provider's rule)"
    ]
    # SMPP 3.4's bind: the library would panic on longer ones, at every bind, not once at start
    assert problems(smpp_config(password="s3cr-t890")) == [
        "provider.password: is 9 characters; an SMPP bind takes 8 at most (SMPP 3.4): create an API"
        " password of up to 8 in the provider's account settings"
    ]
    assert problems(smpp_config().replace("login: acme", "login: a-login-of-16-chars")) == [
        "provider.login: is 19 characters; an SMPP system_id holds 15 at most"
    ]
    cfg = config_mod.parse(smpp_config().replace("login: acme", "login: login-of-15-chr"), env={})
    assert cfg.provider.login == "login-of-15-chr"


def test_failover_with_smpp_goes_to_http_or_smtp() -> None:
    cfg = config_mod.parse(smpp_config("  failover: true"), env={})
    assert cfg.provider.failover and cfg.provider.smpp.failover_to is TransportKind.HTTP
    cfg = config_mod.parse(smpp_config("  failover: true\n  smpp: {failover_to: smtp}"), env={})
    assert cfg.provider.failover and cfg.provider.smpp.failover_to is TransportKind.SMTP


def test_the_apis_concurrency_bound_holds_only_when_smpp_fails_over_to_http() -> None:
    found = problems(smpp_config("  failover: true", concurrency=13))
    assert len(found) == 1 and found[0].startswith("delivery.concurrency: at most 12 with the HTTP API"), (
        found
    )
    config_mod.parse(smpp_config("  failover: true\n  smpp: {failover_to: smtp}", concurrency=13), env={})
    config_mod.parse(smpp_config(concurrency=13), env={})


def test_an_email2sms_route_is_refused_with_smpp() -> None:
    found = problems(smpp_config(routes=EMAIL2SMS_ROUTE))
    assert len(found) == 1 and found[0].startswith("provider.transport: route ops is email2sms"), found
    config_mod.parse(smpp_config(routes=EMAIL2SMS_ROUTE, transport="smtp"), env={})


def test_the_examples_commented_smpp_block_shows_the_defaults() -> None:
    example = (Path(__file__).parent.parent / "config" / "relay.example.yaml").read_text()
    block = re.search(r"^  # smpp:.*?(?=^  [a-z])", example, re.MULTILINE | re.DOTALL)
    assert block, "config/relay.example.yaml has no commented `smpp:` block under provider"
    section = re.sub(r"^  # ", "  ", block[0], flags=re.MULTILINE)  # uncommented, as an operator does
    assert smpp_of(section) == SmppConfig()
    assert "| smpp:" in example  # named among provider.transport's choices


# ---- smsc-relay check ---------------------------------------------------------------------------


def _check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], provider: str, *more: str
) -> tuple[int, str, str]:
    path = tmp_path / "relay.yaml"
    path.write_text(smpp_config(provider, spool=tmp_path / "spool.db"))
    code = cli.main(["check", "-c", str(path), *more])
    out, err = capsys.readouterr()
    assert PASSWORD not in out + err
    return code, out, err


def test_check_says_where_smpp_binds_and_warns_of_a_password_in_the_clear(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _check(tmp_path, capsys, "")
    assert code == Exit.OK
    assert f"{tmp_path / 'relay.yaml'}: OK (1 route(s); provider SMPP smpp.smscentre.com:3700)\n" in out
    assert (
        "SMPP: binds smpp.smscentre.com:3700 (backup smpp2.smscentre.com:3700), tls off,"
        " 1 transceiver session(s) of window 10\n"
    ) in out
    assert err == (
        "warning: provider.smpp.tls: false with smpp.smscentre.com, smpp2.smscentre.com: the bind's password"
        " crosses the network in the clear; tls: true uses the provider's port 3443\n"
    )


def test_check_does_not_warn_with_tls_or_on_loopback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _check(tmp_path, capsys, "  smpp: {tls: true, sessions: 3, window: 50}")
    assert code == Exit.OK and err == ""
    assert (
        "SMPP: binds smpp.smscentre.com:3443 (backup smpp2.smscentre.com:3443), tls on, 3 transceiver" in out
    )
    for hosts in ("{host: 127.0.0.1, backup_host: ''}", "{host: localhost, backup_host: '::1'}"):
        code, out, err = _check(tmp_path, capsys, f"  smpp: {hosts}")
        assert code == Exit.OK and err == "", hosts
    assert "SMPP: binds localhost:3700 (backup ::1:3700), tls off" in out


def test_check_warns_of_the_one_host_that_is_not_loopback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, err = _check(tmp_path, capsys, "  smpp: {host: 127.0.0.1, backup_host: smpp-b.relay.test}")
    assert "SMPP: binds 127.0.0.1:3700 (backup smpp-b.relay.test:3700), tls off" in out
    assert err.startswith("warning: provider.smpp.tls: false with smpp-b.relay.test: the bind's password")


def test_check_names_smpps_failover(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = _check(tmp_path, capsys, "  failover: true")
    assert "provider SMPP smpp.smscentre.com:3700, failover to https://smsc.ru/sys/)" in out
    _, out, _ = _check(
        tmp_path, capsys, "  failover: true\n  host: smtp-gw.relay.test\n  smpp: {failover_to: smtp}"
    )
    assert "provider SMPP smpp.smscentre.com:3700, failover to SMTP smtp-gw.relay.test)" in out


def test_check_online_does_not_bind_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The hosts are names that cannot resolve (RFC 6761 .invalid): a probe of them would fail.
    smpp = "  smpp: {host: smpp.invalid, backup_host: smpp2.invalid, failover_to: smtp}"
    code, out, _ = _check(
        tmp_path,
        capsys,
        f"  failover: true\n  host: smtp.invalid\n  api_url: https://api.invalid/sys/\n{smpp}",
        "--online",
    )
    assert code == Exit.OK, out
    assert (
        "note: provider SMPP smpp.invalid:3700, smpp2.invalid:3700: not probed (check makes no bind), and the"
        " SMTP failover gateway is not either;"
    ) in out
    # Failing over to SMTP needs no HTTP API: the spool is the only probe.
    probes = [line for line in out.splitlines() if line.startswith(("provider ", "spool "))]
    assert len(probes) == 1 and probes[0].startswith(f"spool SQLite {tmp_path / 'spool.db'}: OK ("), probes


def test_check_prints_no_smpp_line_for_the_other_transports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "relay.yaml"
    for transport in ("smtp", "http"):
        path.write_text(smpp_config(transport=transport, spool=tmp_path / "spool.db"))
        assert cli.main(["check", "-c", str(path)]) == Exit.OK
        out, err = capsys.readouterr()
        assert "SMPP" not in out + err, transport
