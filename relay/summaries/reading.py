"""Read the structure almost all alert mail shares: `key: value` lines whose key names a host, a
state, a problem, a message or a value; free text; and the boilerplate no phone needs.

Nothing here knows a sender. The words are the ones monitoring and ops tools use for their
fields, in English and Russian; a line is boilerplate by its shape (a rule of repeated symbols,
a greeting, a sign-off, a link, a label dump), never because one tool's template has it.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass

from relay.model import Role
from relay.summaries.vocabulary import (
    _DATE,
    _FIELD,
    _LABEL_ROW,
    _MAP,
    _PAIRS,
    _SECTION,
    _TABLE_HEAD,
    _TABLE_ROW,
    _TAG,
    _TROUBLE_WORD,
    _URL,
    IGNORED,
    KEYS,
    PERFDATA,
    POINTER,
    STATE_WORD,
    boilerplate,
    role_of,
    troubled,
)  # fmt: skip

# Whatever `read` could find, looked for cheaply: mail with none of it (most application mail)
# is left alone after a few substring tests and one anchored match a line, not a full reading.
_WORDS = (
    "<", "&", "©", "://", "***", "###", "===", "~~~", "%%%", "___", "+++", "---", "www.", "map[", "automatic", "generated", "reply", "receiv", "unsubscribe", "notification", "sent by",
    "sent from", "delivered", "(c)", "copyright", "автоматическ", "отвечайте", "сформирован", "создано",
    "occurred", "arrived", "please inspect", "please check", "please review", "please investigate",
    "please examine", "bytes of data", "for further", "for more", "for additional", "for full",
    "traceback", "file \"",
)  # fmt: skip


_Node = dict[str, "_Node"]


def _trie(words: tuple[str, ...]) -> str:
    """One pattern for all the words, their common beginnings shared (`sent (?:by|from)`):
    the regex engine tries each alternative at every position, and a flat list of them costs
    it ~40 % more on a 1 KB text."""
    root: _Node = {}
    for word in words:
        node = root
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}  # a word ends here

    def emit(node: _Node) -> str:
        alternatives = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if not alternatives:
            return ""
        body = alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"
        return f"(?:{body})?" if "" in node else body

    return emit(root)


# Any of them anywhere: one scan of the text for all (half the time of a search per word).
_ANY_WORD = re.compile(_trie(_WORDS))
_FIRST_WORDS = frozenset(
    [
        "hi",
        "hello",
        "hey",
        "dear",
        "greetings",
        "good",
        "hallo",
        "bonjour",
        "regards",
        "best",
        "kind",
        "warm",
        "thanks",
        "thank",
        "cheers",
        "sincerely",
        "yours",
        "faithfully",
        "view",
        "open",
        "see",
        "go",
        "click",
        "show",
        "silence",
        "detail",
        "details",
        "more",
        "manage",
        "acknowledge",
        "ack",
        "dashboard",
        "panel",
        "source",
        "runbook",
        "edit",
        "mute",
        "visit",
        "log",
        "login",
        "sign",
        "you",
        "здравствуйте",
        "добрый",
        "доброе",
        "привет",
        "уважаемый",
        "уважаемая",
        "уважаемые",
        "с",
        "спасибо",
        "всего",
        "перейти",
        "открыть",
        "подробнее",
        "смотрите",
    ]
)
_HEADINGS = frozenset(k for k, role in KEYS.items() if role is not Role.HOST)
_FIELD_START = re.compile(r"[ \t>*•-]*[^\W\d][^:=\n]{0,40}?(?::(?:[ \t]|$)|=)")
_COUNT_OR_DATE = re.compile(r"\W*\(?\d+\)? |[(\[]?\s*\d{1,4}[./-]|(?:mon|tue|wed|thu|fri|sat|sun)\w*,? ")
_TABLE_FIRST = ("metric", "name", "host", "server", "node", "vm", "object", "series", "device", "узел", "имя")
_PUNCT = " \t,!.:;-*>•()[]"


def _line_signs(line: str) -> bool:
    """A line `read` would do something with: a field or heading, a greeting, sign-off or link
    word among its first two, a count or a date, a table's head."""
    if (":" in line or "=" in line) and _FIELD_START.match(line) is not None:
        return True
    words = line.split(None, 2)
    if not words:
        return False
    if words[0].strip(_PUNCT) in _FIRST_WORDS or (len(words) > 1 and words[1].strip(_PUNCT) in _FIRST_WORDS):
        return True
    if line.strip(_PUNCT) in _HEADINGS or _COUNT_OR_DATE.match(line) is not None:
        return True
    return line.startswith(_TABLE_FIRST) and _TABLE_HEAD.match(line) is not None


