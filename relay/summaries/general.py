"""The summary of alert mail that no recogniser claims, from the structure alert mail shares.

The subject names the problem (and mostly the state and host); `host:`, `state:`, `service:`,
`summary:` and `value:` fields, in whatever words the tool uses, fill in what it does not; free
text after the boilerplate is the detail. Grouped mail (several hosts, each with its value)
names every instance. Mail with none of this structure is not claimed: it keeps the plain path.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from relay.formatters import segments
from relay.model import AlertSummary, Piece, Role
from relay.summaries.fit import MEASURE, compose
from relay.summaries.reading import Field, Reading, read
from relay.summaries.vocabulary import _NO_TROUBLE, STATE_WORD, plain, troubled

RECOVERED = re.compile(
    r"^(?:RECOVERY|RECOVERED|RESOLVED|OK|UP|CLEAR|CLEARED|RESTORED|SUCCESS|SUCCEEDED|SUCCESSFUL|PASSING|Решена|"
    r"Восстановлен\w*)$",
    re.IGNORECASE,
)
_PREFIX = re.compile(r"^(?:(?:re|fwd?|fw|aw|wg|tr|отв|пересл)\s*(?:\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_FREE_LINES = 3
_SAID_LINES = 12  # the lines a value said in prose is looked for in (a report's list of alerts)
_TOOL_ALERT = re.compile(r"^[\w.-]+ (?:alert|alarm|notification)s? --\s*", re.IGNORECASE)
_ALERT_NOUN = re.compile(r"\b(?:alerts?|alarms?|events?|notifications?|warnings?|errors?)\b", re.IGNORECASE)


def _all_clear(line: str) -> bool:
    """`AIDE produced no errors.`: a line that says only that nothing went wrong."""
    low = line.lower()
    return _NO_TROUBLE.search(low) is not None and not troubled(line)


# `CRM_alert_timestamp=23:06:27`: a script's environment dumped into its mail, not a finding
_VARIABLE = re.compile(r"[A-Z][A-Z0-9]*_\w+\s*[=:]")
_ITEM = re.compile(r"^\s*[-*•]\s+")  # a list item's marker
# What vocabulary.py drops from a letter: its greeting and sign-off. A machine that writes a
# letter (BackupPC, a backup or licence script) and reports trouble in it is alerting.
_LETTER = ("greeting", "sign-off")
# what no person writes in a letter: a machine's notes on itself, a diff of what it watches
_MACHINE = ("automatic-mail note", "tool's own note", "diff header", "progress")
_LAYOUT = ("banner", "section heading", "table head")
_REPORT_LINES = 5  # a report has lines to lay out; a rule under two lines is no layout
# `03-Dec 10:59 backup01-dir JobId 4: ...`, `2026-12-03 10:59:01 ...`: a log line's time stamp
_LOG_STAMP = re.compile(
    r"^(?:[\w.-]{1,20}: (?=\d{4}-\d{2}-\d{2}[ T]))?"  # a job's own prefix first (`105: 2026-12-03 01:04:12 `)
    r"(?:\d{1,4}[-./][\w]{2,3}[-./]?\d{0,4}[ T]\d{1,2}:\d{2}(?::\d{2})?\S*\s+|\[[\d:. -]+\]\s+"
    r"|\w{3} \w{3} +\d{1,2} \d{2}:\d{2}(?::\d{2})?(?: [A-Z]{2,5})? \d{4}:?\s+"
    r"|[A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2}:\d{2}\s+)"  # syslog's `Dec  3 14:02:11 `
)
# `97.86374221060447`: a float printed whole (JSON, a template's raw value); two places say it
_FLOAT_NOISE = re.compile(r"(?<![\w.])\d+\.\d{7,}(?![\w.])")
_STATE_AT = re.compile(r"(?<![\w.])([^\W\d_]+)@(?=\w)")
_UPTIME = re.compile(r"(?<=: )\[\s*\d+\.\d+\]\s*")  # the kernel's `kernel: [1843022.114215] `
# A date and time in a subject (`db01 2026-12-03 14:44 +0000 Security Events`, `[Thu, 03 Dec
# 2026 15:16:55 +0000]`): when it was sent, which the phone shows anyway
_WHEN = re.compile(
    r"(?:\s+(?:on|at)(?=\s+\d))?\s*(?:\d{1,2}/\d{1,2}/\d{2,4}[ T]\d{1,2}:\d{2}(?::\d{2})?|\[?(?:\w{3}, )?\d{1,2} \w{3} \d{4} \d{2}:\d{2}(?::\d{2})?(?: [+-]\d{4})?\]?"
    r"|\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2})?(?:\s?[+-]\d{4}|Z| UTC)?|^\d{2}:\d{2}:\d{2}(?:\.\d+)?)(?=\s|$)"
    # `AMANDA MAIL REPORT FOR December 3, 2026`, `... on Dec 3, 2026`: a day named in words
    r"|\s+(?:for|on|of)\s+(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.? \d{1,2}, \d{4}(?=\s|$)"
    r"|\s+(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.? \d{1,2}, \d{4}$",
    re.IGNORECASE,
)


def _state(reading: Reading, said: str, alert: bool) -> str:
    """The state piece: a state field, else the first lines' state word (`The following alert has
    been cleared:`); none when the subject's own words say it (`said`)."""
    state = _first(reading, Role.STATE)
    if not state and not said and alert:
        said_first = (m[1] for line in reading.free[:_FREE_LINES] for m in STATE_WORD.finditer(line))
        state = next((w for w in said_first if w.lower() not in ("alert", "alarm", "alerting")), "")
    if said and said.lower() in state.lower():
        state = ""  # `Critical, Disk /var ...` says it already: not `Escalated to CRITICAL Critical, ...`
    return state


def _unsaid_state(state: str, core: str) -> str:
    """A state from the first lines that the subject says already, in any form (`Error` over
    `3 errors reported in billing-api`), is not said twice."""
    return "" if state and re.search(rf"(?<!\w){re.escape(state)}", core, re.IGNORECASE) else state


def summarise(
    subject: str, text: str, header_from: str = "", reading: Reading | None = None
) -> AlertSummary | None:
    reading = reading if reading is not None else read(text, subject)
    core = plain(expand(without_tool_name(strip_prefix(_WHEN.sub("", subject)), header_from), reading.kept))
    if "@" in core:  # `WARNING@app03.example.com`: a state and the host it is on
        core = _STATE_AT.sub(lambda m: f"{m[1]} " if STATE_WORD.fullmatch(m[1]) else m[0], core)
    if not (
        any(f.role for f in reading.fields)
        or reading.dropped
        or _state_word(core)
        or reports_trouble(subject, reading.free)
    ):
        return None  # no alert structure: the plain text is what the sender meant
    alert = _is_alert(reading, core, subject)
    said = _state_word(core)
    state = _unsaid_state(_state(reading, said, alert), core)
    hosts = list(
        dict.fromkeys(host_of(f.value) for f in reading.fields if f.role is Role.HOST and host_of(f.value))
    ) or _prose_host(core, reading.free)
    problem = _first(reading, Role.PROBLEM)
    found = instances(reading.fields)
    value = (
        ", ".join(f"{h} {v}".strip() for h, v in found)
        if len(found) > 1
        else (_first(reading, Role.VALUE) or _said_value(reading) or _threshold(reading))
    )
    pieces = [
        Piece(Role.STATE, plain(state)),
        Piece(Role.HOST, segments.fold_to_gsm(", ".join(hosts[:1])) if len(found) <= 1 else ""),
        Piece(Role.PROBLEM, core),
        Piece(Role.PROBLEM, plain(problem)),
        Piece(Role.HOST, ", ".join(h for h in hosts[1:] if len(found) <= 1)),
        Piece(Role.VALUE, _FLOAT_NOISE.sub(lambda m: f"{float(m[0]):.2f}", plain(value)), ": "),
        Piece(
            Role.DETAIL,
            plain(
                _tidy(
                    _detail(reading, core)
                    if alert
                    else " / ".join(_LOG_STAMP.sub("", k) for k in reading.kept)
                )
            ),
            ": ",
        ),
    ]
    summary_state = state or said
    name = problem or core
    return AlertSummary(
        recogniser="general",
        pieces=compose(pieces),
        host=hosts[0] if hosts else "",
        identity=identity("general", hosts[0] if hosts else "", STATE_WORD.sub("", name)),
        recovery=bool(summary_state and RECOVERED.match(summary_state.strip())),
        dropped=reading.dropped + (reading.ignored if alert else ()),
        # Greetings and sign-offs alone do not make an alert: such mail keeps the route's parts.
        alert=alert,
    )


def reports_trouble(subject: str, lines: Sequence[str]) -> bool:
    """A report that says trouble at once, in its subject or its first line (`3 Scanned, 1
    Updated, 1 Failed`, `Warnung: Dateieigenschaften haben sich geändert`, `... will get ban
    ...`), though it has no fields: an alert, not a reply to one."""
    if _PREFIX.match(subject):
        return False  # `Re: backup failed`: a person's answer
    return troubled(subject) or bool(lines and troubled(lines[0]))


def _is_alert(reading: Reading, core: str, subject: str) -> bool:
    """Whether the mail reports trouble (then it is fitted to one part), or is mail that only
    looks like it (it keeps the route's parts)."""
    if any(f.role for f in reading.fields) or _state_word(core) or reports_trouble(subject, reading.free):
        return True
    trouble = troubled(core) or any(troubled(line) for line in reading.free[:_FREE_LINES])
    return (
        # `TrueNAS nas01: Alerts` over `* Pool tank state is DEGRADED ...`, `[rkhunter] Warnings
        # found for db01`: a mail that calls itself an alert and reports trouble is one, though
        # it has no fields
        (bool(_ALERT_NOUN.search(core)) and trouble)
        # A report a machine sends of itself (`This email is sent by logcheck`): what it found
        # is the news, in one part as an alert's
        or any(kind in reading.dropped for kind in _MACHINE)
        # A machine's letter (greeting, sign-off) that reports trouble: BackupPC's
        or (any(kind in reading.dropped for kind in _LETTER) and trouble)
        # A report laid out as a machine lays out (rules, section headings, a table's head) and
        # not as a letter: what it says fits one part as an alert's does
        or (
            any(kind in reading.dropped for kind in _LAYOUT)
            and len(reading.kept) >= _REPORT_LINES
            and not any(k in reading.dropped for k in _LETTER)
        )
    )


