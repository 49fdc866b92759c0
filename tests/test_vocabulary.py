"""The boilerplate the general summariser drops, line by line (relay/summaries/vocabulary.py):
greetings and sign-offs in the languages alert mail comes in, never a line that says something."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.summaries.vocabulary import boilerplate

GREETINGS = [
    "Hello,", "Dear Sir or Madam,", "Здравствуйте!", "Sehr geehrte Damen und Herren,", "Lieber Herr Meier,",
    "Guten Tag,", "Bonjour,", "Chère Madame,", "Estimado María,", "Hola,", "Gentile cliente,", "Buongiorno,",
    "Prezado cliente,", "Olá,", "Drogi Adam,", "Szanowni Państwo,", "Dzień dobry,", "Geachte heer,",
    "Beste Jan,", "Vážený zákazníku,", "Dobrý den,",
]  # fmt: skip
SIGNOFFS = [
    "Best regards,", "С уважением,", "Mit freundlichen Grüßen", "Viele Grüße", "Cordialement,", "Saludos cordiales,",
    "Atentamente,", "Cordiali saluti", "Atenciosamente,", "Pozdrawiam", "Z poważaniem,", "Met vriendelijke groet,",
    "S pozdravem",
]  # fmt: skip
CONTENT = [
    "Host db01 is DOWN", "Liebe Grüße aus dem Rechenzentrum: RAID degraded on nas01 since 03:00, disk 3 failed",
    "Disk /var on db01 is 95% full", "Estimado tiempo restante de la batería: 4 minutos en ups-01 (EN BATERÍA)",
    "CRITICAL - load average 12.3 on web-02", "Backup job pgdump failed with status 2",
]  # fmt: skip


@pytest.mark.parametrize("line", GREETINGS)
def test_greetings_are_boilerplate(line: str) -> None:
    assert boilerplate(line) == "greeting"


@pytest.mark.parametrize("line", SIGNOFFS)
def test_signoffs_are_boilerplate(line: str) -> None:
    assert boilerplate(line) == "sign-off"


@pytest.mark.parametrize("line", CONTENT)
def test_a_line_that_says_something_is_kept(line: str) -> None:
    assert boilerplate(line) == ""


def reading_words() -> tuple[str, ...]:
    from relay.summaries import reading

    return reading._WORDS


SELF_NOTES = [
    "A new system event occurred on your nas01 on 03-12-2026 at 13:09.", "Please inspect this machine, because it may be infected.",
    "PING 10.0.3.15 (10.0.3.15) 56(84) bytes of data.", "See the dashboard for more details",
]  # fmt: skip
STACK = [
    "Traceback (most recent call last):", 'File "/usr/lib/python3/dist-packages/urllib3/connection.py", line 174, in _new_conn',
    "at org.example.Billing.charge(Billing.java:42)", "During handling of the above exception (x), another exception occurred:",
    "^^^^^^^^^^^^^^^",
]  # fmt: skip
KEPT_TOO = [
    "ConnectionError: HTTPSConnectionPool(host='payments.example.com', port=443): Max retries exceeded",
    "Please fix the RAID on db01 today", "PING CRITICAL - Packet loss = 100%",
    "A new disk was added to pool tank on nas01",
]  # fmt: skip


@pytest.mark.parametrize("line", SELF_NOTES)
def test_a_tools_notes_on_itself_are_boilerplate(line: str) -> None:
    assert boilerplate(line) == "tool's own note"


@pytest.mark.parametrize("line", STACK)
def test_stack_frames_are_boilerplate(line: str) -> None:
    assert boilerplate(line) == "stack trace"


@pytest.mark.parametrize("line", KEPT_TOO)
def test_the_exception_advice_and_news_are_kept(line: str) -> None:
    assert boilerplate(line) == ""


def test_a_stack_frames_code_line_goes_with_it_and_the_exception_stays() -> None:
    from relay.summaries.reading import read

    text = (
        "Traceback (most recent call last):\n"
        '  File "/srv/app/pay.py", line 12, in charge\n'
        "    raise err\n"
        "ConnectionError: payments.example.com refused\n"
    )
    r = read(text, "Internal Server Error")
    assert r.kept == ("ConnectionError: payments.example.com refused",) and "stack trace" in r.dropped


def test_a_wrapped_automatic_note_goes_to_its_full_stop_and_a_heading_over_a_rule_goes() -> None:
    from relay.summaries.reading import read

    text = (
        "This email is sent by logcheck. If you no longer wish to receive\n"
        "such mail, you can either uninstall the logcheck package or modify\n"
        "its configuration file (/etc/logcheck/logcheck.conf).\n\n"
        "Security Events for kernel\n=-=-=-=-=-=-=-=-=-=-=-=-=-\n"
        "Dec  3 14:02:11 db01 kernel: end_request: I/O error, dev sdb\n"
    )
    r = read(text, "db01 Security Events")
    assert r.free == ("Dec 3 14:02:11 db01 kernel: end_request: I/O error, dev sdb",)
    assert {"automatic-mail note", "section heading"} <= set(r.dropped)


@settings(max_examples=300)
@given(
    before=st.text(max_size=40),
    word=st.sampled_from([*reading_words(), "", "sent b", "notificatio", "please", "for furthe"]),
    after=st.text(max_size=40),
)
def test_the_shared_pattern_of_words_finds_what_the_flat_list_finds(
    before: str, word: str, after: str
) -> None:
    import re

    from relay.summaries import reading

    text = (before + word + after).lower()
    flat = re.compile("|".join(map(re.escape, reading._WORDS)))
    assert bool(reading._ANY_WORD.search(text)) == bool(flat.search(text))


def test_an_exception_line_is_free_text_not_a_field() -> None:
    from relay.summaries.reading import read

    r = read("ConnectionError: Error 111 connecting to cache01.example.com:6379.\nHost: db01\n", "3 errors")
    assert r.free == ("ConnectionError: Error 111 connecting to cache01.example.com:6379.",)
    assert [f.key for f in r.fields] == ["host"]


def _summary_text(subject: str, text: str, sender: str = "") -> str:
    from relay.summaries import general

    found = general.summarise(subject, text, sender)
    assert found is not None and found.alert, (subject, text)
    return found.text


def test_a_pointer_or_link_inside_a_line_is_dropped_and_counted() -> None:
    from relay.summaries.reading import read

    r = read(
        "Fan 2 failed on SRV07. See the console for further details - https://srv07:1311.\n", "Fan alert"
    )
    assert r.free == ("Fan 2 failed on SRV07.",) and "link" in r.dropped


def test_instance_names_a_host_only_after_a_word_that_makes_it_one() -> None:
    from relay.model import Role
    from relay.summaries.vocabulary import role_of

    assert role_of("instance") is Role.HOST and role_of("EC2 instance") is Role.HOST
    assert role_of("Plugin instance") is None and role_of("Type instance") is None
    assert role_of("database instance") is None


@pytest.mark.parametrize(
    ("message", "value"),
    [
        ('Data source "temp" is currently 71.5. That is above the threshold of 70.', "71.5"),
        ("Usage of /srv is now at 97% and rising", "97%"),
        ("The queue has reached 1200 messages", "1200"),
        ("current value: 12 GB left", "12 GB"),
        ("More than 4000 requests failed in the last 5m", "4000"),
        ("Space usage for volume 'data' is 91%.", "91%"),
    ],
)
def test_a_value_said_in_prose_is_the_key_value(message: str, value: str) -> None:
    text = _summary_text("WARNING@mon01", f"Host: mon01\nMessage: {message}\n")
    assert text.startswith("WARNING mon01") and value in text, text


def test_a_log_of_levels_is_read_as_lines_and_the_worst_comes_first() -> None:
    text = _summary_text(
        "nightly-job: app01 FAILED",
        "Info: rotating old archives\nWarning: /srv/tmp is 80% full\nFatal: upload to store02 failed\n",
    )
    assert text.index("store02") < text.index("80%"), text
    assert "rotating" not in text.split("store02")[0], text


def test_an_info_field_without_a_log_around_it_stays_a_field() -> None:
    from relay.summaries.reading import read

    r = read("Host: db01\nState: DOWN\nInfo: PING CRITICAL - Packet loss = 100%\n", "Host DOWN")
    assert [f.key for f in r.fields] == ["host", "state", "info"]


def test_a_diff_of_a_file_listing_says_the_paths_that_changed() -> None:
    text = _summary_text(
        "Watched files changed on gw01.example.com on 03/12/26 10:00:01",
        "--- files.today 2026-12-03 10:00:00.1 +0000\n+++ /var/lib/w/files.new 2026-12-03 10:00:01.2 +0000\n"
        "@@ -3,0 +4 @@\n+ 1234 4755 1 root root 12345 Thu Dec 3 09:59:00 2026 /tmp/.x\n",
    )
    assert text == "Watched files changed on gw01.example.com: +/tmp/.x", text


def test_a_report_that_says_trouble_first_is_an_alert_and_a_reply_is_not() -> None:
    from relay.summaries import general

    lines = "".join(f"- job{n} (images:{n}): Fresh\n" for n in range(30))
    text = _summary_text(
        "Nightly pulls on dock01", f"2 Pulled, 1 Failed\n{lines}- /proxy: Failed: bind: port in use\n"
    )
    assert "port in use" in text and len(text) <= 160, text
    assert general.summarise("Re: nightly pulls on dock01", f"It failed again, see below\n{lines}") is None


def test_a_threshold_is_the_value_when_the_mail_has_no_measurement() -> None:
    text = _summary_text(
        "[Critical] queue latency above 5s - billing", "Status: Critical\nThreshold: > 5000.0\n"
    )
    assert "> 5000.0" in text, text


def test_a_report_laid_out_by_a_machine_fits_one_part_and_a_letter_does_not() -> None:
    from relay.summaries import general

    rows = "".join(f"pkg{n} 1.{n}-1\n" for n in range(40))
    report = general.summarise("12 package updates for app01", f"Report\n{'=' * 60}\n{rows}{'=' * 60}\n")
    assert report is not None and report.alert
    letter = general.summarise("12 package updates", f"Hello Anna,\n{'=' * 60}\n{rows}Best regards,\nBob\n")
    assert letter is None or not letter.alert


def test_a_heading_over_fields_heads_a_section_and_a_heading_over_a_line_names_it() -> None:
    from relay.summaries.reading import read

    r = read("Summary:\nTotal entries: 4798\nAdded entries: 1\n", "Daily report")
    assert [f.key for f in r.fields if f.role] == [] and len(r.others) == 2, r
    r = read("Check Output:\nDISK OK - free space: /var 20312 MiB\nHost: db01\n", "disk")
    assert [(f.key, f.value) for f in r.fields][:1] == [
        ("check output", "DISK OK - free space: /var 20312 MiB")
    ]


def test_trouble_denied_is_no_trouble_and_no_news() -> None:
    from relay.summaries.vocabulary import troubled

    assert not troubled("Backup produced no errors.") and not troubled("0 failures, 12 passed")
    assert not troubled("Sicherung ohne Fehler beendet") and not troubled("Завершено без ошибок")
    assert troubled("no errors in 3 runs, then 2 failed") and troubled("No such file or directory")
    text = _summary_text(
        "Integrity check on fs01: FAILED",
        "Scan produced no errors.\nVerification: 3 files changed since the last run\n" + "x\n" * 40,
    )
    assert "no errors" not in text and "3 files changed" in text, text


def test_a_line_that_says_trouble_goes_before_a_message_field_that_does_not() -> None:
    text = _summary_text(
        "Nightly FAIL: TAPE REPORT FOR December 3, 2026",
        "Hostname: bk01\nFAILURES:\nbk01 /srv/db lev 0 FAILED [dump exited with status 2]\nSUMMARY:\n"
        "DUMPER STATS TAPER STATS\n" + "".join(f"row {n} {n}.0 {n}.1\n" for n in range(30)),
    )
    assert "status 2" in text and "DUMPER" not in text and "December" not in text, text


def test_a_problem_field_that_is_a_sentence_is_detail_and_a_later_lines_timing_is_no_value() -> None:
    from relay.model import Role
    from relay.summaries import general

    found = general.summarise(
        "Backup check: PROBLEM",
        "Server check took 0.283 seconds\nHOST bk01 ERROR: cannot open /srv/db\n"
        "Client check: 1 host checked in 2.2 seconds. 1 problem found.\n",
    )
    assert found is not None
    assert [p.text for p in found.pieces if p.role is Role.PROBLEM] == ["Backup check: PROBLEM"], found.pieces
    from relay.summaries.fit import key_value

    assert key_value(found.pieces) == "", found.pieces


def test_progress_lines_go_and_a_tally_comes_first() -> None:
    from relay.summaries.vocabulary import boilerplate

    assert boilerplate("Reading package lists...") == "progress"
    assert boilerplate("Building dependency tree... Done") == "progress"
    assert boilerplate("Rotating last weeks Backup...") == "progress"
    assert boilerplate("Waiting for the disk to fail: 3 bad sectors...") == ""
    text = _summary_text(
        "Nightly apt run on app07",
        "Reading package lists...\nThe following packages will be upgraded:\nlibfoo libbar\n"
        "2 upgraded, 0 newly installed, 0 to remove and 1 not upgraded.\n" + "Get: a package\n" * 30,
    )
    assert text.startswith("Nightly apt run on app07: 2 upgraded, 0 newly installed"), text


def test_a_warning_in_any_language_names_its_file_and_request_metadata_goes() -> None:
    from relay.summaries.reading import read

    r = read(
        "Warnung: Dateieigenschaften haben sich geändert:\nDatei: /usr/sbin/sshd\n", "[scan] fs01 - report"
    )
    assert r.free == ("Warnung: Dateieigenschaften haben sich geändert:",)
    assert [(f.role.value if f.role else None, f.value) for f in r.fields] == [("value", "/usr/sbin/sshd")]
    text = _summary_text(
        "Broken link on shop.example.com",
        "Referrer: https://shop.example.com/a\nRequested URL: /b/\nUser agent: Mozilla/5.0 (X11)\nIP address: 10.0.0.9\n",
    )
    assert "Mozilla" not in text and "10.0.0.9" not in text and "/b/" in text, text


def test_a_json_dump_is_read_as_fields_without_the_tools_own_info() -> None:
    import json

    payload = {
        "Name": "mem", "Tags": {"host": "app09", "region": "eu"}, "ServerInfo": {"Hostname": "monitor01"},
        "Fields": {"used_percent": 91.27364512983746}, "Level": "WARNING", "Message": "mem on app09 is WARNING",
    }  # fmt: skip
    text = _summary_text("mem:host=app09 is WARNING", json.dumps(payload, separators=(",", ":")) + "\n")
    assert text.startswith("mem:host=app09 is WARNING: 91.27") and "monitor01" not in text, text
    from relay.summaries.reading import read

    assert read("{not json}\n", "x").free == ("{not json}",)


def test_an_echoed_command_line_is_no_news_and_a_jobs_log_stamp_goes() -> None:
    from relay.summaries.vocabulary import boilerplate

    assert (
        boilerplate("vzdump 101 --storage nfs --mailnotification failure --mode snapshot") == "command line"
    )
    assert boilerplate("rsync --archive failed: disk full") == ""
    text = _summary_text(
        "backup status (hv01.example.com): backup failed",
        "rsync -a --delete --numeric-ids --one-file-system /srv /mnt/b\n"
        "7: 2026-12-03 01:04:12 INFO: starting\n7: 2026-12-03 01:04:13 ERROR: write failed - disk full\n"
        + "7: 2026-12-03 01:04:14 INFO: step\n"
        * 20,
    )
    assert "backup failed: ERROR: write failed - disk full" in text, text
    assert "--delete" not in text and "2026-12-03" not in text, text


def test_a_host_named_in_prose_is_the_host_when_no_field_names_one() -> None:
    from relay.model import Role
    from relay.summaries import general

    def host(subject: str, text: str) -> list[str]:
        found = general.summarise(subject, text)
        assert found is not None
        return [p.text for p in found.pieces if p.role is Role.HOST]

    assert host("Backup FAILED", "The nightly job on nas-02 failed: disk full\n" + "x y z\n" * 30) == [
        "nas-02"
    ]
    assert host("Резервное копирование: ОШИБКА", "Ошибка на сервере srv-db03\n") == ["srv-db03"]
    # an address it came from is not the host; a version is no name; a field wins
    assert host("Login FAILED", "Failed login from 203.0.113.9 on version 2.1\n" + "x y z\n" * 30) == []
    assert host("Disk FAILED on web-01", "Host: db07\nDisk /var failed\n") == ["db07"]


def test_a_true_alert_flag_is_the_state_and_an_aggregates_result_the_value() -> None:
    from relay.model import Role
    from relay.summaries import general

    found = general.summarise(
        "Event notification: Slow queries per node",
        "Title: Slow queries per node\nDescription: More than 30 slow queries in 5 minutes\n"
        "Message: Slow queries per node: pg-03 - count()=44.0\nAlert: true\n",
    )
    assert found is not None
    pieces = {p.role: p.text for p in found.pieces}
    assert pieces[Role.STATE] == "Alert" and pieces[Role.VALUE] == "44.0", found.pieces
    assert "true" not in found.text, found.text


def test_a_stand_alone_link_that_says_where_to_click_is_dropped_and_an_alert_title_is_not() -> None:
    from relay.summaries.reading import read

    text = "db01 is DOWN\nweb-02\nThreat Intel\nPing lost on db01\n"
    r = read(text, "Alert", links=("db01 is DOWN", "web-02", "Threat Intel"))
    assert r.free == ("db01 is DOWN", "web-02", "Ping lost on db01") and "link" in r.dropped
