"""Recognisers the operator writes in the config (`summaries:`), for mail no tool's format fits:
the in-house application's alerts. A rule's patterns name the pieces with groups; its template,
if any, says the order and the words between them."""

from __future__ import annotations

import string
from collections.abc import Sequence

from relay.config.schema import SummaryRule
from relay.model import AlertSummary, InboundMail, Piece, Role
from relay.summaries.fit import compose
from relay.summaries.general import identity
from relay.summaries.make import Recogniser, folded

_ROLES = {
    "host": Role.HOST,
    "state": Role.STATE,
    "problem": Role.PROBLEM,
    "value": Role.VALUE,
    "detail": Role.DETAIL,
}
_DEFAULT = "{state} {host} {problem}: {value}: {detail}"


def recognisers(rules: Sequence[SummaryRule]) -> tuple[Recogniser, ...]:
    return tuple(_recogniser(rule) for rule in rules)


def _recogniser(rule: SummaryRule) -> Recogniser:
    def recognise(mail: InboundMail) -> AlertSummary | None:
        found: dict[str, str] = {}
        checks = (
            (rule.sender, f"{mail.mail_from}\n{mail.header_from}"),
            (rule.subject, mail.subject),
            (rule.body, mail.text),
        )
        for pattern, text in checks:
            if pattern is None:
                continue
            m = pattern.search(text)
            if m is None:
                return None
            for name, value in m.groupdict().items():
                if value and name not in found:
                    found[name] = " ".join(value.split())
        pieces = _pieces(rule.template or _DEFAULT, found)
        state = found.get("state", "")
        recovery = bool(rule.recovery and state and rule.recovery.search(state))
        host = found.get("host", "")
        return AlertSummary(
            f"config:{rule.name}", compose(folded(pieces)), host, identity(f"config:{rule.name}", host,
            found.get("problem", "")), recovery, ("what the rule's groups leave out",),
        )  # fmt: skip

    return recognise


def _pieces(template: str, found: dict[str, str]) -> list[Piece]:
    """`{state} {host} {problem}: {value}` -> pieces whose separators are the template's words:
    words before the first group lead its text, words after the last end it."""
    pieces: list[Piece] = []
    tail = ""
    for literal, name, _spec, _conv in string.Formatter().parse(template):
        if name is None:
            tail = literal
            continue
        text = found.get(name, "")
        if not pieces and text:
            text = literal.lstrip() + text
        pieces.append(Piece(_ROLES[name], text, literal or " "))
    if tail.strip() and pieces:
        last = pieces[-1]
        pieces[-1] = Piece(last.role, last.text + tail.rstrip(), last.sep)
    return pieces