def identity(*parts: str) -> str:
    return " ".join(" ".join(p.split()).lower() for p in parts if p)


def strip_prefix(subject: str) -> str:
    """Without `Re:`/`Fwd:` and a tool's `<name> alert --` (Monit's subjects), and with the HTML
    entities some tools put in a plain subject (`&quot;`, `&uacute;`) as their characters."""
    if "&" in subject:
        subject = html.unescape(subject)
    return _TOOL_ALERT.sub("", _PREFIX.sub("", subject)).strip()


# `Data source "value" is currently 12.020088. That is above ...`, `usage is now at 97%`,
# `has reached 95 %`: the measurement a message says in prose, without a field of its own
_SAID_VALUE = re.compile(
    r"\b(?:(?:is|are|was|were) (?:currently|now)(?: at)?|has reached|current (?:value|level|usage|reading)"
    r"(?: is| of)?:?|(?:more|fewer|less) than)\s+(?P<value>[-+]?\d+(?:[.,]\d+)?(?:\s?(?:%|[KMGTP]i?B\b|ms\b|°C))?)"
    # `Space usage for pool 'tank' is 83%.`: a percentage something is
    r"|\b(?:is|are|at|reached)\s+(?P<percent>\d+(?:[.,]\d+)?\s?%)",
    re.IGNORECASE,
)


