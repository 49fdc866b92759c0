"""Alert-storm control: the pure planner (relay/storm.py) and its state in a real SQLite spool
(relay/stormstore.py), driven in simulated time."""

from __future__ import annotations

import dataclasses
import email
import functools
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.config.schema import Config, StormSettings
from relay.errors import ConfigError
from relay.formatters import segments
from relay.parsers import command as command_parser
from relay.pipeline import storm_outgoing
from relay.spool import alerts as stormstore
from relay.spool import schema as spool_schema
from relay.spool.sqlite import connect
from relay.storm import pacing
from relay.storm import plan as storm
from relay.storm.pacing import Send
from relay.storm.plan import Alert
from tests import spooldb
from tests.fakes import ProviderLimits
from tests.helpers import PASSWORD, counter, make_config

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC).timestamp()
S = StormSettings()
STORM_ROUTES = f"""
provider:
  login: mylogin
  password: "{PASSWORD}"
  reply_address: replies@relay.example.com
routes:
  - name: oncall
    match: {{recipient: '^oncall@sms\\.example\\.com$'}}
    phones: ["+79990000001", "+79990000002"]
    sender: ALERTS
    storm:
      recovery: '^(Resolved|OK)\\b'
      alert_key: 'alert (?P<key>\\w+)'
  - name: db
    match: {{recipient: '^db@sms\\.example\\.com$'}}
    phones: ["+79990000002", "+79990000003"]
    storm: true
  - name: urgent
    match: {{recipient: '^urgent@sms\\.example\\.com$'}}
    phones: ["+79990000001"]
    storm: {{urgent: true}}
  - name: number
    match: {{recipient: '^(?P<phones>\\+?[0-9]{{10,15}})@sms\\.example\\.com$'}}
    storm: {{hold: 10}}
"""


# ---- the pure core ---------------------------------------------------------------------------
def alert(text: str, at: float = T0, phones: tuple[str, ...] = ("+79990000001",), **kw: Any) -> Alert:
    a = storm.new_alert(kw.pop("id", f"a{at}"), kw.pop("route", "r"), phones, text, kw.pop("s", S), at)
    return dataclasses.replace(a, **kw) if kw else a


def test_a_repeat_within_the_window_is_counted_not_held() -> None:
    first = storm.admit(alert("disk full"), None, [], S, T0)
    assert first.state.value == "held" and first.window is not None
    assert first.window.closes == T0 + 300
    again = storm.admit(alert("disk  full\n", T0 + 10), first.window, [], S, T0 + 10)
    assert again.state.value == "repeat" and again.window is not None and again.window.repeats == 1
    later = storm.admit(alert("disk full", T0 + 301), again.window, [], S, T0 + 301)
    assert later.state.value == "held"  # the window is over: a new one opens


def test_the_dedup_window_never_shorter_than_the_providers_minute() -> None:
    text = STORM_ROUTES.replace("storm: true", "storm: {dedup_window: 30}")
    with pytest.raises(ConfigError, match=r"routes\[1\]\.storm\.dedup_window.*out of range 60"):
        make_config(text)


def test_a_closed_window_with_repeats_gives_one_followup() -> None:
    w = storm.Window("k", "r", ("+79990000001",), "disk full", T0, T0 + 300, repeats=14, source="a1")
    plan = storm.plan(T0 + 300, [], [w], {}, lambda _: S, counter("f"))
    assert plan.closed == ("k",)
    (d,) = plan.digests
    assert d.text == "Repeated 14 more times in 5 min: disk full"
    quiet = storm.Window("q", "r", ("+79990000001",), "x", T0, T0 + 300, repeats=0)
    assert storm.plan(T0 + 300, [], [quiet], {}, lambda _: S, counter()).digests == ()


def test_an_idle_phone_gets_the_first_alert_at_once_the_rest_merge_oldest_first() -> None:
    held = [alert(f"alert {n} on host{n}", T0 + n, id=f"a{n}") for n in range(3)]
    # The leading edge: the phone got nothing for min_gap + hold, so only first_hold applies.
    early = storm.plan(T0 + 2, held, [], {}, lambda _: S, counter())
    assert early.digests == () and early.next_wake == T0 + S.first_hold
    (d,) = storm.plan(T0 + 3, held, [], {}, lambda _: S, counter()).digests
    assert d.text == "3 alerts:\nalert 0 on host0\nalert 1 on host1\nalert 2 on host2"
    assert d.alerts == ("a0", "a1", "a2") and d.left == 0


