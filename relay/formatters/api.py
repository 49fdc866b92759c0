"""A provider command line -> the provider's HTTP API request (`send.php`), field for field.

The spool keeps the exact command mail a request becomes (DESIGN.md section 4); the HTTP
transport reads that command back (relay/parsers/command.py, which validates every field
again) rather than keeping a second description of the same request, so `render`, the SMTP
gateway and the HTTP API cannot disagree about what is sent. Each value goes into its own
form field, percent-encoded by the HTTP client: a text can neither shift a field nor add one.
"""

from __future__ import annotations

from relay.config.schema import PREFIXES
from relay.parsers.command import Command

# The SMTP command's <format> codes (SMTP page) and the send.php flag for each (HTTP page).
FORMAT_FLAGS: dict[str, tuple[str, str]] = {
    "1": ("flash", "1"),
    "2": ("push", "1"),
    "3": ("hlr", "1"),
    "4": ("bin", "1"),
    "5": ("bin", "2"),
    "6": ("ping", "1"),
    "7": ("mms", "1"),
    "8": ("mail", "1"),
    "9": ("call", "1"),
    "10": ("viber", "1"),
    "11": ("whatsapp", "1"),
    "12": ("soc", "1"),
}
# Message-type prefixes (config.schema.PREFIXES) that send.php takes as a flag instead. `bot`
# has none documented: its prefix stays in the text, as the SMTP gateway would read it.
TYPE_FLAGS = frozenset({"call", "viber", "soc", "mail", "ping", "hlr"})
# What every send asks for: UTF-8 (the API's default is windows-1251), a JSON answer with the
# cost and the new balance, and one record per phone.
FIXED = (("charset", "utf-8"), ("fmt", "3"), ("cost", "3"), ("op", "1"))


def phones_of(command: Command) -> tuple[str, ...]:
    """Every phone of a request, in order, once."""
    return tuple(dict.fromkeys(p for e in command.entries for p in e.phones))


def send_form(command: Command, *, api_key: bool = False) -> list[tuple[str, str]]:
    """The POST fields of send.php for a command line read back by relay/parsers/command.py,
    in a stable order. `api_key`: the password is an API key (provider.login is empty), sent
    as `apikey` instead of login + psw."""
    auth = (
        [("apikey", command.password)] if api_key else [("login", command.login), ("psw", command.password)]
    )
    form = [*auth, ("id", command.request_id), *FIXED]
    texts = [e.text for e in command.entries]
    typed = _type_flag(texts)
    cut = len(typed[1]) if typed else 0
    if len(command.entries) == 1 and "\n" not in texts[0]:
        form += [("phones", ",".join(command.entries[0].phones)), ("mes", texts[0][cut:])]
    else:
        # The list form, as in the command mail: `phones:mes` lines, a line break in a text
        # written `\n` (command.py made a literal backslash-n "\ n" already).
        lines = [
            f"{','.join(e.phones)}:{t[cut:]}".replace("\n", "\\n")
            for e, t in zip(command.entries, texts, strict=True)
        ]
        form.append(("list", "\n".join(lines)))
    o = command.options
    for name, value in (("time", o.time), ("tz", o.tz), ("translit", o.translit), ("sender", o.sender)):
        if value:
            form.append((name, value))
    if o.format in FORMAT_FLAGS:
        form.append(FORMAT_FLAGS[o.format])
    if typed:
        form.append(typed[0])
    return form


def status_form(
    login: str, password: str, pairs: list[tuple[str, str]], *, api_key: bool = False, listed: bool = True
) -> list[tuple[str, str]]:
    """status.php for (relay id, phone) pairs: the list form, one answer record per pair. A
    trailing comma keeps the list form (an array answer) even for one pair. `listed=False`
    asks about one pair alone: the provider allows one list request a minute in all, but five
    requests a minute for each message."""
    if not listed and len(pairs) != 1:
        raise ValueError("the single form asks about one (id, phone) pair")
    comma = "," if listed else ""
    ids = ",".join(i for i, _ in pairs) + comma
    phones = ",".join(p for _, p in pairs) + comma
    return [
        *_auth(login, password, api_key),
        ("phone", phones),
        ("id", ids),
        ("fmt", "3"),
        ("charset", "utf-8"),
    ]


def balance_form(login: str, password: str, *, api_key: bool = False) -> list[tuple[str, str]]:
    return [*_auth(login, password, api_key), ("fmt", "3")]


def _auth(login: str, password: str, api_key: bool) -> list[tuple[str, str]]:
    return [("apikey", password)] if api_key else [("login", login), ("psw", password)]


def _type_flag(texts: list[str]) -> tuple[tuple[str, str], str] | None:
    """The send.php flag for a message-type prefix every text starts with (the SMTP gateway
    reads `__VIBER__: ` and the like; the API has a flag for each), and the prefix."""
    for name, prefix in PREFIXES.items():
        if name in TYPE_FLAGS and texts and all(t.startswith(prefix) for t in texts):
            return (name, "1"), prefix
    return None
