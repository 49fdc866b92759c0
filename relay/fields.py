"""Validators for the provider's command-line fields; each returns the canonical value or raises.

They are the single definition of what may stand in a field, used by the config loader, the
router (phones taken from a recipient address), the formatter and the command-line parser.
Patterns are ASCII-only on purpose: `\\d` would also accept Arabic-Indic or fullwidth digits.
"""

from __future__ import annotations

import re

PHONE = re.compile(r"\+?[1-9][0-9]{6,14}")
GROUP = re.compile(r"G[0-9]{1,10}")
SENDER_NAME = re.compile(r"[A-Za-z0-9 .\-_!&'()+/]{1,11}")
SENDER_DIGITS = re.compile(r"[0-9]{1,15}")
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,40}")
TIME = re.compile(
    r"0"  # now
    r"|[0-9]{10}"  # DDMMYYhhmm
    r"|[0-9]{2}\.[0-9]{2}\.[0-9]{2} [0-9]{2}\.[0-9]{2}"  # DD.MM.YY hh.mm (no colon: it is a separator)
    r"|(?P<h1>[0-9]{1,2})-(?P<h2>[0-9]{1,2})"  # h1-h2 hour window
    r"|0[0-9]{9,11}"  # 0ts: unix timestamp
    r"|\+[0-9]{1,6}"  # +m: minutes from now
)
TZ = re.compile(r"[+-]?[0-9]{1,2}")
LOGIN = re.compile(r"[A-Za-z0-9._@+-]{0,64}")
MAX_PHONES = 100
# Characters that would end or shift a field of the command line, or start a new line.
FIELD_BREAKERS = frozenset(":,;\r\n\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def phone(raw: str, *, groups: bool = False) -> str:
    """One phone number in international format (`+` kept), or `G<n>` when groups are allowed.

    Spaces, dashes, dots and parentheses are dropped, as people write numbers that way.
    """
    value = re.sub(r"[ \t\-.()]", "", raw)
    if PHONE.fullmatch(value) or (groups and GROUP.fullmatch(value)):
        return value
    if value.startswith(("00", "+0")):
        raise ValueError(f"{raw!r} is not a phone number: write it in international format, without 00")
    kinds = "an international phone number (7 to 15 digits, optional +)"
    if groups:
        kinds += " or a group G<n>"
    raise ValueError(f"{raw!r} is not {kinds}")


def phones(raw: list[str] | tuple[str, ...], *, groups: bool = False) -> tuple[str, ...]:
    """Several phones, each validated, duplicates dropped (order kept)."""
    result = tuple(dict.fromkeys(phone(p, groups=groups) for p in raw))
    if len(result) > MAX_PHONES:
        raise ValueError(f"{len(result)} phones in one request; at most {MAX_PHONES}")
    return result


def sender(raw: str) -> str:
    if SENDER_DIGITS.fullmatch(raw) or SENDER_NAME.fullmatch(raw):
        return raw
    raise ValueError(
        f"sender {raw!r} must be up to 11 Latin letters, digits, spaces and .-_!&'()+/, or up to 15 digits"
    )


def request_id(raw: str) -> str:
    if not REQUEST_ID.fullmatch(raw):
        raise ValueError(f"id {raw!r} must be 1 to 40 of A-Z a-z 0-9 . _ -")
    if raw.isdigit() and not 1 <= int(raw) <= 2147483647:
        raise ValueError(f"numeric id {raw} must be between 1 and 2147483647")
    return raw


def time(raw: str) -> str:
    m = TIME.fullmatch(raw)
    if not m:
        raise ValueError(
            f"time {raw!r} must be DDMMYYhhmm, 'DD.MM.YY hh.mm', h1-h2, 0<timestamp>, +<minutes> or 0"
        )
    if m.group("h1") is not None and not 0 <= int(m.group("h1")) < int(m.group("h2")) <= 24:
        raise ValueError(f"time window {raw!r} needs 0 <= h1 < h2 <= 24")
    return raw


def tz(raw: str) -> str:
    if not TZ.fullmatch(raw) or not -24 <= int(raw) <= 24:
        raise ValueError(f"tz {raw!r} must be whole hours relative to Moscow time, -24 to 24")
    return raw


def login(raw: str) -> str:
    if not LOGIN.fullmatch(raw):
        raise ValueError("login may hold only Latin letters, digits and ._@+- (at most 64)")
    return raw


def password(raw: str) -> str:
    if not raw:
        raise ValueError("password (or API key) is empty")
    if ":" in raw or not raw.isprintable():
        # Never echo the value: it is a secret.
        raise ValueError("password contains ':', a line break or a control character")
    return raw
