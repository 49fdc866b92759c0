"""Real tools' default alert mail (tests/corpus/alerts/) becomes one SMS part that names the host,
the problem and the state, without boilerplate; the held-out part is scored, never tuned on."""

from __future__ import annotations

import email
import email.policy
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay import summaries
from relay.config.schema import ParsingConfig
from relay.model import InboundMail
from relay.parsers import inbound
from tests.alert_corpus import ROOT, Case, cases, example_config, judge
from tests.helpers import variant_of

CASES = cases()
DEV = [c for c in CASES if c.split == "dev"]
HELDOUT = [c for c in CASES if c.split == "heldout"]
HELDOUT2 = [c for c in CASES if c.split == "heldout2"]  # a second set, made after the first was scored
HELDOUT3 = [c for c in CASES if c.split == "heldout3"]  # a third, made by a helper that saw no other mail
HELDOUT4 = [c for c in CASES if c.split == "heldout4"]  # a fourth, the same way, while dev4 was worked on
HELDOUT5 = [c for c in CASES if c.split == "heldout5"]  # a fifth, with dev5, tools drawn at random first
# The held-out score when the summariser was last changed (see docs/summaries.md): a floor
# against regressions, raised as it improves, never tuned towards by looking at those mails.
HELDOUT_FLOOR = 31
HELDOUT2_FLOOR = 22
HELDOUT3_FLOOR = 8  # 6/28 after the third round's code, as the code before it scored; 8/28 after the sixth
# 1/9 when made (Debian's report tools: long reports); 2/9 after the fifth round; 1/9 again since
# a short automatic note no longer takes every line to the next full stop (docs/summaries.md)
HELDOUT4_FLOOR = 1
HELDOUT5_FLOOR = 9  # 8/15 after the fifth round's code (dev5 7/18); 9/15 after the sixth
CONFIG = example_config()


def _decoded(path: object) -> str:
    assert hasattr(path, "read_bytes")
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    texts = [str(msg["subject"] or "")]
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            texts.append(part.get_content())
    return " ".join(" ".join(texts).lower().split())


def test_the_corpus_is_large_and_every_fact_is_in_its_mail() -> None:
    assert len(CASES) >= 40 and len({c.tool for c in CASES}) >= 30
    assert DEV and HELDOUT
    assert {c.split for c in CASES} <= {"dev", "heldout", "heldout2", "heldout3", "heldout4", "heldout5"}
    files = {p.relative_to(ROOT).as_posix() for p in ROOT.glob("*/*.eml")}
    assert files == {c.file for c in CASES}, "every mail has facts, every fact a mail"
    for case in CASES:
        text = _decoded(case.path)
        facts = [*case.hosts, *case.problem[:1], *case.boilerplate]
        missing = [f for f in facts if " ".join(f.lower().split()) not in text]
        assert not missing, (case.file, missing)


# Dev mails the summariser does not get right yet, each with what is missing: strict, so the day
# one passes the list must shrink. Not a place to hide a regression: the held-out floors stay.
KNOWN_GAPS = {
    # dev5 (facts/dev5.yaml), worked on for two rounds: 13 of 18 pass
    "dev/django_3.2_admin_email_500_connectionerror.eml": "value 'payments.example.com'",
    "dev/automysqlbackup_2.6_backup_log_after_error.eml": "value '116K'; boilerplate 'Rotating last weeks Backup'; 2 parts",
    "dev/logwatch_7.7_high_text_oom_ssh.eml": "the SSH section's address comes after the four issues",
    "dev/blat_3.2_html_sql_backup_failed_cp1251.eml": "UCS-2: the return code does not fit after the subject",
    # The third round's dev mails (facts/dev3.yaml), after the general changes they led to:
    "dev/kapacitor_1.8_doc_details_html_warning.eml": "the id is repeated as three lines; `Value:` is kept",
    "dev/gatus_5.36_email_triggered.eml": "the value (503) is inside a condition result `[STATUS] (503) == 200`",
    "dev/watchtower_1.7_shoutrrr_email_legacy_default_updated.eml": "a log of container updates, no alert structure",
    "dev/watchtower_1.7_shoutrrr_email_report_failed.eml": "a report of containers; the failed one is the fifth line",
    # The fourth round's dev mails (facts/dev4.yaml), added as made, not yet worked on: what is missing
    "dev/aide_0.18_daily_report_added_removed_changed.eml": "problem '/usr/local/bin/.kworker'; state 'Added, removed and changed entries detected'; value '/usr/local/bin/.kworker'",
    "dev/amanda_3.5_amreport_ok.eml": "value 'DailySet1-01'; boilerplate 'DUMPER STATS'",
    "dev/apticron_1.2_pending_upgrades_listchanges_curl_libxml2.eml": "2 parts",
}


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=pytest.mark.xfail(reason=KNOWN_GAPS[c.file], strict=True)) if c.file in KNOWN_GAPS else c
     for c in DEV],
    ids=[c.file for c in DEV],
)  # fmt: skip
def test_dev_mail_becomes_one_part_with_host_problem_and_state(case: Case) -> None:
    verdict = judge(case, CONFIG)
    assert verdict.ok, (verdict.text, verdict.missing)


