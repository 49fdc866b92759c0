"""Alert summaries: what an on-call engineer needs of a monitoring mail, in one SMS part.

`summarise` tries the configured recognisers, then the built-in ones (builtin.py), then the
general summariser (general.py); forwarded mail is summarised from the forwarded part. A
summary that would lose a host the mail names, or that says no less than the mail, is not
used: never worse than the raw text. `fit` (fit.py) shrinks a summary by priority.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from relay.formatters import segments
from relay.model import AlertSummary, InboundMail, Piece, Role
from relay.parsers import cleanup
from relay.summaries import general
from relay.summaries.builtin import RECOGNISERS
from relay.summaries.make import Recogniser
from relay.summaries.reading import Reading, read, signals
from relay.summaries.vocabulary import STATE_WORD

__all__ = ["RECOGNISERS", "Recogniser", "describe", "fingerprint", "hosts_named", "summarise"]

_FORWARD = re.compile(
    r"^[ \t>]*(?:-{2,}\s*(?:Forwarded message|Original Message|Пересылаемое сообщение|Исходное сообщение|"
    r"Начало переадресованного сообщения)\s*-{2,}|Begin forwarded message:)[ \t]*$",
    re.MULTILINE | re.IGNORECASE,
)
_OUTLOOK = re.compile(r"^[ \t]*(?:From|От):[^\n]+\n(?:[ \t]*(?:Sent|Date|Отправлено|Дата):[^\n]+\n)", re.M)
_HEADER = re.compile(r"^[ \t>]*(?P<name>From|Sent|Date|To|Cc|Subject|От|Отправлено|Дата|Кому|Копия|Тема)\s*:\s*(?P<value>.*)$",
                     re.IGNORECASE)  # fmt: skip
_SUBJECT_HEADERS = ("subject", "тема")


def summarise(mail: InboundMail, custom: Sequence[Recogniser] = ()) -> AlertSummary | None:
    """The first recogniser's summary that keeps the mail's hosts, else the general one."""
    forwarded = _unwrap(mail)
    if forwarded is not None:
        inner, note = forwarded
        found = summarise(inner, custom)
        if found is None:
            return None
        pieces = (*found.pieces, Piece(Role.NOTE, note, " / ")) if note else found.pieces
        return AlertSummary(found.recogniser, pieces, found.host, found.identity, found.recovery,
                            ("forwarding", *found.dropped), found.alert)  # fmt: skip
    full = f"{mail.subject}\n{mail.text}"
    reading = (
        read(mail.text, mail.subject, mail.link_labels)
        if mail.link_labels or signals(mail.text, mail.subject)
        else None
    )
    hosts = _hosts(reading) if reading is not None else []
    for recogniser in (*custom, *RECOGNISERS):
        summary = recogniser(mail)
        if summary is not None and all(h.lower() in summary.text.lower() for h in hosts):
            return _no_longer(summary, full)
    if reading is None and not (
        STATE_WORD.search(mail.subject)
        or general.reports_trouble(mail.subject, mail.text.lstrip().split("\n", 1)[:1])
    ):
        return None  # nothing to read, no state or trouble named: the plain path, at the cost of two searches
    summary = general.summarise(mail.subject, mail.text, mail.header_from, reading)
    if (
        summary is None
        or not summary.text
        or (not summary.dropped and segments.count(segments.fold_to_gsm(full)).parts <= 1)
    ):
        return None  # nothing to drop and it fits: the sender's own words are the best summary
    return _no_longer(summary, full)


def _no_longer(summary: AlertSummary, full: str) -> AlertSummary | None:
    """Never longer than the mail: the detail cut by what it adds (separators between pieces
    can make a summary of a short mail a little longer), else without it, else not at all."""
    excess = len(summary.text) - len(full)
    if excess <= 0:
        return summary
    pieces = list(summary.pieces)
    at = next((n for n in range(len(pieces) - 1, -1, -1) if pieces[n].role in (Role.DETAIL, Role.NOTE)), None)
    if at is not None and len(pieces[at].text) > excess + 15:
        cut = pieces[at].text[: len(pieces[at].text) - excess - 3].rstrip() + "..."
        pieces[at] = Piece(pieces[at].role, cut, pieces[at].sep)
    else:
        pieces = [p for p in pieces if p.role not in (Role.DETAIL, Role.NOTE)]
    shorter = AlertSummary(summary.recogniser, tuple(pieces), summary.host, summary.identity, summary.recovery,
                           summary.dropped, summary.alert)  # fmt: skip
    return shorter if len(shorter.text) <= len(full) else None


def hosts_named(mail: InboundMail) -> list[str]:
    """The hosts the mail's own fields name: a summary that drops one is worse than the raw text."""
    return _hosts(read(mail.text, mail.subject, mail.link_labels))


