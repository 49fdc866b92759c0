"""A provider command line (single or `::list` form) -> its fields, validated.

The inverse of formatters/command.py: passthrough mode relays legacy mails that already hold a
command line, and the tests parse every produced mail back to prove no field moved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from relay import fields
from relay.errors import ContentError
from relay.model import Entry, Options
from relay.parsers.cleanup import normalize, text_block


@dataclass(frozen=True, slots=True)
class Command:
    login: str
    password: str
    request_id: str
    options: Options
    entries: tuple[Entry, ...]
    list_form: bool


def parse(body: str) -> Command:
    """Parse a command mail's text; raises ContentError naming the first bad field."""
    block = text_block(body)
    text = normalize(block if block is not None else body).strip("\n ")
    first, _, rest = text.partition("\n")
    parts = first.split(":", 6)
    if len(parts) < 7:
        raise ContentError(
            "not a provider command line: expected "
            "<login>:<psw>:<id>:<time>,<tz>:<translit>,<format>,<sender>,<test>:<phones>:<mes>"
        )
    login, password, request_id, timetz, opts, phones, mes = parts
    time, _, tz = timetz.partition(",")
    translit, fmt, sender, test = [*opts.split(",", 3), "", "", ""][:4]
    try:
        options = Options(
            time=fields.time(time) if time else "",
            tz=fields.tz(tz) if tz else "",
            translit=_digit(translit, "translit"),
            format=_digit(fmt, "format"),
            sender=fields.sender(sender) if sender else "",
            test=_digit(test, "test"),
        )
        fields.login(login)
        if request_id:
            fields.request_id(request_id)
        if phones:
            entries: tuple[Entry, ...] = (Entry(_phone_list(phones), mes + ("\n" + rest if rest else "")),)
        else:
            entries = tuple(_entry(line) for line in [mes, *rest.split("\n")] if line.strip())
    except ValueError as exc:
        raise ContentError(f"bad provider command line: {exc}") from None
    if not entries:
        raise ContentError("bad provider command line: no phones and no list")
    return Command(login, password, request_id, options, entries, list_form=not phones)


def _entry(line: str) -> Entry:
    m = re.match(r"([^:;]*)[:;](.*)", line, re.DOTALL)
    if not m:
        raise ValueError(f"list line {line[:40]!r} is not <phones>:<mes>")
    return Entry(_phone_list(m.group(1)), m.group(2).replace("\\n", "\n"))


def _phone_list(raw: str) -> tuple[str, ...]:
    return fields.phones([p for p in re.split(r"[,;]", raw) if p.strip()], groups=True)


def _digit(value: str, name: str) -> str:
    if value and not (value.isascii() and value.isdigit()):
        raise ValueError(f"{name} {value!r} is not a number")
    return value
