"""`summaries:` -> SummaryRule: the operator's own alert formats, checked like the rest of the config."""

from __future__ import annotations

import re
import string

from relay.config.reader import Reader
from relay.config.schema import SUMMARY_GROUPS, SummaryRule

_PATTERNS = ("sender", "subject", "body")


def read_summaries(top: Reader) -> tuple[SummaryRule, ...]:
    rules: list[SummaryRule] = []
    for index, (item, path, line) in enumerate(top.items("summaries")):
        r = Reader(top.problems, item, path, line)
        rule = _rule(r, index)
        r.finish()
        if rule is not None and any(rule.name == other.name for other in rules):
            r.problem("name", f"another summary rule is named {rule.name!r} already")
        elif rule is not None:
            rules.append(rule)
    return tuple(rules)


def _rule(r: Reader, index: int) -> SummaryRule | None:
    name = r.value("name", str, f"summary{index + 1}")
    match = r.child("match")
    patterns = {key: _pattern(match, key, re.MULTILINE if key == "body" else 0) for key in _PATTERNS}
    match.finish()
    template = r.value("template", str, "") or None
    recovery = _pattern(r, "recovery", 0)
    if not any(patterns.values()):
        r.problem("match", "needs at least one of sender, subject, body")
        return None
    groups = {g for p in patterns.values() if p is not None for g in p.groupindex}
    unknown = sorted(groups - SUMMARY_GROUPS)
    if unknown:
        r.problem(
            "match", f"unknown group(s) {', '.join(unknown)}: name them {', '.join(sorted(SUMMARY_GROUPS))}"
        )
    if not groups & {"host", "problem"}:
        r.problem("match", "no (?P<host>...) or (?P<problem>...) group: the summary would name nothing")
    if template is not None:
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
        except ValueError as exc:
            r.problem("template", f"not a template: {exc}")
        else:
            bad = sorted(fields - groups)
            if bad:
                r.problem("template", f"{{{bad[0]}}} is not a group of this rule's patterns")
    return SummaryRule(name, patterns["sender"], patterns["subject"], patterns["body"], template, recovery)


def _pattern(r: Reader, key: str, flags: int) -> re.Pattern[str] | None:
    value = r.value(key, str, "")
    if not value:
        return None
    try:
        return re.compile(value, re.IGNORECASE | flags)
    except re.error as exc:
        r.problem(key, f"bad regular expression: {exc}")
        return None