def test_a_phone_in_the_middle_of_a_storm_waits_for_the_hold_and_min_gap() -> None:
    busy = {"+79990000001": [Send(T0 - 10, "earlier")]}
    held = [alert(f"alert {n} on host{n}", T0 + n, id=f"a{n}") for n in range(3)]
    early = storm.plan(T0 + 3, held, [], busy, lambda _: S, counter())
    assert early.digests == () and early.next_wake == T0 + S.hold  # the oldest's hold ends
    (d,) = storm.plan(T0 + S.hold, held, [], busy, lambda _: S, counter()).digests
    assert d.alerts == ("a0", "a1", "a2")


def test_a_lone_alert_keeps_its_lines_a_digest_has_one_line_per_alert() -> None:
    one = alert("Problem: disk full\nHost: db1", id="a1")
    assert storm.build_digest("r", ("+7999",), [one], S).text == "Problem: disk full\nHost: db1"
    two = alert("Problem: load\nHost: db2", T0 + 1, id="a2")
    text = storm.build_digest("r", ("+7999",), [one, two], S).text
    assert text == "2 alerts:\nProblem: disk full Host: db1\nProblem: load Host: db2"


def test_a_digest_keeps_to_max_parts_and_counts_the_rest() -> None:
    held = [alert(f"alert {n}: " + "x" * 60, T0 + n, id=f"a{n:02}") for n in range(30)]
    (d,) = storm.plan(T0 + 60, held, [], {}, lambda _: S, counter()).digests
    assert segments.count(d.text).parts <= S.max_parts
    assert d.text.startswith("30 alerts:\nalert 0: ")
    assert d.text.endswith(f"(+{d.left} more)") and d.left == 30 - len(d.alerts)
    single = storm.build_digest("r", ("+7999",), [alert("y" * 2000)], S)
    assert segments.count(single.text).parts <= S.max_parts and single.text.endswith("...")


def test_pacing_keeps_runs_under_the_flood_limit() -> None:
    run = [Send(T0 + 30 * n, str(n)) for n in range(S.burst)]
    assert pacing.next_allowed(run[:5], 30, S.burst) == run[4].at + 30
    assert pacing.next_allowed(run, 30, S.burst) == run[-1].at + pacing.FLOOD_GAP + pacing.SAFETY
    broken = [*run[:10], Send(run[9].at + 200, "x")]  # a 200 s gap ends the run
    assert pacing.next_allowed(broken, 30, S.burst) == broken[-1].at + 30


def test_urgent_has_no_hold_and_no_min_gap_but_keeps_the_flood_rule() -> None:
    s = StormSettings(urgent=True)
    a = alert("core switch down", s=s)
    assert a.due == T0
    history = {"+79990000001": [Send(T0 - 5, "other")]}
    (d,) = storm.plan(T0, [a], [], history, lambda _: s, counter()).digests
    assert d.text == "core switch down"
    flood = {"+79990000001": [Send(T0 - 40 + n, str(n)) for n in range(40)]}
    plan = storm.plan(T0, [a], [], flood, lambda _: s, counter())
    assert plan.digests == () and plan.next_wake == T0 - 1 + pacing.FLOOD_GAP + pacing.SAFETY


def test_the_same_text_never_goes_to_a_phone_twice_within_the_minute() -> None:
    s = StormSettings(hold=0, min_gap=0)
    mark = pacing.text_digest("disk full")
    history = {"+79990000001": [Send(T0 - 10, mark)]}
    plan = storm.plan(T0, [alert("disk full", s=s)], [], history, lambda _: s, counter())
    assert plan.digests == () and plan.next_wake == T0 - 10 + 60 + pacing.SAFETY


def test_recovery_cancels_a_held_problem_with_the_same_key() -> None:
    s = StormSettings(recovery=re.compile(r"^Resolved"), alert_key=re.compile(r"ID: (?P<key>\d+)"))
    problem = alert("Problem: CPU high. ID: 481516", s=s, id="p")
    other = alert("Problem: disk. ID: 99", s=s, id="o")
    recovery = alert("Resolved: CPU high. ID: 481516", T0 + 5, s=s, id="r")
    assert (problem.kind.value, problem.key, recovery.kind.value, recovery.key) == (
        "problem",
        "481516",
        "recovery",
        "481516",
    )
    result = storm.admit(recovery, None, [problem, other], s, T0 + 5)
    assert (
        result.state.value == "cancelled"
        and result.cancels == ("p",)
        and result.drop_window == (problem.dedup,)
    )
    sent_already = storm.admit(recovery, None, [], s, T0 + 5)  # the problem went out: so does this
    assert sent_already.state.value == "held"


