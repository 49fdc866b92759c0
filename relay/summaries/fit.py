"""A summary's pieces joined, and shrunk by priority until the text fits one SMS part.

What goes first is what an on-call engineer misses least: a forwarder's note, then the detail
(check output, description), then spaces before units, then the threshold expression of a
trigger name (`(over 90% for 5m)`), then the domains and ports of host names, then the list of
grouped instances (`(+N more)`), then the tail of the problem name. The state, the host and the
key value are the last to go: only the final cut of the whole text can reach them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from relay.model import Piece, Role, join

Fits = Callable[[str], bool]

# A measurement: a number with a unit, or a percentage. The value an engineer acts on.
MEASURE = re.compile(
    r"(?<![\w.])[-+]?\d+(?:[.,]\d+)?\s?(?:%|[KMGTP]i?B\b|[KMGT]B/s|ms\b|s\b|°C|C\b|V\b|W\b|"
    r"Percent\b|Minutes\b|minutes\b|seconds\b|sec\b|min\b|h\b|hours\b|days\b|sectors\b|"
    r"connections\b|MB\b|GB\b|KB\b|ГБ|МБ|мс|сек|мин)"
)
_UNIT_SPACE = re.compile(r"(\d)\s+(%|[KMGTP]i?B\b|ms\b|°C|ГБ|МБ|мс)")
_UNIT_WORDS = (
    (re.compile(r"(\d)\s*Percent\b", re.I), r"\1%"),
    (re.compile(r"(\d)\s*(?:Minutes|minutes|mins?)\b"), r"\1min"),
    (re.compile(r"(\d)\s*(?:seconds|secs?)\b"), r"\1s"),
    (re.compile(r"(\d)\s*hours\b"), r"\1h"),
)
# `(over 90% for 5m)`, `(> 80%)`, `(больше 90% за 5м)`: how the trigger is set, not what happened.
_THRESHOLD = re.compile(
    r"\s*\((?=[^()]*(?:\d|[<>≥≤]))[^()]*(?:over|above|below|under|more than|less than|exceed|for \d|"
    r"больше|меньше|выше|ниже|превыш|[<>≥≤]=?)[^()]*\)",
    re.IGNORECASE,
)
_PORT = re.compile(r"(?<=[\w\]]):\d{2,5}\b")
_DOMAIN = re.compile(r"\b([A-Za-z0-9][\w-]*)(?:\.[A-Za-z0-9-]+){1,5}\.[A-Za-z]{2,}\b")
_MORE = re.compile(r" \(\+\d+ more\)$")


def render(pieces: Sequence[Piece]) -> str:
    return join(list(pieces))


def compose(pieces: Sequence[Piece]) -> tuple[Piece, ...]:
    """The pieces without empty ones, and a detail without a lead-in (`DISK CRITICAL - `) made
    only of words the head has said already."""
    kept = [Piece(p.role, p.text.strip(), p.sep) for p in pieces if p.text.strip()]
    head = " ".join(p.text for p in kept if p.role not in (Role.DETAIL, Role.NOTE))
    out = [
        Piece(p.role, _unsaid(_strip_said(p.text, head), head), p.sep) if p.role is Role.DETAIL else p
        for p in kept
    ]
    return tuple(p for p in out if p.text)


def _unsaid(detail: str, head: str) -> str:
    """The detail without a line or sentence whose every word the head has said already
    (`fileserver01 UPS rack1-ups Power Failure !!!` after `UPS rack1-ups on fileserver01: Power Failure`)."""
    said = {w.lower() for w in re.findall(r"\w+", head)}
    parts = re.split(r"( / |; )", detail)
    kept: list[str] = []
    for n in range(0, len(parts), 2):
        words = re.findall(r"\w+", parts[n])
        if words and all(w.lower() in said for w in words):
            continue
        if kept:
            kept.append(parts[n - 1])
        kept.append(parts[n])
    return "".join(kept)


def _contains(text: str, part: str) -> bool:
    part = part.strip()
    if not part:
        return True
    return re.search(rf"(?<!\w){re.escape(part)}(?!\w)", text, re.IGNORECASE) is not None


def _strip_said(detail: str, head: str) -> str:
    """`DISK CRITICAL - free space ...` after a head that names disk and CRITICAL: the lead-in
    before the first ` - ` or `: ` goes when every word of it is in the head already."""
    m = re.match(r"^(?P<lead>[^:\n]{1,60}?)(?: - |: )(?P<rest>.+)$", detail, re.DOTALL)
    if not m:
        return "" if _contains(head, detail) else detail
    words = re.findall(r"\w+", m["lead"])
    if words and all(_contains(head, w) for w in words):
        return m["rest"]
    return detail


def key_value(pieces: Sequence[Piece]) -> str:
    """The summary's key value: its VALUE piece, or the first measurement in the detail."""
    for p in pieces:
        if p.role is Role.VALUE:
            return p.text
    detail = " ".join(p.text for p in pieces if p.role is Role.DETAIL)
    # of the detail's first line (the worst, or the first message): a later line's timing
    # (`Server check took 0.283 seconds`) is not what the alert is about
    detail = re.split(r" / ", detail, maxsplit=1)[0]
    found = [m.group(0) for m in MEASURE.finditer(detail)]
    # a percentage first: what a threshold is set on (`Used: 14.83 GB (95.61%)`)
    return next((v for v in found if v.endswith("%")), found[0] if found else "")