def signals(text: str, subject: str = "") -> bool:
    """Whether `read` could find anything in this text: fields, boilerplate, a repeated subject."""
    low = text.lower()
    if _ANY_WORD.search(low) is not None:
        return True
    lines = low.split("\n")
    if any(_line_signs(line) for line in lines):
        return True
    subject_key = _norm(subject) if subject else ""
    if not subject_key or subject_key[:8] not in low:
        return False
    near = len(subject_key) + 12  # a line that repeats the subject is about as long as it
    return any(len(line) <= near and _norm(line) == subject_key for line in lines)


@dataclass(frozen=True, slots=True)
class Field:
    role: Role | None  # None: a field whose name says nothing we know
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class Reading:
    """One mail's text as the general summariser sees it."""

    fields: tuple[Field, ...]
    free: tuple[str, ...]  # the lines that are neither fields nor boilerplate, in order
    others: tuple[str, ...]  # `key: value` lines whose key says nothing we know, as written
    kept: tuple[str, ...]  # every line that is not boilerplate, in order (mail that is no alert)
    dropped: tuple[str, ...]  # the kinds of boilerplate that were there
    ignored: tuple[str, ...] = ()  # fields an alert summary leaves out (dates, addresses, ids)


_NAMED = re.compile(
    r"^[ \t]*(?:-[ \t]*)?(?P<name>[^:=\n]{1,40}?)[ \t]*[:=][ \t]*(?P<value>.*?)[ \t]*$", re.MULTILINE
)


def fields_of(text: str) -> dict[str, str]:
    """`Name: value` and `name = value` lines, first occurrence wins; names lower-cased. For the
    recognisers, which know their tool's field names."""
    found: dict[str, str] = {}
    for m in _NAMED.finditer(text):
        found.setdefault(m["name"].strip().lower(), m["value"])
    return found


# Boilerplate that is prose, which mail wraps at 72 or 76 columns: the sentence's next lines go
# with it, up to its full stop (or a blank line).
_SENTENCES = ("automatic-mail note", "tool's own note")
# An exception's line (`ConnectionError: Error 111 connecting to cache01`): free text, not a field
_EXCEPTION = re.compile(r"[A-Z][\w.]*(?:Error|Exception|Fault|Failure|Timeout|Refused)(?:\s+at\s+\S+)?:\s")
_STACK_LINE = re.compile(r'File "|Traceback |During handling|The above exception')
_WRAP_WIDTH = 55  # a line that long and not ended was wrapped (mail wraps at 72 or 76 columns)
_SENTENCE_END = re.compile(r"[.!?][)\]\"']*$")


def read(text: str, subject: str = "", links: tuple[str, ...] = ()) -> Reading:
    """`links`: the labels of the HTML part's stand-alone links (InboundMail.link_labels)."""
    reader = _Reader(_norm(subject), frozenset(label for label in links if _button(label)))
    for raw in text.split("\n"):
        if not reader.feed(raw):
            break
    return reader.reading()