@pytest.mark.parametrize(
    ("hour", "quiet", "expect_end_hour"),
    [
        (23, (23, 7), 7),
        (3, (23, 7), 7),
        (7, (23, 7), None),
        (12, (23, 7), None),
        (2, (1, 6), 6),
        (6, (1, 6), None),
    ],
)
def test_quiet_hours(hour: int, quiet: tuple[int, int], expect_end_hour: int | None) -> None:
    s = StormSettings(quiet_hours=quiet, quiet_tz="Europe/Moscow")
    now = datetime(2026, 11, 22, hour, 30, tzinfo=ZoneInfo("Europe/Moscow")).timestamp()
    end = pacing.quiet_until(now, s)
    if expect_end_hour is None:
        assert end is None
    else:
        assert end is not None
        local = datetime.fromtimestamp(end, ZoneInfo("Europe/Moscow"))
        assert (local.hour, local.minute) == (expect_end_hour, 0) and 0 < end - now < 86400


def test_quiet_hours_hold_then_release_but_not_urgent() -> None:
    s = StormSettings(quiet_hours=(0, 23), quiet_tz="UTC", hold=0)  # T0 is 12:00 UTC: quiet
    plan = storm.plan(T0, [alert("nightly report", s=s)], [], {}, lambda _: s, counter())
    assert plan.digests == () and plan.next_wake == datetime(2026, 11, 22, 23, tzinfo=UTC).timestamp()
    urgent = StormSettings(quiet_hours=(0, 23), quiet_tz="UTC", urgent=True)
    assert storm.plan(T0, [alert("fire", s=urgent)], [], {}, lambda _: urgent, counter()).digests


# ---- config ----------------------------------------------------------------------------------
def test_storm_config_and_its_errors() -> None:
    cfg = make_config(STORM_ROUTES)
    oncall, db, urgent, _ = cfg.routes
    assert oncall.storm is not None and oncall.storm.recovery is not None and db.storm == StormSettings()
    assert urgent.storm is not None and urgent.storm.urgent
    bad = STORM_ROUTES.replace(
        "storm: true",
        "storm: {hold: -1, burst: 60, quiet_hours: '25-3', quiet_tz: Mars/Base, recovery: x, hodl: 1}",
    )
    with pytest.raises(ConfigError) as err:
        make_config(bad)
    text = str(err.value)
    for expected in (
        "storm.hold", "out of range 0..3600", "storm.burst", "storm.quiet_hours", "storm.quiet_tz",
        "unknown time zone", "storm.recovery", "needs alert_key", "storm.hodl", "did you mean 'hold'",
    ):  # fmt: skip
        assert expected in text, expected
    with pytest.raises(ConfigError, match="storm control needs mode: command"):
        make_config(
            STORM_ROUTES
            + "  - name: ops\n    match: {recipient: '^ops@'}\n    mode: email2sms\n    storm: true\n"
        )
    with pytest.raises(ConfigError, match="another route is named 'db'"):
        make_config(STORM_ROUTES.replace("name: urgent", "name: db"))


def test_quiet_hours_through_the_providers_time_field() -> None:
    cfg = make_config(STORM_ROUTES.replace("storm: true", "storm: {quiet_hours: '22-8', quiet_by: provider}"))
    db = cfg.routes[1]
    assert db.options.time == "8-22" and db.storm is not None and db.storm.quiet_hours is None
    with pytest.raises(ConfigError, match="must span midnight"):
        make_config(STORM_ROUTES.replace("storm: true", "storm: {quiet_hours: '1-6', quiet_by: provider}"))


# ---- the state in a real spool ---------------------------------------------------------------
class Store:
    """stormstore on a real SQLite file, with the pipeline's alerts, in simulated time."""

    def __init__(self, path: Path, cfg: Config, ids: str = "x") -> None:
        self.conn = connect(path)
        spool_schema.migrate(self.conn)
        self.cfg = cfg
        self.ids = counter(ids)
        self.settings = cfg.storm_settings

    def admit(self, route: str, text: str, now: float, phones: tuple[str, ...] = ()) -> str:
        r = next(r for r in self.cfg.routes if r.name == route)
        assert r.storm is not None
        a = storm.new_alert(self.ids(), route, phones or r.phones, text, r.storm, now)
        with self.conn:
            (result,) = stormstore.admit(
                self.conn, [a], settings=self.settings, now=now, mail_from="m@x", inbound_id="<i>"
            )
        return result.state.value

    def tick(self, now: float) -> stormstore.Tick:
        with self.conn:
            compose = functools.partial(
                storm_outgoing, now=now, config=self.cfg, hostname="relay.test", new_id=self.ids
            )
            return stormstore.tick(self.conn, now=now, compose=compose)

    def states(self) -> dict[str, int]:
        return {state.value: n for state, n in stormstore.counts(self.conn).items()}


