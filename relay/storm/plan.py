"""Alert-storm control, the pure part: deduplication, coalescing, pacing, flap cancelling, quiet hours.

A route with `storm:` does not send each mail as it comes. Each (phones, text) it produces is
*admitted* as an alert: a repeat of a text already seen in the dedup window is only counted, a
recovery whose problem has not been sent yet cancels both (a flap), anything else is held. The
*planner* then turns held alerts into SMS: all alerts for the same phones of a route become one
digest once the oldest has been held long enough, the newest first, cut to the route's parts
budget, and only when every phone of the group may receive an SMS under the provider's limits:

- the provider refuses an identical request repeated within a minute (error 9): the dedup window
  is at least a minute, and no text goes to a phone that got the same text within the minute;
- the provider blocks a subscriber after 50 messages sent with gaps under 2 minutes (the SMTP
  page; the HTTP and SMPP pages say 60 and 30 seconds, the strictest wins): each phone gets at
  most `burst` (< 50) SMS with short gaps, then a pause of more than 2 minutes, and at least
  `min_gap` seconds between any two SMS.

Everything here is data in, data out, with the time passed in (the limits themselves are in
pacing.py); relay/spool/alerts.py keeps the state in the spool and relay/daemon/storm_runner.py
runs the planner.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from relay.config.schema import StormSettings
from relay.formatters import segments
from relay.model import AlertKind, AlertState, AlertSummary, ProviderMail
from relay.storm.pacing import REPEAT_WINDOW, SAFETY, Send, next_allowed, quiet_until, text_digest
from relay.summaries import fingerprint


@dataclass(frozen=True, slots=True)
class Alert:
    """One (phones, text) of a storm route, as stored while held."""

    id: str
    route: str
    phones: tuple[str, ...]
    text: str
    kind: AlertKind = AlertKind.PROBLEM
    key: str = ""  # which alert this is about (alert_key); "" when unknown
    dedup: str = ""  # dedup_key(route, phones, text)
    urgent: bool = False
    received: float = 0.0
    due: float = 0.0  # not sent before this: received + hold
    rcpt: str = ""  # the address the mail came to (a failure notice names it)


@dataclass(frozen=True, slots=True)
class Window:
    """A dedup window: the first alert with this text was admitted at `opened`."""

    key: str
    route: str
    phones: tuple[str, ...]
    text: str
    opened: float
    closes: float
    repeats: int = 0
    source: str = ""  # the alert that opened it


@dataclass(frozen=True, slots=True)
class Admission:
    state: AlertState  # held, repeat or cancelled
    alert: Alert
    cancels: tuple[str, ...] = ()  # held problem alerts a recovery cancels
    window: Window | None = None  # the window to store (opened, or with one more repeat)
    drop_window: tuple[str, ...] = ()  # windows to forget: the alert they were about recovered
    note: str = ""
    # A recovery ends the dedup windows of its problem: no "repeated N times" about something over.
    ends_problem: bool = False


@dataclass(frozen=True, slots=True)
class Digest:
    """One SMS to make now: `alerts` (ids) are in it; `text` is what the phones get."""

    route: str
    phones: tuple[str, ...]
    text: str
    alerts: tuple[str, ...]
    left: int  # alerts of the group that did not fit and stay held


@dataclass(frozen=True, slots=True)
class Plan:
    digests: tuple[Digest, ...] = ()
    followups: tuple[Alert, ...] = ()  # "repeated N times" alerts, held from now
    closed: tuple[str, ...] = ()  # dedup windows that are over
    next_wake: float | None = None
    sends: Mapping[str, tuple[Send, ...]] = field(default_factory=dict)  # new sends per phone


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A planner tick's result with its provider requests built (relay/pipeline.storm_outgoing):
    what the spool writes in the transaction that read the state the plan came from."""

    plan: Plan
    requests: tuple[tuple[ProviderMail, tuple[Digest, ...]], ...] = ()  # a request, the digests in it
    config: str = ""  # the digest of the config that built them (kept with each row)


# What a tick reads in its transaction (held alerts, open windows, each phone's sends) -> Outgoing.
Compose = Callable[[Sequence["Alert"], Sequence["Window"], Mapping[str, Sequence[Send]]], Outgoing]


def dedup_key(route: str, phones: Sequence[str], text: str) -> str:
    joined = "\0".join([route, ",".join(sorted(phones)), " ".join(text.split())])
    return hashlib.sha256(joined.encode()).hexdigest()[:32]


