"""`summaries:` in the config: an operator teaches the relay an in-house alert format without code."""

from __future__ import annotations

import pytest

from relay.errors import ConfigError
from tests.helpers import BASE_CONFIG, make_config, render

RULE = r"""
summaries:
  - name: erp
    match:
      sender: '@erp\.example\.com'
      subject: '^ERP (?P<state>ALARM|CLEAR) (?P<problem>.+)$'
      body: '^Station: (?P<host>\S+)$'
    recovery: '^CLEAR$'
"""
MAIL = (
    b"From: erp@erp.example.com\r\nSubject: ERP ALARM Stock sync stalled\r\n\r\n"
    b"Dear operator,\r\nStation: WH-07\r\nQueue: 1 204 orders waiting\r\nKind regards, the ERP\r\n"
)


def test_a_configured_rule_takes_its_mail_before_the_general_summariser() -> None:
    cfg = make_config(BASE_CONFIG + RULE)
    rendered = render(MAIL, ["oncall@sms.example.com"], cfg, mail_from="erp@erp.example.com")
    assert rendered.provider_mails[0].texts == ("ALARM WH-07 Stock sync stalled",)
    assert any(
        "config:erp summary (configured): state='ALARM' kept; host='WH-07' kept" in n for n in rendered.notes
    )
    plain = render(MAIL, ["oncall@sms.example.com"], make_config(), mail_from="erp@erp.example.com")
    assert plain.provider_mails[0].texts != rendered.provider_mails[0].texts  # the rule made the difference


def test_a_template_orders_the_pieces_and_recovery_is_read_from_the_state() -> None:
    rule = RULE + '    template: "{host}: {problem} ({state})"\n'
    cfg = make_config(BASE_CONFIG + rule)
    clear = MAIL.replace(b"ERP ALARM", b"ERP CLEAR")
    rendered = render(clear, ["oncall@sms.example.com"], cfg, mail_from="erp@erp.example.com")
    assert rendered.provider_mails[0].texts == ("WH-07: Stock sync stalled (CLEAR)",)
    from relay import summaries
    from relay.summaries.configured import recognisers

    summary = summaries.summarise(rendered.mail, recognisers(cfg.summaries))
    assert summary is not None and summary.recovery and summary.recogniser == "config:erp"


def test_a_rule_whose_patterns_do_not_all_match_leaves_the_mail_to_the_others() -> None:
    cfg = make_config(BASE_CONFIG + RULE)
    other = MAIL.replace(b"From: erp@erp.example.com", b"From: someone@else.example.com")
    rendered = render(other, ["oncall@sms.example.com"], cfg, mail_from="someone@else.example.com")
    assert not any("config:erp" in n for n in rendered.notes)


@pytest.mark.parametrize(
    ("rule", "path", "message"),
    [
        ("  - name: x\n    match: {subject: '(?P<host>'}\n", "summaries[0].match.subject", "bad regular expression"),
        ("  - name: x\n    match: {}\n", "summaries[0].match", "needs at least one of sender, subject, body"),
        ("  - name: x\n    match: {subject: '(?P<who>\\S+)'}\n", "summaries[0].match", "unknown group(s) who"),
        ("  - name: x\n    match: {subject: '(?P<state>\\S+)'}\n", "summaries[0].match", "would name nothing"),
        ("  - name: x\n    match: {subject: '(?P<host>\\S+)'}\n    template: '{host} {value}'\n",
         "summaries[0].template", "{value} is not a group"),
        ("  - name: x\n    match: {subject: '(?P<host>\\S+)'}\n    colour: red\n", "summaries[0].colour", "unknown key"),
        ("  - name: x\n    match: {subject: '(?P<host>\\S+)'}\n  - name: x\n    match: {body: '(?P<host>\\S+)'}\n",
         "summaries[1].name", "named 'x' already"),
    ],
)  # fmt: skip
def test_check_names_each_mistake_in_a_rule(rule: str, path: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_config(BASE_CONFIG + "summaries:\n" + rule)
    assert any(p.path == path and message in p.message for p in info.value.problems), info.value.problems
