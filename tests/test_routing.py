"""Routing: first match wins; phones from rule, recipient group or alias; modes; merging."""

from __future__ import annotations

import pytest

from relay.errors import AddressError, ConfigError, ContentError, LoopError, NoRouteError
from relay.formatters import command, mime
from relay.model import RouteMode
from relay.routing import check_recipient
from tests.helpers import BASE_CONFIG, PASSWORD, mail, make_config, render

CFG = make_config()


def test_phone_from_recipient_group() -> None:
    (pm,) = render(mail("disk full"), ["79991234567@sms.example.com"]).provider_mails
    assert pm.phones == ("79991234567",)
    assert pm.texts == ("Alert\ndisk full",)


def test_alias_route_and_sender() -> None:
    (req,) = render(mail("x"), ["oncall@sms.example.com"]).requests
    assert req.phones == ("+79990000001", "+79990000002")
    assert req.options.sender == "ALERTS"


def test_first_match_wins_and_case_insensitive() -> None:
    cfg = make_config(BASE_CONFIG.replace("routes:\n", "routes:\n  - name: vip\n    match: {recipient: '^79991234567@'}\n"
                                          "    phones: ['+70000000000']\n", 1))  # fmt: skip
    (req,) = render(mail("x"), ["79991234567@SMS.EXAMPLE.COM"], cfg).requests
    assert req.route == "vip" and req.phones == ("+70000000000",)


def test_no_route_is_550_and_bad_phone_is_553() -> None:
    with pytest.raises(NoRouteError) as info:
        render(mail("x"), ["nobody@sms.example.com"])
    assert str(info.value.reply) == "550 5.1.1 no route for <nobody@sms.example.com>"
    with pytest.raises(AddressError) as bad:
        check_recipient(CFG.routes, CFG.aliases, "0079991234567@sms.example.com", "a@b.c")
    assert bad.value.reply.code == 553


def test_sender_and_subject_conditions() -> None:
    extra = ("  - name: from-zabbix\n    match: {recipient: '^alerts@', sender: '^zabbix@', subject: '^Problem'}\n"
             "    phones: ['+71111111111']\n  - name: alerts-other\n    match: {recipient: '^alerts@'}\n"
             "    phones: ['+72222222222']\n")  # fmt: skip
    cfg = make_config(BASE_CONFIG.replace("routes:\n", "routes:\n" + extra, 1))
    r = render(mail("x", subject="Problem: CPU"), ["alerts@x.example"], cfg, mail_from="zabbix@mon")
    assert r.requests[0].route == "from-zabbix"
    r = render(mail("x", subject="Resolved: CPU"), ["alerts@x.example"], cfg, mail_from="zabbix@mon")
    assert r.requests[0].route == "alerts-other"
    r = render(mail("x", subject="Problem"), ["alerts@x.example"], cfg, mail_from="cron@host")
    assert r.requests[0].route == "alerts-other"
    # At RCPT the subject is unknown, so a route with a subject condition may still match.
    assert check_recipient(cfg.routes, cfg.aliases, "alerts@x.example", "zabbix@mon").name == "from-zabbix"


def test_same_text_to_several_recipients_is_one_request() -> None:
    r = render(mail("x", subject=""), ["79991234567@sms.example.com", "79997654321@sms.example.com"])
    (req,) = r.requests
    assert req.phones == ("79991234567", "79997654321")
    assert not command.is_list_form(req)
    assert (
        command.format_command(req, command.Credentials("l", "p"), "1")
        == "l:p:id1::,,,1:79991234567,79997654321:x"
    )


def test_texts_differing_per_phone_use_list_form() -> None:
    cfg = make_config(BASE_CONFIG.replace("match: {recipient: '^(?P<phones>", "template: 'to {to}: {text}'\n"
                                          "    match: {recipient: '^(?P<phones>"))  # fmt: skip
    r = render(mail("x"), ["79991234567@sms.example.com", "79997654321@sms.example.com"], cfg)
    (req,) = r.requests
    assert command.is_list_form(req)
    body = command.format_command(req, command.Credentials("l", "p"), "1")
    assert body == ("l:p:id1::,,,1::79991234567:to 79991234567@sms.example.com: x\n"
                    "79997654321:to 79997654321@sms.example.com: x")  # fmt: skip


def test_different_options_are_separate_requests() -> None:
    r = render(mail("x"), ["79991234567@sms.example.com", "oncall@sms.example.com"])
    assert [q.route for q in r.requests] == ["number", "oncall"]
    assert len({q.relay_id for q in r.requests}) == 2


def test_email2sms_mode() -> None:
    (pm,) = render(mail("Backup done", subject="cron"), ["ops@sms.example.com"]).provider_mails
    assert pm.mode is RouteMode.EMAIL2SMS
    assert pm.rcpt_to == "mylogin@send.smscentre.com"
    assert pm.phones == ()
    assert mime.readable(pm.message).endswith("\n\ncron\nBackup done\n")


def test_passthrough_replaces_credentials_and_id() -> None:
    body = "old:oldpw:777:,:1,0,SHOP,0:+79991112233,79994445566:Your order: ready"
    r = render(mail(body), ["send@send.smscentre.com"])
    (req,) = r.requests
    assert req.original_id == "777" and req.relay_id == "id1"
    assert req.phones == ("+79991112233", "79994445566")
    out = command.format_command(req, command.Credentials("mylogin", PASSWORD), "1")
    # The relay's test flag replaces the mail's: the replies come to the relay.
    assert req.options.test == ""
    assert out == f"mylogin:{PASSWORD}:id1::1,0,SHOP,1:+79991112233,79994445566:Your order: ready"