def classify(
    text: str, settings: StormSettings, summary: AlertSummary | None = None
) -> tuple[AlertKind, str]:
    """(kind, key): is this a recovery, and which alert is it about. The route's `recovery` and
    `alert_key` patterns decide where they are set; otherwise a recogniser's summary does."""
    if settings.recovery is not None:
        recovers = settings.recovery.search(text) is not None
    else:
        recovers = summary is not None and summary.recovery
    kind = AlertKind.RECOVERY if recovers else AlertKind.PROBLEM
    key = summary.identity if summary is not None else ""
    if settings.alert_key:
        m = settings.alert_key.search(text)
        key = " ".join((m.groupdict().get("key") or m.group(0)).split()).lower() if m else ""
    return kind, key


def new_alert(
    alert_id: str,
    route: str,
    phones: tuple[str, ...],
    text: str,
    settings: StormSettings,
    now: float,
    rcpt: str = "",
    *,
    source: str = "",
    summary: AlertSummary | None = None,
) -> Alert:
    """`text` is what the phones get; `source` (default `text`) what the route's patterns read.
    Two alerts are the same alert (a repeat) when their identity is: the recogniser's, the
    alert_key's, or else the text with its volatile values masked."""
    kind, key = classify(source or text, settings, summary)
    identity = key or fingerprint(source or text)
    first_hold = 0.0 if settings.urgent else min(settings.first_hold, settings.hold)
    return Alert(
        id=alert_id, route=route, phones=phones, text=text, kind=kind, key=key,
        dedup=dedup_key(route, phones, f"{kind.value} {identity}"), urgent=settings.urgent, received=now,
        due=now + first_hold, rcpt=rcpt,
    )  # fmt: skip


def admit(
    alert: Alert, window: Window | None, held_problems: Sequence[Alert], settings: StormSettings, now: float
) -> Admission:
    """Decide what a new alert becomes. `window`: the open dedup window with its key, if any;
    `held_problems`: unsent problem alerts of the same route, phones and key."""
    result = _admit(alert, window, held_problems, settings, now)
    return replace(result, ends_problem=alert.kind is AlertKind.RECOVERY and bool(alert.key))


def _admit(
    alert: Alert, window: Window | None, held_problems: Sequence[Alert], settings: StormSettings, now: float
) -> Admission:
    if alert.kind is AlertKind.RECOVERY and alert.key:
        # A flap: the problem recovered within its hold. One held longer only because the phones
        # were busy is news, and so is its recovery: both are named.
        flapped = tuple(
            a.id
            for a in held_problems
            if a.key == alert.key and a.kind is AlertKind.PROBLEM and a.received + settings.hold >= now
        )
        if flapped:
            return Admission(
                AlertState.CANCELLED, alert, cancels=flapped,
                drop_window=tuple({a.dedup for a in held_problems if a.id in flapped}),
                note=f"recovered before it was sent: cancels {', '.join(flapped)}",
            )  # fmt: skip
    if window is not None and window.closes > now:
        return Admission(
            AlertState.REPEAT, alert, window=replace(window, repeats=window.repeats + 1), note=window.source
        )
    opened = Window(
        alert.dedup, alert.route, alert.phones, alert.text, now, now + settings.dedup_window, 0, alert.id
    )
    return Admission(AlertState.HELD, alert, window=opened)


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{round(seconds)} s"
    if seconds < 7200:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds / 3600)} h"


def followup_text(window: Window) -> str:
    times = "time" if window.repeats == 1 else "times"
    return (
        f"Repeated {window.repeats} more {times} in {duration(window.closes - window.opened)}: {window.text}"
    )


def _ready(
    now: float,
    phones: tuple[str, ...],
    alerts: Sequence[Alert],
    sent: Mapping[str, Sequence[Send]],
    s: StormSettings,
) -> float:
    """When a group's digest may go: its leading edge, or the storm's hold, out of quiet hours,
    and no sooner than the pacing of every phone of the group allows."""
    urgent = any(a.urgent for a in alerts)
    ready = min(a.due for a in alerts)  # the leading edge: phones idle for a while
    since = now - s.min_gap - s.hold
    if not urgent and any(x.at > since for p in phones for x in sent.get(p, ())):
        # In the middle of a storm: wait for others to join, then one digest.
        ready = min(a.received + (0.0 if a.kind is AlertKind.FOLLOWUP else s.hold) for a in alerts)
    quiet = quiet_until(max(now, ready), s)
    if quiet is not None and not urgent:
        ready = quiet
    gap = 0.0 if urgent else s.min_gap
    for phone in phones:
        ready = max(ready, next_allowed(sent.get(phone, ()), gap, s.burst))
    return ready