def test_held_out_mail_score(capsys: pytest.CaptureFixture[str]) -> None:
    good = sum(judge(c, CONFIG).ok for c in HELDOUT)
    second = sum(judge(c, CONFIG).ok for c in HELDOUT2)
    third = sum(judge(c, CONFIG).ok for c in HELDOUT3)
    fourth = sum(judge(c, CONFIG).ok for c in HELDOUT4)
    fifth = sum(judge(c, CONFIG).ok for c in HELDOUT5)
    dev_good = sum(judge(c, CONFIG).ok for c in DEV)
    with capsys.disabled():
        print(f"\n[alert corpus] dev {dev_good}/{len(DEV)}, held-out {good}/{len(HELDOUT)}, "
              f"second {second}/{len(HELDOUT2)}, third {third}/{len(HELDOUT3)}, fourth {fourth}/{len(HELDOUT4)}, "
              f"fifth {fifth}/{len(HELDOUT5)}")  # fmt: skip
    assert good >= HELDOUT_FLOOR and second >= HELDOUT2_FLOOR and third >= HELDOUT3_FLOOR
    assert fourth >= HELDOUT4_FLOOR and fifth >= HELDOUT5_FLOOR


def _parse(case: Case) -> InboundMail:
    return inbound.parse(
        case.path.read_bytes(),
        mail_from="m@example.com",
        rcpt_tos=["x@sms.example.com"],
        settings=ParsingConfig(),
    )


MAILS = [_parse(c) for c in CASES]
LINE = st.text(st.characters(exclude_categories=["Cs", "Cc"]), max_size=60)


@settings(max_examples=400)
@given(n=st.integers(0, len(MAILS) - 1), lines=st.lists(LINE, max_size=5), cut=st.integers(0, 3000))
def test_a_summary_is_never_longer_than_its_mail_nor_loses_a_host_it_names(
    n: int, lines: list[str], cut: int
) -> None:
    """Every corpus mail, cut anywhere and with arbitrary lines added: never longer than the mail,
    and every host its own fields name is in the summary (else the plain text goes)."""
    variant = variant_of(MAILS[n], cut, lines)
    summary = summaries.summarise(variant)
    if summary is None:
        return
    assert len(summary.text) <= len(f"{variant.subject}\n{variant.text}")
    named = summaries.hosts_named(variant)
    if summary.recogniser != "general":
        assert all(h.lower() in summary.text.lower() for h in named), (named, summary.text)


@settings(max_examples=200)
@given(
    host=st.from_regex(r"[a-z][a-z0-9-]{1,15}(\.example\.com)?", fullmatch=True),
    problem=st.from_regex(r"[A-Z][a-z]{2,12}( [a-z]{2,10}){0,3}", fullmatch=True),
    state=st.sampled_from(["CRITICAL", "WARNING", "DOWN", "FAILED", "OK"]),
    noise=st.lists(
        st.sampled_from(["Hi,", "------", "Regards,", "View in dashboard", "Date: 2026-12-01 03:00"]),
        max_size=4,
    ),
    detail=st.text(st.characters(codec="ascii", categories=["L", "N", "Zs"]), max_size=400),
)
def test_state_host_and_problem_that_fit_always_make_one_part(
    host: str, problem: str, state: str, noise: list[str], detail: str
) -> None:
    """An alert no tool claims: `Host:` / `State:` / `Service:` fields and a long message. When
    state, host and problem fit one part, the SMS is one part and keeps all three."""
    body = "\r\n".join([*noise[:1], f"Host: {host}", f"State: {state}", f"Service: {problem}",
                        f"Message: {detail}", *noise[1:]])  # fmt: skip
    raw = f"Subject: {problem} is {state}\r\nFrom: monitor@example.com\r\n\r\n{body}\r\n".encode()
    from tests.alert_corpus import sms_text

    text = sms_text(raw, CONFIG)
    low = text.lower()
    assert host in low and problem.lower() in low and state.lower() in low, text
    assert re.search(r"\bRegards\b|^Hi,|View in dashboard|------", text) is None, text
    from relay.formatters import segments

    assert segments.count(text).parts == 1, text