def commands(tick: stormstore.Tick) -> list[command_parser.Command]:
    """The provider requests a tick queued, parsed back like the provider would."""
    out = []
    for row in tick.rows:
        msg = email.message_from_bytes(row.message)
        payload = msg.get_payload(decode=True)
        assert isinstance(payload, bytes)
        out.append(command_parser.parse(payload.decode(msg.get_content_charset() or "ascii")))
    return out


def sent_entries(tick: stormstore.Tick) -> list[tuple[tuple[str, ...], str]]:
    return [(e.phones, e.text) for cmd in commands(tick) for e in cmd.entries]


def test_store_holds_merges_and_lists_per_phone_group(tmp_path: Path) -> None:
    store = Store(tmp_path / "spool.db", make_config(STORM_ROUTES))
    assert store.admit("oncall", "alert cpu high on app1", T0) == "held"
    assert store.admit("oncall", "alert cpu high on app1", T0 + 1) == "repeat"
    assert store.admit("db", "replication lag 30 s", T0 + 2) == "held"
    assert store.tick(T0 + 2).rows == []  # first_hold: a flap may still cancel it
    t = store.tick(T0 + 5)  # the leading edge: idle phones get the first alert at once
    # +79990000002 is in both groups: db's digest waits for min_gap after oncall's
    assert sent_entries(t) == [(("+79990000001", "+79990000002"), "alert cpu high on app1")]
    assert t.next_wake == T0 + 35
    t = store.tick(T0 + 35)
    assert sent_entries(t) == [(("+79990000002", "+79990000003"), "replication lag 30 s")]
    assert store.states() == {"sent": 2, "repeat": 1}
    # The window closes at +300 with one repeat: a follow-up, paced and merged like the rest.
    t = store.tick(T0 + 300)
    assert sent_entries(t) == [
        (("+79990000001", "+79990000002"), "Repeated 1 more time in 5 min: alert cpu high on app1")
    ]
    assert store.tick(T0 + 301).rows == []  # nothing left, nothing twice


def test_store_different_texts_for_different_phones_go_in_one_list_request(tmp_path: Path) -> None:
    store = Store(tmp_path / "spool.db", make_config(STORM_ROUTES))
    store.admit("number", "disk full on db1", T0, ("+79990000011",))
    store.admit("number", "disk full on db2", T0 + 1, ("+79990000012",))
    store.admit("number", "load high", T0 + 2, ("+79990000011",))
    t = store.tick(T0 + 12)
    (row,) = t.rows
    assert sent_entries(t) == [
        (("+79990000011",), "2 alerts:\ndisk full on db1\nload high"),
        (("+79990000012",), "disk full on db2"),
    ]
    assert commands(t)[0].list_form and row.texts == [
        "2 alerts:\ndisk full on db1\nload high",
        "disk full on db2",
    ]


def test_store_a_second_digest_to_a_shared_phone_waits_for_min_gap(tmp_path: Path) -> None:
    store = Store(tmp_path / "spool.db", make_config(STORM_ROUTES))
    store.admit("oncall", "alert one", T0)
    store.admit("db", "db alert", T0)
    t = store.tick(T0 + 20)  # +79990000002 is in both groups: only one of them goes now
    assert len(sent_entries(t)) == 1 and t.next_wake == T0 + 50
    t = store.tick(T0 + 50)
    assert len(sent_entries(t)) == 1 and store.states() == {"sent": 2}


def test_store_recovery_cancels_held_problem_and_a_new_problem_starts_fresh(tmp_path: Path) -> None:
    store = Store(tmp_path / "spool.db", make_config(STORM_ROUTES))
    assert store.admit("oncall", "Problem: alert db1 down", T0) == "held"
    assert store.admit("oncall", "Resolved: alert db1 up", T0 + 5) == "cancelled"
    assert store.tick(T0 + 60).rows == []
    assert store.states() == {"cancelled": 2}
    # flapping back: a real problem again, not a "repeat" of the cancelled one
    assert store.admit("oncall", "Problem: alert db1 down", T0 + 70) == "held"
    assert sent_entries(store.tick(T0 + 90))[0][1] == "Problem: alert db1 down"
    # now that it was sent, its recovery is news and goes out
    assert store.admit("oncall", "Problem: alert db1 down", T0 + 95) == "repeat"
    assert store.admit("oncall", "Resolved: alert db1 up", T0 + 100) == "held"
    assert sent_entries(store.tick(T0 + 130))[0][1] == "Resolved: alert db1 up"
    # and ends the problem's dedup window: no "Repeated 1 more time" about something over
    assert store.tick(T0 + 70 + 301).rows == [] and store.tick(T0 + 1000).next_wake is None


