"""Alert summaries: each monitoring sender's mail becomes the text an on-call engineer needs."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay import summaries
from relay.config.schema import ParsingConfig, StormSettings
from relay.model import AlertSummary, BodySource, InboundMail
from relay.parsers import inbound
from relay.storm import plan as storm
from tests.helpers import BASE_CONFIG, CORPUS, make_config, render, variant_of


def parse(name: str) -> InboundMail:
    raw = (CORPUS / f"{name}.eml").read_bytes()
    return inbound.parse(
        raw, mail_from="mon@example.com", rcpt_tos=["x@sms.example.com"], settings=ParsingConfig()
    )


def mail(subject: str, text: str, header_from: str = "") -> InboundMail:
    return InboundMail("mon@example.com", ("x@sms.example.com",), subject, text, BodySource.PLAIN, text,
                       header_from=header_from)  # fmt: skip


@pytest.mark.parametrize(
    ("name", "recogniser", "text", "recovery"),
    [
        ("nagios_host_problem", "nagios", "PROBLEM web01 DOWN: CRITICAL - Host Unreachable (10.0.0.5)", False),
        ("nagios_service_recovery", "nagios",
         "RECOVERY web01/HTTP OK: HTTP/1.1 200 OK - 5120 bytes in 0.012 second response time", True),
        ("icinga2_service", "icinga2",
         "PROBLEM db1/disk /var CRITICAL: free space: /var 812 MB (2% inode=91%)", False),
        ("zabbix_problem", "zabbix",
         "PROBLEM app-03: High CPU utilization (over 90% for 5m): Current utilization: 97.2 %, Warning", False),
        ("zabbix_recovery", "zabbix", "RESOLVED app-03: High CPU utilization (over 90% for 5m): after 5m 0s", True),
        ("zabbix_koi8r", "zabbix", "PROBLEM Маршрутизатор-филиал-7: Недоступен по ICMP ping: Высокая", False),
        ("alertmanager_default_html", "alertmanager", "FIRING InstanceDown: Instance db1:9100 down", False),
        ("alertmanager_text_and_html", "alertmanager", "RESOLVED InstanceDown: Instance db1:9100 down",
         True),
        ("grafana_alert", "grafana", "FIRING HighLatency api prod: B=2.3: p99 latency above 2s for 10 minutes",
         False),
        ("cron_backup", "cron", "CRON db1: backup.sh: pg_dump: error: could not write to output "
         "file: No space left on device / backup.sh: FAILED after 00:12:31", False),
        ("smartd", "smartd",
         "SMART nas01: CurrentPendingSector: /dev/sdb [SAT], 8 Currently unreadable (pending) sectors", False),
        ("ups_apcupsd", "apcupsd", "UPS ups1 on nas: Power Failure: STATUS ONBATT, BCHARGE 100.0 Percent, "
         "TIMELEFT 41.0 Minutes; Power failure on UPS ups1. Running on batteries.", False),
        ("nas_synology_html", "synology", "NAS: Volume 1 (SHR, "
         "Btrfs) on DiskStation has entered degraded mode [1/2]. Please repair it as soon as possible.", False),
    ],
)  # fmt: skip
def test_corpus_senders_are_summarised(name: str, recogniser: str, text: str, recovery: bool) -> None:
    summary = summaries.summarise(parse(name))
    assert summary is not None
    assert (summary.recogniser, summary.text, summary.recovery) == (recogniser, text, recovery)


@pytest.mark.parametrize(
    "name",
    ["printer_toner_with_pdf", "scan_subject_only", "legacy_cp1251_qp", "reply_with_quote", "long_text"],
)
def test_other_mail_keeps_the_plain_path(name: str) -> None:
    assert summaries.summarise(parse(name)) is None


def test_nut_and_grouped_alertmanager() -> None:
    nut = summaries.summarise(mail("upsmon: ups on battery", "UPS myups@nas on battery"))
    assert nut is not None and nut.text == "UPS myups@nas: on battery" and not nut.recovery
    back = summaries.summarise(mail("upsmon", "UPS myups@nas on line power"))
    assert back is not None and back.recovery and back.identity == nut.identity
    text = "\n".join(
        f"alertname = DiskFull\ninstance = node{i}:9100\nsummary = disk full on node{i}" for i in range(3)
    )
    grouped = summaries.summarise(mail("[FIRING:3] DiskFull (critical)", "[3] Firing\nLabels\n" + text))
    assert grouped is not None
    assert grouped.text == "FIRING:3 DiskFull node0:9100, node1:9100, node2:9100: disk full on node0"


def variants(name: str, n: int) -> InboundMail:
    """A corpus mail as its n-th repeat would come: a new time, value and event id."""
    m = parse(name)
    text = re.sub(r"\d\d:\d\d:\d\d", f"03:{n % 60:02}:{n % 60:02}", m.text)
    text = re.sub(r"97\.2", f"{90 + n % 10}.{n % 7}", text).replace("481516", str(481516 + n))
    return InboundMail(m.mail_from, m.rcpt_tos, m.subject, text, m.body_source, text, m.header_from)


@pytest.mark.parametrize("name", ["zabbix_problem", "nagios_host_problem", "icinga2_service", "smartd"])
def test_identity_survives_volatile_fields(name: str) -> None:
    identities = {s.identity for n in range(10) if (s := summaries.summarise(variants(name, n)))}
    assert len(identities) == 1


def test_different_hosts_with_the_same_trigger_are_different_alerts() -> None:
    a = summaries.summarise(parse("zabbix_problem"))
    other = parse("zabbix_problem")
    b = summaries.summarise(
        InboundMail(
            other.mail_from,
            other.rcpt_tos,
            other.subject,
            other.text.replace("app-03", "app-04"),
            other.body_source,
            other.body,
        )
    )
    assert a is not None and b is not None and a.identity != b.identity


def test_fingerprint_masks_values_not_host_names() -> None:
    assert summaries.fingerprint("load 5.2 on web01 at 03:00:01") == summaries.fingerprint(
        "load 7.93 on web01 at 03:05:17"
    )
    assert summaries.fingerprint("load 5.2 on web01") != summaries.fingerprint("load 5.2 on web02")
    assert summaries.fingerprint("event 3f2a9c1b77 failed") == summaries.fingerprint(
        "event 88aa00ff11 failed"
    )


def test_recovery_and_problem_share_the_key_that_cancels_a_flap() -> None:
    s = make_config().routes[0].storm or StormSettings()
    problem, recovery = (
        summaries.summarise(parse("zabbix_problem")),
        summaries.summarise(parse("zabbix_recovery")),
    )
    assert problem is not None and recovery is not None
    a = storm.new_alert("p", "r", ("+7999",), problem.text, s, 0, summary=problem)
    b = storm.new_alert("q", "r", ("+7999",), recovery.text, s, 0, summary=recovery)
    assert (a.kind.value, b.kind.value) == ("problem", "recovery") and a.key == b.key and a.dedup != b.dedup


def test_render_says_which_recogniser_took_the_mail_and_when_it_cut() -> None:
    cfg = make_config()
    rendered = render((CORPUS / "nagios_host_problem.eml").read_bytes(), ["oncall@sms.example.com"], cfg)
    assert rendered.provider_mails[0].texts == ("PROBLEM web01 DOWN: CRITICAL - Host Unreachable (10.0.0.5)",)
    assert any("nagios summary (built-in): state='PROBLEM' kept" in n and "left out of the mail: banner" in n
               for n in rendered.notes)  # fmt: skip
    long = (
        (CORPUS / "nagios_host_problem.eml")
        .read_bytes()
        .replace(
            b"Info: CRITICAL - Host Unreachable (10.0.0.5)", b"Info: CRITICAL - " + b"very long output " * 80
        )
    )
    cut = render(long, ["oncall@sms.example.com"], cfg)
    (text,) = cut.provider_mails[0].texts
    assert text.startswith("PROBLEM web01 DOWN: CRITICAL - very long") and text.endswith("...")
    assert any("text cut" in n for n in cut.notes)


def test_summary_off_keeps_the_whole_text() -> None:
    cfg = make_config(BASE_CONFIG.replace("    sender: ALERTS\n", "    sender: ALERTS\n    summary: off\n"))
    rendered = render((CORPUS / "nagios_host_problem.eml").read_bytes(), ["oncall@sms.example.com"], cfg)
    assert "***** Nagios *****" in rendered.provider_mails[0].texts[0] and rendered.notes == ()


def test_cutting_keeps_the_head_whatever_its_alphabet() -> None:
    cfg = make_config()
    raw = (CORPUS / "zabbix_koi8r.eml").read_bytes()
    rendered = render(raw, ["oncall@sms.example.com"], cfg)
    assert "Маршрутизатор-филиал-7" in rendered.provider_mails[0].texts[0]


LINE = st.text(st.characters(exclude_categories=["Cs", "Cc"]), max_size=60)


@settings(max_examples=300, deadline=None)
@given(host=st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True), service=LINE, state=LINE, info=LINE,
       extra=st.lists(LINE, max_size=5), kind=st.sampled_from(["PROBLEM", "RECOVERY", "ACKNOWLEDGEMENT"]))  # fmt: skip
def test_a_summary_is_never_longer_than_its_mail_and_keeps_the_host(
    host: str, service: str, state: str, info: str, extra: list[str], kind: str
) -> None:
    text = "\n".join(["***** Nagios *****", f"Notification Type: {kind}", f"Service: {service}", f"Host: {host}",
                      f"State: {state}", f"Info: {info}", *extra])  # fmt: skip
    m = mail(f"** {kind} Service Alert: {host}/{service} is {state} **", text)
    summary = summaries.summarise(m)
    if summary is None:
        return
    assert isinstance(summary, AlertSummary)
    assert len(summary.text) <= len(f"{m.subject}\n{m.text}")
    assert host in summary.text


SENDERS = ["nagios_host_problem", "nagios_service_recovery", "icinga2_service", "zabbix_problem", "zabbix_koi8r",
           "alertmanager_default_html", "grafana_alert", "cron_backup", "smartd", "ups_apcupsd", "nas_synology_html"]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(SENDERS), lines=st.lists(LINE, max_size=6), cut=st.integers(0, 400))
def test_no_variant_of_a_senders_mail_gets_a_longer_summary_or_loses_its_host(
    name: str, lines: list[str], cut: int
) -> None:
    """Each sender's real mail, with arbitrary lines added and its text cut anywhere."""
    variant = variant_of(parse(name), cut, lines)
    summary = summaries.summarise(variant)
    if summary is None:
        return
    assert len(summary.text) <= len(f"{variant.subject}\n{variant.text}")
    assert summary.host in summary.text


def test_zabbix_update_template() -> None:
    text = ("Admin (Zabbix Administrator) acknowledged problem at 2026.11.22 03:10:00.\nlooking into it\n\n"
            "Current problem status is PROBLEM, age is 10m, acknowledged: Yes.")  # fmt: skip
    summary = summaries.summarise(mail("Updated problem in 10m: High CPU utilization", text))
    assert summary is not None and summary.recogniser == "zabbix" and not summary.recovery
    assert summary.text == (
        "UPDATE High CPU utilization: Admin (Zabbix Administrator) acknowledged problem at 2026.11.22 03:10:00."
    )