# `Threshold: > 2000.0`, `Limit = 90%`: what the alert is set at, the value to say when the mail
# gives no measurement of its own
_THRESHOLD_FIELD = re.compile(
    r"^(?:alert |critical |warning )?(?:threshold|limit|trigger value|triggered at)\s*[:=]\s*(?P<value>.*\d.*)$",
    re.IGNORECASE,
)


def _threshold(reading: Reading) -> str:
    found = (_THRESHOLD_FIELD.match(o) for o in reading.others)
    return next((m["value"].strip() for m in found if m), "")


# `count()=57.0`, `avg(cpu_user)=93.2`: an aggregation's result, what a query alert measured
_AGGREGATE = re.compile(r"\b\w+\([^()]{0,40}\)\s*=\s*(?P<value>[-+]?\d+(?:[.,]\d+)?%?)")


def _said_value(reading: Reading) -> str:
    """A measurement the message fields (else the first free lines) state in words."""
    texts = [f.value for f in reading.fields if f.role is Role.DETAIL] or list(reading.free[:_SAID_LINES])
    aggregate = next((m for t in texts if (m := _AGGREGATE.search(t))), None)
    if aggregate is not None:
        return aggregate["value"]
    found = (_SAID_VALUE.search(t) for t in texts)
    return next((m["value"] or m["percent"] for m in found if m), "")