class _Reader:
    """The state of one read, a line at a time."""

    def __init__(self, subject_key: str, buttons: frozenset[str] = frozenset()) -> None:
        self.subject_key = subject_key
        self.buttons = buttons  # link labels that are lines of their own: where to click
        self.fields: list[Field] = []
        self.free: list[str] = []
        self.others: list[str] = []
        self.kept: list[str] = []
        self.dropped: dict[str, None] = {}
        self.ignored: dict[str, None] = {}
        self.in_section = False
        self.pending: tuple[Role, str] | None = None  # a heading (`Summary`) whose value is the next line
        self.tentative: str | None = None  # ... taken as that value though it is a field itself
        self.table: Role | None = None  # inside a table whose rows are `host value` or `host status ...`
        self.wrapped = False  # a boilerplate sentence may go on in the next line (it was wrapped)
        self.wrapped_long = False  # ... from a line as long as wrapped lines are
        self.frame = False  # a stack frame was read: its code line follows, indented
        self.heading: str | None = None  # the free line just read: a section's heading if a rule follows
        self.levels: dict[str, None] = {}  # the log levels used as field names (`Warning:`, `Fatal:`)

    def reading(self) -> Reading:
        fields, free = self.fields, self.free
        if len(self.levels) >= 2:
            # `Warning: ...`, `Info: executing of ... failed`, `Fatal: rsync ... failed`: a log's
            # lines, not an `Info:` field that would outrank them; the worst comes first anyway
            free = [*free, *(f"{f.key.capitalize()}: {f.value}" for f in fields if f.key in _QUIET_LEVELS)]
            fields = [f for f in fields if f.key not in _QUIET_LEVELS]
        return Reading(
            tuple(fields), tuple(free), tuple(self.others), tuple(self.kept),
            tuple(self.dropped), tuple(self.ignored),
        )  # fmt: skip

    def feed(self, raw: str) -> bool:
        """Read one line; False when the rest of the mail is not worth reading."""
        line, removed = _clean_line(raw)
        self.dropped.update(dict.fromkeys(removed))
        if not line:
            self.in_section, self.pending, self.table, self.tentative = False, None, None, None
            self.wrapped, self.heading = False, None
            return True
        if self.wrapped and (self.wrapped_long or line[:1].islower()):
            # `...If you no longer wish to receive` / `such mail, you can ...`: a line as long as
            # wrapped ones are goes on below; a short one only in words that go on in lower case
            # (HTML's `Automatic alert system` is a block of its own, over the fields)
            self.wrapped = not _SENTENCE_END.search(line)
            self.wrapped_long = len(line) >= _WRAP_WIDTH
            return True
        self.wrapped = False
        if self.frame:  # the code line under a stack frame (`File "...", line 96, in f`)
            self.frame = False
            if not _STACK_LINE.match(line):
                return True
        kind = "link" if line in self.buttons else boilerplate(line)
        self.frame = kind == "stack trace" and line.startswith("File ")
        self._layout(line, kind)
        if kind == "sign-off":
            self.dropped[kind] = None
            # what follows a sign-off after the content is a name and a footer
            return not (self.kept or self.fields)
        if kind:
            self.dropped[kind] = None
            return True
        if self.tentative is not None:
            # `Summary:` over `Total number of entries: 4798` / `Added entries: 1`: a section's
            # heading over its fields, not a heading whose value is the next line
            first, self.tentative = self.tentative, None
            m, again = _FIELD.match(line), _FIELD.match(first)
            if m and again and m["value"] and _section_row(m) and _section_row(again):
                self.fields.pop()
                self.kept.pop()
                self._field(first, again)
        if self.pending is not None:
            self.fields.append(Field(self.pending[0], self.pending[1], line))
            self.kept.append(line)
            self.pending = None
            if (m := _FIELD.match(line)) is not None and m["value"]:
                self.tentative = line
            return True
        if _SECTION.match(line):
            self.in_section = True  # a label or annotation dump: its fields are read, never printed
            self.dropped["label dump"] = None
            return True
        if self._table(line):
            return True
        heading = line.rstrip(" :").lower()
        if len(heading.split()) <= 2 and role_of(heading) in (Role.DETAIL, Role.VALUE, Role.PROBLEM):
            self.pending = (role_of(heading) or Role.DETAIL, heading)
            return True
        if line.startswith("{") and line.endswith("}") and self._json(line):
            return True
        if (rest := self._labels(line)) is None:
            return True
        line = rest
        m = _FIELD.match(line) if not _EXCEPTION.match(line) else None  # `TimeoutError: ...` says what failed
        if m and m["value"] and not _URL.match(m["value"]) and len(m["key"].split()) <= 4:
            self._field(line, m)
            return True
        if m and not m["value"] and len(m["key"].split()) <= 4:
            self.dropped["section heading"] = None  # `Expression Variables :` alone says nothing
            return True
        if self.in_section:
            if raw[:1].isspace():
                return True
            if (row := _LABEL_ROW.match(line)) is not None:  # `instance db01:9100` (HTML label tables)
                key = row["key"].lower()
                if key not in IGNORED:
                    self.fields.append(Field(role_of(key), key, row["value"]))
                return True
        if self.subject_key and _norm(line) == self.subject_key:
            self.dropped["subject repeated"] = None
            return True
        self.free.append(line)
        self.kept.append(line)
        # a heading, if a rule comes next (a table's head row is not: its rows follow)
        self.heading = line if "|" not in line and len(line.split()) <= 8 else None
        return True

    def _layout(self, line: str, kind: str) -> None:
        """What a boilerplate line says of the lines around it: a rule under a free line makes
        that a section's heading; prose boilerplate not ended goes on in the next lines."""
        heading, self.heading = self.heading, None
        if kind == "banner" and heading is not None and self.free[-1:] == [heading] == self.kept[-1:]:
            # `Security Events for kernel` over `=-=-=-=-`: a report's section heading
            self.free.pop()
            self.kept.pop()
            self.dropped["section heading"] = None
        if kind in _SENTENCES and not _SENTENCE_END.search(line):
            self.wrapped = True  # the rest of its sentence is on the lines below
            self.wrapped_long = len(line) >= _WRAP_WIDTH

    def _table(self, line: str) -> bool:
        """A table's head or one of its rows (True: the line is read); any other line ends it."""
        if (head := _TABLE_HEAD.match(line)) is not None:
            second = head["second"].lower()
            self.table = Role.VALUE if second in ("value", "значение") else Role.STATE
            self.dropped["table head"] = None
            return True
        row = _TABLE_ROW.match(line) if self.table is not None else None
        if row is not None and (
            re.match(r"[-+]?\d", row["second"])
            if self.table is Role.VALUE
            else STATE_WORD.fullmatch(row["second"])
        ):
            # a row names an instance; its value or status column is what the phone needs of it
            self.fields.append(Field(Role.HOST, "host", row["first"]))
            self.fields.append(Field(Role.VALUE, "value", row["second"]))
            trouble = _TROUBLE_WORD.search(line, row.end())
            if trouble is not None:  # `db01 Failed 22:00:41 ... Error: Failed to create VM snapshot.`
                self.fields.append(Field(Role.DETAIL, "message", line[trouble.start() :]))
            self.kept.append(line)
            return True
        self.table = None
        return False

    def _json(self, line: str) -> bool:
        """A JSON object dumped into the mail (Kapacitor's details, a webhook's payload): its
        leaves read as fields, its text never printed. False when the line is no JSON object."""
        try:
            data = json.loads(line)
        except ValueError:
            return False
        if not isinstance(data, dict):
            return False
        self.dropped["json dump"] = None
        for key, value in _leaves(data):
            role = role_of(key) or (Role.VALUE if _PERCENT_KEY.search(key) else None)
            if role is not None and key.lower() not in IGNORED:
                self.fields.append(Field(role, key.lower(), value))
        return True

    def _labels(self, line: str) -> str | None:
        """Label dumps in a line read as fields: what is left of the line, None when nothing."""
        for inner in _MAP.finditer(line):  # Go's map[instance:db01 job:node] printed as is
            self.dropped["label dump"] = None
            for pair in inner["inner"].split():
                key, _, value = pair.partition(":")
                if value:
                    self.fields.append(Field(role_of(key), key.lower(), value))
        if _MAP.search(line):
            line = _MAP.sub("", line).strip(" =:")
            if not line or _FIELD.match(line):
                return None
        pairs = _PAIRS.findall(line)
        if len(pairs) >= 2 and len(_PAIRS.sub("", line).split()) <= 2:  # a label list on one line
            self.dropped["label dump"] = None
            self.fields.extend(Field(role_of(k), k.lower(), v.strip('"')) for k, v in pairs)
            return None
        return line

    def _field(self, line: str, m: re.Match[str]) -> None:
        """A `key: value` line."""
        key = " ".join(re.sub(r"\(.*?\)", "", m["key"].lower()).split())  # `Time (Europe/Berlin)`
        if key in _LEVELS:
            self.levels[key] = None
        if key in IGNORED or _DATE.match(m["value"]):
            self.ignored[key] = None
            self.kept.append(line)  # mail that is no alert keeps its dates (`Due: 25.11.2026`)
            return
        role = role_of(key)
        self.kept.append(line)
        value = m["value"]
        if value.startswith("[") and value.endswith("]") and " = " in value:
            # `Dimensions: [InstanceId = i-0a1b..., ...]`: the pairs are the fields
            for pair in re.split(r"\]\s*\[|,", value[1:-1]):  # `[a = 1, b = 2]`, `[a = 1] [b = 2]`
                name, _, said = (s.strip(" []") for s in pair.partition(" = "))
                if said and (inner_role := role_of(name)) is not None:
                    self.fields.append(Field(inner_role, name.lower(), said))
        if role is None:
            # A field we know nothing of may still say what happened: with a word of trouble
            # for a name (`WARNING: Out of memory killer ...`) it is as good as free text.
            (self.free if troubled(m["key"]) else self.others).append(line)
            return
        if role is Role.STATE and len(m["value"].split()) > 3:
            role = Role.DETAIL  # `Status: Black cartridge very low (5%)` says what, not a state
        if role in (Role.PROBLEM, Role.STATE) and value.lower() in _BOOLEAN:
            # `Alert: true`: says that it is an alert, not which; a true one is the state
            if value.lower() in _BOOLEAN[:2]:
                self.fields.append(Field(Role.STATE, key, m["key"].strip()))
            return
        if role is Role.PROBLEM and re.search(r"[.!?]\s+\S", m["value"]):
            role = Role.DETAIL  # `Client check: 1 host checked in 2.220 seconds. 1 problem found.`
        if role is Role.STATE and not re.search(r"[^\W\d]", m["value"]):
            self.ignored[key] = None  # `Priority: 10`
            return
        if role is Role.DETAIL and (point := _DATAPOINT.search(value)) is not None:
            self.fields.append(
                Field(Role.VALUE, "datapoint", point[1])
            )  # CloudWatch's `datapoints [96.41 (...)]`
        if role is Role.STATE and "->" in value:
            value = value.rsplit("->", 1)[1].strip()  # `State Change: OK -> ALARM`: the new one
        self.fields.append(Field(role, key, value))


