"""Fitting a summary to one part by priority (relay/summaries/fit.py): what goes before the
state, the host and the key value."""

from __future__ import annotations

from relay.model import Piece, Role
from relay.summaries.fit import Fits, fit


def _within(n: int) -> Fits:
    return lambda text: len(text) <= n


def test_a_second_problem_piece_the_subject_says_goes_before_the_value() -> None:
    pieces = [
        Piece(Role.HOST, "srv-07", " "),
        Piece(Role.PROBLEM, "RECOVERED for CRITICAL srv-07 / Disk Queue", " "),
        Piece(Role.PROBLEM, "Disk Queue Length (avg over 5 min)", " "),
        Piece(Role.VALUE, "4.2 (Normal)", ": "),
    ]
    text, shortened = fit(pieces, _within(60))
    assert text == "RECOVERED for CRITICAL srv-07 / Disk Queue: 4.2 (Normal)", text
    assert "problem name" in shortened


def test_a_second_problem_piece_the_subject_does_not_say_is_cut_not_dropped() -> None:
    pieces = [
        Piece(Role.PROBLEM, "Alert on mon01", " "),
        Piece(Role.PROBLEM, "Replication lag of the orders database", " "),
        Piece(Role.VALUE, "482s", ": "),
    ]
    text, _ = fit(pieces, _within(48))
    assert "mon01 Replication lag" in text and text.endswith("...: 482s"), text


def test_filler_words_go_before_the_problem_names_tail() -> None:
    pieces = [
        Piece(Role.PROBLEM, "Alert for the status of Backup Job nightly-db on nas02", " "),
        Piece(Role.VALUE, "exit 2", ": "),
    ]
    text, shortened = fit(pieces, _within(48))
    assert text == "for Backup Job nightly-db nas02: exit 2", text
    assert shortened == ("filler words",)


def test_a_short_automatic_note_does_not_take_the_fields_below_it() -> None:
    from relay.summaries.reading import read

    r = read(
        "Automatic alert system\nGo to the console\nData: 23 (Normal)\nAgent: mon-07\n", "Alert on mon-07"
    )
    assert [f.key for f in r.fields] == ["data", "agent"], r


def test_a_wrapped_automatic_note_takes_its_lines_to_the_full_stop() -> None:
    from relay.summaries.reading import read

    text = (
        "This message was generated automatically by the backup scheduler, and\n"
        "replies to it are not read by anyone.\n"
        "Job: nightly-db\nResult: failed\n"
    )
    r = read(text, "Backup failed")
    assert r.kept == ("Job: nightly-db", "Result: failed"), r


def test_a_passing_check_is_no_news() -> None:
    from relay.summaries.vocabulary import boilerplate

    assert boilerplate("✅ [RESPONSE_TIME] < 300") == "passing check"
    assert boilerplate("[OK] sshd is running") == "passing check"
    assert boilerplate("❌ [STATUS] (503) == 200") == ""