def fit(pieces: Sequence[Piece], fits: Fits, marker: str = "...") -> tuple[str, tuple[str, ...]]:
    """The longest text the pieces can give that `fits`, and what was shortened on the way."""
    current = list(pieces)
    done: list[str] = []
    for name, step in _LADDER:
        if fits(render(current)):
            break
        shorter = step(current, fits, marker)
        if render(shorter) != render(current):
            done.append(name)
            current = shorter
    return render(current), tuple(done)


def _drop_notes(pieces: list[Piece], fits: Fits, marker: str) -> list[Piece]:
    return [p for p in pieces if p.role is not Role.NOTE]


def _cut_detail(pieces: list[Piece], fits: Fits, marker: str) -> list[Piece]:
    value = key_value(pieces)
    at = next((n for n, p in enumerate(pieces) if p.role is Role.DETAIL), None)
    if at is not None and value and not any(p.role is Role.VALUE for p in pieces):
        # The key value stands apart, hidden while the detail says it: a cut cannot lose it.
        detail = pieces[at]
        pieces = [*pieces[:at], Piece(Role.VALUE, value, detail.sep), Piece(Role.DETAIL, detail.text, "; "),
                  *pieces[at + 1 :]]  # fmt: skip
    return _cut_role(pieces, Role.DETAIL, fits, marker, minimum=12)


def _units(pieces: list[Piece], fits: Fits, marker: str) -> list[Piece]:
    def tighten(text: str) -> str:
        text = _UNIT_SPACE.sub(r"\1\2", text)
        for pattern, repl in _UNIT_WORDS:
            text = pattern.sub(repl, text)
        return text

    return [Piece(p.role, tighten(p.text), p.sep) for p in pieces]


def _thresholds(pieces: list[Piece], fits: Fits, marker: str) -> list[Piece]:
    return [Piece(p.role, _THRESHOLD.sub("", p.text), p.sep) if p.role is Role.PROBLEM else p for p in pieces]


def _short_hosts(pieces: list[Piece], fits: Fits, marker: str) -> list[Piece]:
    def short(text: str) -> str:
        return _DOMAIN.sub(r"\1", _PORT.sub("", text))

    return [Piece(p.role, short(p.text), p.sep) if p.role in (Role.HOST, Role.VALUE) else p for p in pieces]


def _fewer_instances(pieces: list[Piece], fits: Fits, marker: str) -> list[Piece]:
    """`db01 96.1%, db02 93.0%, db03 91%` -> `db01 96.1% (+2 more)`: as many as fit."""
    at = next((n for n, p in enumerate(pieces) if p.role is Role.VALUE and ", " in p.text), None)
    if at is None:
        return pieces
    items = _MORE.sub("", pieces[at].text).split(", ")
    total = len(items) + _more_count(pieces[at].text)
    for keep in range(len(items) - 1, 0, -1):
        text = ", ".join(items[:keep]) + f" (+{total - keep} more)"
        trial = [*pieces[:at], Piece(Role.VALUE, text, pieces[at].sep), *pieces[at + 1 :]]
        if fits(render(trial)) or keep == 1:
            return trial
    return pieces