# Log levels, as a log's lines begin (`Info: ...`, `Fatal: ...`); the quiet ones are also the
# name of a field (`Info: PING CRITICAL ...`) unless louder ones say it is a log
_QUIET_LEVELS = frozenset(("debug", "info", "notice"))
_LEVELS = _QUIET_LEVELS | {"warning", "warn", "error", "fatal", "critical", "crit", "emerg", "alert"}
_BOOLEAN = ("true", "yes", "false", "no")
_PERCENT_KEY = re.compile(r"(?:percent|pct|_pc)$", re.IGNORECASE)  # `used_percent`
# A JSON object's parts that describe the tool itself (`ServerInfo: {Hostname: kapacitor01}`)
_SELF_KEYS = re.compile(r"(?:server|agent|sender|source|build)?(?:info|meta(?:data)?)$", re.IGNORECASE)
_JSON_LEAVES = 200  # a dump's leaves read at most


def _leaves(data: dict[str, object]) -> list[tuple[str, str]]:
    """(key, value) of a JSON object's scalar leaves, depth first, without its self-description."""
    found: list[tuple[str, str]] = []
    stack: list[dict[str, object]] = [data]
    while stack and len(found) < _JSON_LEAVES:
        node = stack.pop(0)
        for key, value in node.items():
            if isinstance(value, dict):
                if not _SELF_KEYS.search(key):
                    stack.append(value)
            elif isinstance(value, str | int | float) and not isinstance(value, bool) and str(value).strip():
                found.append((key, str(value)))
    return found