def test_store_state_survives_reopening(tmp_path: Path) -> None:
    cfg = make_config(STORM_ROUTES)
    store = Store(tmp_path / "spool.db", cfg)
    store.admit("oncall", "alert a", T0)
    store.admit("oncall", "alert a", T0 + 1)
    store.conn.close()
    again = Store(tmp_path / "spool.db", cfg, ids="y")  # a restart: a new connection, the same file
    assert again.admit("oncall", "alert a", T0 + 2) == "repeat"
    assert sent_entries(again.tick(T0 + 20)) == [(("+79990000001", "+79990000002"), "alert a")]
    assert again.tick(T0 + 21).rows == []


def test_store_urgent_flood_is_paced_below_the_providers_limit(tmp_path: Path) -> None:
    """80 different urgent alerts a second apart to one phone: each may go at once (no hold, no
    min_gap) until the run nears 50; then they wait out the 2-minute gap and go merged."""
    store = Store(tmp_path / "spool.db", make_config(STORM_ROUTES))
    clock = [T0]
    limits = ProviderLimits(clock=lambda: clock[0])
    sent: list[str] = []

    def tick() -> float | None:
        t = store.tick(clock[0])
        entries = sent_entries(t)
        assert limits.check(entries) is None, limits.rejections
        sent.extend(text for _, text in entries)
        return t.next_wake

    for n in range(80):
        clock[0] = T0 + n
        store.admit("urgent", f"urgent alert on host{n:02}", clock[0])  # 80 hosts: 80 alerts
        tick()
    for _ in range(100):
        wake = tick()
        if wake is None:
            break
        clock[0] = max(clock[0], wake)
    assert len(sent) < 50 and store.states() == {"sent": 80}
    for n in range(80):
        assert any(f"urgent alert on host{n:02}\n" in t + "\n" for t in sent), n


def test_store_alerts_of_a_route_removed_by_a_reload_still_go_out(tmp_path: Path) -> None:
    store = Store(tmp_path / "spool.db", make_config(STORM_ROUTES))
    store.admit("oncall", "replication lag 30 s", T0)
    store.cfg = make_config(STORM_ROUTES.replace("name: oncall", "name: on-call"))  # SIGHUP, renamed
    t = store.tick(T0 + 20)
    assert sent_entries(t) == [(("+79990000001", "+79990000002"), "replication lag 30 s")]
    assert commands(t)[0].options.sender == ""  # oncall's sender ALERTS is gone with the route
    assert store.tick(T0 + 21).rows == []


# ---- a storm, property-based: the provider's rules hold and nothing is lost ------------------
# 60 problems and 20 recoveries: enough distinct texts that, without pacing, the urgent route
# alone would flood a phone, and the same text can reach a phone through two routes.
STORM_TEXTS = [f"Problem: alert a{n} on host{n}" for n in range(60)] + [
    f"Resolved: alert a{n} on host{n}" for n in range(20)
]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(st.floats(0, 3), st.sampled_from(["oncall", "db", "urgent"]), st.sampled_from(STORM_TEXTS)),
        min_size=1,
        max_size=250,
    )
)
def test_any_storm_keeps_the_providers_rules_and_represents_every_alert(
    tmp_path_factory: pytest.TempPathFactory, mails: list[tuple[float, str, str]]
) -> None:
    store = Store(tmp_path_factory.mktemp("storm") / "spool.db", make_config(STORM_ROUTES))
    clock = [T0]
    limits = ProviderLimits(clock=lambda: clock[0])
    admitted: dict[str, str] = {}
    sent: list[tuple[tuple[str, ...], str]] = []

    def tick() -> float | None:
        t = store.tick(clock[0])
        got = sent_entries(t)
        assert limits.check(got) is None, limits.rejections
        sent.extend(got)
        return t.next_wake

    for gap, route, text in mails:
        clock[0] += gap
        admitted[store.admit(route, text, clock[0])] = text
        tick()
    for _ in range(2000):  # bounded: run the planner until nothing is held and no window is open
        wake = tick()
        if wake is None:
            break
        clock[0] = max(clock[0], wake)
    assert store.states().get("held", 0) == 0
    # every admitted text that was not cancelled as a flap is in some SMS
    cancelled = {text for (text,) in spooldb.select_on(store.conn, "alerts", "text", state="cancelled")}
    for text in {t for _, route, t in mails} - cancelled:
        assert any(text in body for _, body in sent), text
    assert limits.rejections == []