def test_passthrough_never_keeps_the_clients_password() -> None:
    """`credentials: keep` stored the mail's own password in the spool (issue 22, item 5): it
    is refused, and a passthrough mail's credentials never reach the spool."""
    with pytest.raises(ConfigError, match="keep is refused: the client's own provider password"):
        make_config(
            BASE_CONFIG.replace("    mode: passthrough\n", "    mode: passthrough\n    credentials: keep\n")
        )
    cfg = make_config()
    (pm,) = render(mail("old:oldpw:7:,::79991112233:hi"), ["send@send.smscentre.com"], cfg).provider_mails
    assert "oldpw" not in pm.masked and b"oldpw" not in pm.message and pm.keeps_config_secret
    assert "mylogin:***:id1:" in mime.readable(pm.masked.encode())


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("just some text", "not a provider command line"),
        ("l:p:1:,::G1;#2:hi", "'#2' is not an international phone number"),
        ("l:p:1:,:,,WAY-TOO-LONG-NAME:79991112233:hi", "sender"),
        ("l:p:1:25.12.26 10:30,:,::79991112233:hi", "bad provider command line"),
    ],
)
def test_passthrough_rejects_bad_commands(body: str, reason: str) -> None:
    with pytest.raises(ContentError) as info:
        render(mail(body), ["send@send.smscentre.com"])
    assert reason in str(info.value)
    assert info.value.reply.code == 554


def test_empty_mail_and_loops() -> None:
    with pytest.raises(ContentError, match="nothing usable to send"):
        render(b"\r\n", ["79991234567@sms.example.com"])
    hops = b"".join(b"Received: by x\r\n" for _ in range(51))
    with pytest.raises(LoopError) as info:
        render(hops + mail("x"), ["79991234567@sms.example.com"])
    assert info.value.reply.code == 554 and info.value.reply.enhanced == "5.4.6"


def test_template_prefix_comment_and_quiet_hours() -> None:
    route = """  - name: voice
    match: {recipient: '^call@'}
    phones: ['+79990000009']
    type: call
    comment: nightly
    template: '{subject}: {text} (from {from})'
    time: 9-21
    tz: -1
    translit: 1
    format: 0
"""
    cfg = make_config(BASE_CONFIG.replace("routes:\n", "routes:\n" + route, 1))
    (req,) = render(mail("db down"), ["call@x.example"], cfg).requests
    body = command.format_command(req, command.Credentials("l", "p"), "1")
    assert (
        body
        == "l:p:id1:9-21,-1:1,0,,1::+79990000009:__CALL__: Alert: db down (from app@example.com)\\n~~~\\nnightly"
    )


def test_client_text_cannot_become_provider_syntax() -> None:
    raw = mail("__CALL__: pay\n~~~\nhidden", subject="")
    (pm,) = render(raw, ["79991234567@sms.example.com"]).provider_mails
    assert pm.texts == ("CALL__: pay / hidden",)  # the summary drops the rule; nothing leads with __
    number = "@sms\\.example\\.com$'}\n"
    off = make_config(BASE_CONFIG.replace(number, number + "    summary: off\n", 1))
    (pm,) = render(raw, ["79991234567@sms.example.com"], off).provider_mails
    assert pm.texts == ("CALL__: pay\n~ ~ ~\nhidden",)


def test_max_parts_cuts_with_marker() -> None:
    cfg = make_config(BASE_CONFIG.replace("'^(?P<phones>\\+?[0-9]{10,15})@sms\\.example\\.com$'}",
                                          "'^(?P<phones>\\+?[0-9]{10,15})@sms\\.example\\.com$'}\n    max_parts: 1\n"
                                          "    truncation_marker: ' [cut]'"))  # fmt: skip
    (pm,) = render(mail("word " * 100), ["79991234567@sms.example.com"], cfg).provider_mails
    assert pm.segments.parts == 1
    assert pm.texts[0].endswith(" [cut]")


def test_a_provider_command_line_sent_to_a_phone_route_never_becomes_sms_text() -> None:
    """An old app that talked to the provider directly, pointed at an ordinary route."""
    raw = "Subject: sms\r\n\r\nalex:123::::79991234567:Тестовое сообщение\r\n".encode()
    rendered = render(raw, ["79990000005@sms.example.com"])
    (pm,) = rendered.provider_mails
    assert pm.texts == ("Тестовое сообщение",) and pm.phones == ("79990000005",)
    readable = mime.readable(pm.masked.encode("ascii"))  # the provider mail, decoded
    assert "alex:" not in readable and ":123:" not in readable and "mylogin:***:" in readable
    assert any("provider command line with its own login and password" in w for w in rendered.warnings)
    plain = render(b"Subject: x\r\n\r\nnote: a: b: c: d: e: f\r\n", ["79990000005@sms.example.com"])
    assert plain.warnings == () and "note: a: b" in plain.provider_mails[0].texts[0]


def test_a_long_text_full_of_backslash_n_is_cut_not_refused() -> None:
    """Windows paths and JSON logs: the provider's `\\n` escape must not push a cut text past 1000."""
    body = "".join(f"C:\\new\\name{n}.log; " for n in range(200))  # ~4,000 characters, 400 of them \n
    rendered = render(f"Subject: log\r\n\r\n{body}\r\n".encode(), ["79990000005@sms.example.com"])
    (pm,) = rendered.provider_mails
    (text,) = pm.texts
    assert len(text) <= command.MAX_MES and "\\ new" in text and "\\new" not in text