def plan(
    now: float,
    held: Sequence[Alert],
    windows: Sequence[Window],
    history: Mapping[str, Sequence[Send]],
    settings: Callable[[str], StormSettings],
    new_id: Callable[[], str],
) -> Plan:
    """What to send now, and when to look again."""
    wakes: list[float] = []
    followups, closed = [], []
    for w in windows:
        if w.closes <= now:
            closed.append(w.key)
            if w.repeats:
                s = settings(w.route)
                followups.append(new_alert(new_id(), w.route, w.phones, followup_text(w), s, now))
                followups[-1] = replace(followups[-1], kind=AlertKind.FOLLOWUP, due=now)
        elif w.repeats:
            wakes.append(w.closes)
    groups: dict[tuple[str, tuple[str, ...]], list[Alert]] = {}
    for a in [*held, *followups]:
        groups.setdefault((a.route, a.phones), []).append(a)
    sent: dict[str, list[Send]] = {p: list(h) for p, h in history.items()}
    new_sends: dict[str, list[Send]] = {}
    digests = []
    for (route, phones), alerts in sorted(groups.items(), key=lambda kv: min(a.due for a in kv[1])):
        s = settings(route)
        ready = _ready(now, phones, alerts, sent, s)
        if ready > now:
            wakes.append(ready)
            continue
        digest = build_digest(route, phones, alerts, s)
        mark = text_digest(digest.text)
        since = now - REPEAT_WINDOW - SAFETY
        same = [x.at for p in phones for x in sent.get(p, ()) if x.digest == mark and x.at > since]
        if same:  # the very same text went to one of them within the minute
            wakes.append(max(same) + REPEAT_WINDOW + SAFETY)
            continue
        digests.append(digest)
        for phone in phones:
            sent.setdefault(phone, []).append(Send(now, mark))
            new_sends.setdefault(phone, []).append(Send(now, mark))
        if digest.left:
            wakes.append(now)  # the rest go as soon as pacing lets them
    return Plan(
        digests=tuple(digests),
        followups=tuple(followups),
        closed=tuple(closed),
        next_wake=min(wakes) if wakes else None,
        sends={p: tuple(v) for p, v in new_sends.items()},
    )


def build_digest(route: str, phones: tuple[str, ...], alerts: Sequence[Alert], s: StormSettings) -> Digest:
    """The oldest alerts first (every alert is named before any is named twice), one line each,
    as many as fit in `max_parts`, with a count of the rest, which stay held for the next one. A
    lone alert keeps its text as it is, line breaks and all."""
    ordered = sorted(alerts, key=lambda a: (a.received, a.id))
    lines = [" ".join(a.text.split()) for a in ordered]
    if len(ordered) == 1:
        lines = [ordered[0].text]

    def text_of(count: int) -> str:
        rest = len(ordered) - count
        head = f"{len(ordered)} alerts:\n" if len(ordered) > 1 else ""
        tail = f"\n(+{rest} more)" if rest else ""
        return head + "\n".join(lines[:count]) + tail

    def fits(text: str) -> bool:
        return segments.count(text, translit=s.translit).parts <= s.max_parts and len(text) <= 1000

    count = 1
    while count < len(ordered) and fits(text_of(count + 1)):
        count += 1
    text = text_of(count)
    if not fits(text):  # the oldest alert alone is over the budget: cut it, keep the count
        head = f"{len(ordered)} alerts:\n" if len(ordered) > 1 else ""
        tail = f"\n(+{len(ordered) - 1} more)" if len(ordered) > 1 else ""
        limit = 1000 - len(head) - len(tail)
        body = lines[0]
        for _ in range(200):  # bounded: each round cuts 10 more characters
            body = segments.fit(lines[0], max_chars=limit, max_parts=s.max_parts, translit=s.translit)
            if fits(head + body + tail) or limit <= 20:
                break
            limit = min(limit, len(body)) - 10
        text = head + body + tail
    return Digest(route, phones, text, tuple(a.id for a in ordered[:count]), len(ordered) - count)