_DATAPOINT = re.compile(r"\bdatapoints? \[(-?\d+(?:\.\d{1,2})?)\d*\b")
_MENTION = re.compile(r"(?<!\S)@\w[\w.@-]*")  # `@slack-payments-oncall`: a notification handle
_HEADING_MARK = re.compile(r"^#{1,6}\s+")  # a Markdown heading's `# `


def _button(label: str) -> bool:
    """A link of its own that says where to click (`CrowdSec CTI`, `Open incident`), not an
    alert's title or host made a link (`db01 is DOWN`, `web-02`): a few words, no digit, no
    trouble or state."""
    return (
        len(label.split()) <= 4
        and not re.search(r"\d", label)
        and not troubled(label)
        and not STATE_WORD.search(label)
    )


def _section_row(m: re.Match[str]) -> bool:
    """A report's `Total number of entries: 4798`: a short name of nothing we know."""
    return len(m["key"].split()) <= 4 and role_of(m["key"]) is None


def _clean_line(line: str) -> tuple[str, tuple[str, ...]]:
    """The line without markup, handles, links and pointers inside it, and the kinds of what was
    taken out: a mail whose only boilerplate sits inside a line (`... reported on SQL01. Check
    OMSA for further details - https://SQL01:1311.`) still had some."""
    removed: tuple[str, ...] = ()
    line = html.unescape(_TAG.sub(" ", line)) if "<" in line or "&" in line else line
    if "@" in line:
        line = _MENTION.sub("", line)
    if line.startswith("#"):
        line = _HEADING_MARK.sub("", line)
    if _URL.search(line) and boilerplate(line) != "link":
        line, removed = _URL.sub("", line), ("link",)
    if "|" in line:
        line = PERFDATA.sub("", line)
    if " for " in line and not POINTER.match(line):  # a whole line of it is boilerplate()'s
        cut = POINTER.sub("", line).rstrip(" -:")
        if cut != line.rstrip(" -:"):
            line, removed = cut, (*removed, "tool's own note")
    return " ".join(line.split()), removed


def _norm(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))