# `... on web-02`, `host db01.example.com is down`, `на сервере srv-db03`: a machine named in
# prose, by a word that says it is one, and a name with a digit, dot or hyphen in it (not a word)
_PROSE_HOST = re.compile(
    r"(?<!\w)(?:(?:on|host|server|node|machine|auf|sur|на|хост[еу]?|сервер[еу]?|узл[еу])\s+)+"
    r"(?P<host>[A-Za-zА-Яа-яЁё][\w-]*(?:\.[\w-]+)*)(?=[\s,;:.!?)]|$)"
)


def _prose_host(core: str, lines: Sequence[str]) -> list[str]:
    """The host the subject or the first lines name in words, when no field names one."""
    for text in (core, *lines[:_FREE_LINES]):
        for m in _PROSE_HOST.finditer(text):
            name = m["host"].rstrip(".")
            if re.search(r"\d|[.-]", name) and not re.fullmatch(r"v?\d[\d.]*", name, re.IGNORECASE):
                return [name]
    return []


def _first(reading: Reading, role: Role) -> str:
    return next((f.value for f in reading.fields if f.role is role and f.value), "")


def _state_word(text: str) -> str:
    m = STATE_WORD.search(text)
    return m.group(1) if m else ""


def host_of(value: str) -> str:
    """A host field's host: the value without a parenthesised aside (`db01 (10.0.0.7)`), whole
    when it is a name of a few words (Zabbix's visible names have spaces), else its first word."""
    name = re.sub(r"\s*[(\[].*$", "", value).strip(" ,;")
    name = _TRAILING_IP.sub("", name) or name  # `Agent: db01 10.0.0.21`: the name is enough
    words = name.split()
    if not words:
        return ""
    return name if len(words) <= 4 and not re.search(r"[.!?]\s", name) else words[0]


_TRAILING_IP = re.compile(r"\s+\d{1,3}(?:\.\d{1,3}){3}$")
_MEASURE_RANK = {"summary": 0, "message": 1, "info": 1, "output": 1, "description": 2}


def instances(fields: tuple[Field, ...]) -> list[tuple[str, str]]:
    """(host, value) for each alert of a grouped mail: the n-th value field goes with the n-th
    host when there are as many of each; else a host's value is the first measurement of the
    message fields that follow it, a summary's before a description's (`... is 96.1% full`
    rather than `has only 3.9% available`)."""
    hosts: list[str] = []
    values: list[str] = []
    measured: dict[str, tuple[int, str]] = {}
    for f in fields:
        if f.role is Role.HOST and host_of(f.value) and host_of(f.value) not in hosts:
            hosts.append(host_of(f.value))
        elif f.role is Role.VALUE:
            values.append(f.value)
        elif f.role is Role.DETAIL and hosts and (m := MEASURE.search(f.value)):
            rank = _MEASURE_RANK.get(f.key, 3)
            if hosts[-1] not in measured or rank < measured[hosts[-1]][0]:
                measured[hosts[-1]] = (rank, m.group(0))
    if len(values) == len(hosts):
        return list(zip(hosts, values, strict=True))
    return [(h, measured[h][1] if h in measured else "") for h in hosts]


def expand(subject: str, lines: tuple[str, ...]) -> str:
    """A subject the tool cut (`... too m...`) made whole again from the body line it was cut from."""
    m = re.search(r"(?P<tail>\S.{11,}?)\s*(?:\.\.\.|…)$", subject)
    if not m:
        return subject
    tail = m["tail"][-24:]
    for line in lines:
        at = line.find(tail)
        if at >= 0:
            return subject[: m.start("tail")] + m["tail"] + line[at + len(tail) :]
    return subject