def _more_count(text: str) -> int:
    m = re.search(r"\(\+(\d+) more\)$", text)
    return int(m[1]) if m else 0


# Words a problem name can lose and still say the same on a phone that shows it is an alert:
# `Alert RECOVERED for CRITICAL status on db01 / CPU Load` -> `RECOVERED for CRITICAL db01 / CPU Load`
_FILLER = re.compile(
    r"(?<!\S)(?:alert|alarm|notification|event|status|state|the|an?|is|are|has been|have been|was|on|of|at|"
    r"in|with|по|на|для|в)(?!\S)\s*",
    re.IGNORECASE,
)


def _filler(pieces: list[Piece], fits: Fits, marker: str) -> list[Piece]:
    def lean(text: str) -> str:
        kept = _FILLER.sub("", text).strip()
        return kept if len(kept.split()) >= 2 else text

    return [Piece(p.role, lean(p.text), p.sep) if p.role is Role.PROBLEM else p for p in pieces]


def _cut_problem(pieces: list[Piece], fits: Fits, marker: str) -> list[Piece]:
    """The problem's tail cut; of two problem pieces (the subject and a `Module:` field), the
    second goes whole before the first is cut: the subject names the problem, and what must not
    go is the value after them (`... on сервер-1с / CPU Load: 23`, not `... CPU Load CPU...`)."""
    while sum(p.role is Role.PROBLEM for p in pieces) > 1:
        last = max(n for n, p in enumerate(pieces) if p.role is Role.PROBLEM)
        without = [p for n, p in enumerate(pieces) if n != last]
        lead = " ".join(pieces[last].text.split()[:2])
        if not any(p.role is Role.PROBLEM and _contains(p.text, lead) for p in without):
            # the field names what the subject does not: its cut head says more than nothing
            cut = _cut_role(pieces, Role.PROBLEM, fits, marker, minimum=8)
            if fits(render(cut)):
                return cut
        pieces = without
        if fits(render(pieces)):
            return pieces
    return _cut_role(pieces, Role.PROBLEM, fits, marker, minimum=8, drop=False)


def _cut_role(
    pieces: list[Piece], role: Role, fits: Fits, marker: str, *, minimum: int, drop: bool = True
) -> list[Piece]:
    """The longest word-boundary cut of the last piece of `role` that fits; gone if none does."""
    at = next((n for n in range(len(pieces) - 1, -1, -1) if pieces[n].role is role), None)
    if at is None:
        return pieces
    text = pieces[at].text

    def with_text(t: str) -> list[Piece]:
        return [*pieces[:at], Piece(role, t, pieces[at].sep), *pieces[at + 1 :]]

    lo, hi = 0, len(text)
    while lo < hi:  # the longest prefix that fits with the marker
        mid = (lo + hi + 1) // 2
        if fits(render(with_text(text[:mid].rstrip() + marker))):
            lo = mid
        else:
            hi = mid - 1
    prefix = text[:lo]
    space = prefix.rfind(" ")
    if space >= lo * 0.6:
        prefix = prefix[:space]
    prefix = prefix.rstrip(" ,;:-/")
    if len(prefix) >= minimum:
        return with_text(prefix + marker)
    return [p for n, p in enumerate(pieces) if n != at] if drop else pieces


_LADDER: tuple[tuple[str, Callable[[list[Piece], Fits, str], list[Piece]]], ...] = (
    ("forwarder's note", _drop_notes),
    ("detail", _cut_detail),
    ("spaces before units", _units),
    ("threshold expression", _thresholds),
    ("host domains and ports", _short_hosts),
    ("grouped instances", _fewer_instances),
    ("filler words", _filler),
    ("problem name", _cut_problem),
)