def _hosts(reading: Reading) -> list[str]:
    return list(dict.fromkeys(general.host_of(f.value) for f in reading.fields if f.role is Role.HOST))[:20]


def _unwrap(mail: InboundMail) -> tuple[InboundMail, str] | None:
    """A forwarded mail's own subject and text, and what the forwarder wrote on top."""
    body = mail.body or mail.text
    low = body.lower()
    if "--" not in body and "forwarded" not in low and "from:" not in low and "от:" not in low:
        return None  # the common case, without the markers' searches
    m = _FORWARD.search(body) or _OUTLOOK.search(body)
    if m is None:
        return None
    note = cleanup.clean(body[: m.start()])
    rest = body[m.end() if _FORWARD.match(m.group(0)) else m.start() :].lstrip("\n").split("\n")
    subject = ""
    n = 0
    for n, line in enumerate(rest):  # noqa: B007 - the header block ends at its first other line
        h = _HEADER.match(line)
        if not h:
            break
        if h["name"].lower() in _SUBJECT_HEADERS:
            subject = h["value"].strip()
    else:
        n = len(rest)
    text = cleanup.clean("\n".join(line.lstrip("> ") if line.startswith(">") else line for line in rest[n:]))
    if not text and not subject:
        return None
    inner = InboundMail(mail.mail_from, mail.rcpt_tos, subject or general.strip_prefix(mail.subject), text,
                        mail.body_source, text, mail.header_from)  # fmt: skip
    return inner, note


def describe(summary: AlertSummary, sent: str, shortened: tuple[str, ...] = ()) -> str:
    """For `render` and the log: which recogniser took the mail, each piece and what became of
    it in the text sent, what the summary left out and what fitting one part shortened."""
    kind = ("configured" if summary.recogniser.startswith("config:")
            else "general" if summary.recogniser == "general" else "built-in")  # fmt: skip
    low = sent.lower()
    pieces = []
    for p in summary.pieces:
        fate = "kept" if p.text.lower() in low else "shortened" if p.text[:12].lower() in low else "dropped"
        pieces.append(f"{p.role.value}={p.text[:40]!r} {fate}")
    out = f"{summary.recogniser} summary ({kind}): " + "; ".join(pieces)
    if summary.dropped:
        out += f"; left out of the mail: {', '.join(summary.dropped)}"
    if shortened:
        out += f"; to fit one part: {', '.join(shortened)}"
    return out


def fingerprint(text: str) -> str:
    """An alert's identity when no recogniser knows it: the text with what changes between
    repeats masked (numbers, times, dates, addresses, long hex ids), words kept whole, so
    `web01` and `web02` stay apart while `load 5.2` and `load 7.9` become one."""
    masked = re.sub(r"\b[0-9a-f]{8,}(?:-[0-9a-f]{4,})*\b", "#", text.lower())  # ids, uuids, hashes
    masked = re.sub(r"(?<![\w.])[-+]?\d+(?:[.,:/-]\d+)*(?![\w])", "#", masked)  # values, times, dates, IPs
    return " ".join(masked.split())