def _detail(reading: Reading, core: str) -> str:
    """The message fields, each once; else the first free lines that the subject has not said;
    else the fields whose names we do not know. Free lines that say trouble go before message
    fields that do not (`DUMP SUMMARY:` over a table's head, below `... FAILED [... status 2]`)."""
    said: list[str] = []
    for f in reading.fields:
        if f.role is Role.DETAIL and not any(f.value.startswith(s) or s.startswith(f.value) for s in said):
            said.append(f.value)
    if said and (any(troubled(s) for s in said) or not any(troubled(line) for line in reading.free)):
        return "; ".join(said)
    lines = [
        _UPTIME.sub("", _LOG_STAMP.sub("", line))
        for line in reading.free
        if not _repeats(line, core) and not _all_clear(line)
    ]
    if lines:
        # The lines that say something went wrong first (a log's one warning among its chatter),
        # each group in the mail's order.
        # A list's items before the prose that leads into it (`The following host had an error
        # ...:` over `- fileserver-01 (rsync error ... code 255)`): the item names what failed.
        listed = any(_ITEM.match(line) for line in lines)
        # A tally (`11 upgraded, 0 newly installed, 1 to remove`, `3 Scanned, 1 Updated, 1
        # Failed`) is what a report concludes: before the rest of its kind.
        lines = sorted(
            lines,
            key=lambda line: (_severity(line), listed and not _ITEM.match(line), not _TALLY.search(line)),
        )
        return " / ".join(_listed_path(_ITEM.sub("", line)) for line in lines[:_FREE_LINES])
    return "; ".join([o for o in reading.others if not _VARIABLE.match(o)][:2])


# A file listing's line (`ls -l`, `find -ls`, a diff of them): inode, mode, links, owner, size
# and time before the path. `+ 2827599 4755 1 root root 1265648 Fri Dec 4 23:07:29 2026 /var/tmp/.bash`
_LISTING = re.compile(r"^(?P<sign>[+-] ?)?(?P<columns>(?:\S+\s+){4,14})(?P<path>/\S+)$")


def _listed_path(line: str) -> str:
    """A listing line as its path (with a diff's sign): the columns before it are the file's
    metadata, of no use on a phone."""
    m = _LISTING.match(line)
    if m is None:
        return line
    columns = m["columns"].split()
    if sum(bool(re.search(r"\d", c)) for c in columns) * 2 < len(columns):
        return line  # words, not a listing's columns
    return f"{(m['sign'] or '').strip()}{m['path']}"


_WORST = re.compile(r"\b(?:fatal|critical|crit|emerg\w*)\b", re.IGNORECASE)


_TALLY = re.compile(r"\b\d+ [^\W\d][\w-]*(?: [^\W\d][\w-]*)?(?:,| and) \d+ [^\W\d]")


def _severity(line: str) -> int:
    """How bad a line says things are: 0 fatal or critical, 1 other trouble, 2 none (a log's
    `Fatal: rsync to backup01 failed` before its warnings)."""
    if not troubled(line):
        return 2
    return 0 if _WORST.search(line) else 1


def _repeats(line: str, subject: str) -> bool:
    """Most of the line's words are the subject's: `db01 is critical` under `Critical, ... on db01`."""
    words = [w for w in re.findall(r"\w+(?:[.,]\d+)?", line.lower()) if len(w) > 2 or w.isdigit()]
    if not words:
        return True
    known = set(re.findall(r"\w+(?:[.,]\d+)?", subject.lower()))
    return sum(w in known for w in words) >= 0.75 * len(words)


_GENERIC = frozenset(
    ("alert", "alerts", "alarm", "notification", "notifications", "message", "report", "monitoring", "event",
     "events", "status", "mail", "email", "for", "unit", "update", "updates", "notify", "notifier")
)  # fmt: skip
_LEAD = re.compile(r"^(?:\[(?P<tag>[\w .-]{2,30}?)\]\s*|(?P<name>[\w .-]{2,30}?)\s*(?::|--|-|—)\s+)(?=\S)")


def without_tool_name(subject: str, header_from: str) -> str:
    """`Check_MK: db01/...`, `monit alert -- ...`: the lead-in that only names the sending tool
    (its name is in the From: address) goes; the phone knows who sends alerts."""
    m = _LEAD.match(subject)
    if not m:
        return subject
    sender = {re.sub(r"[\W_]", "", t) for t in re.split(r"[\s@.<>\"'()+-]+", header_from.lower()) if t}
    lead = m["tag"] or m["name"]
    words = [re.sub(r"[\W_]", "", w) for w in lead.lower().split()]
    named = re.sub(r"[\W_]", "", lead.lower())
    if named in sender or (
        words and all(w in sender or w in _GENERIC for w in words) and any(w in sender for w in words)
    ):
        return subject[m.end() :]
    if m["name"] and words and all(w in _GENERIC for w in words):
        return subject[m.end() :]  # `Status mail for unit: ...`: words that say only "a mail"
    return subject


def _tidy(text: str) -> str:
    return text.strip(" ;,")
