"""SmsRequest -> the provider's colon-delimited command line, single or `::list` form.

    <login>:<psw>:<id>:<time>,<tz>:<translit>,<format>,<sender>,<test>:<phones>:<mes>
    <login>:<psw>:<id>:<time>,<tz>:<translit>,<format>,<sender>,<test>::<phones1>:<mes1>
    <phones2>:<mes2>

A text with a line break always goes in the list form, where the provider documents `\\n` as
the way to write one: so the body has exactly one line per entry, and no text can ever begin a
line of its own (and so cannot smuggle a second command). Every other field is validated here
again, whatever the caller checked before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from relay import fields
from relay.errors import AddressError, ContentError
from relay.model import Entry, Options, SmsRequest
from relay.parsers.cleanup import normalize

MAX_MES = 1000  # the provider's limit on <mes>, comment included
COMMENT_SEPARATOR = "\n~~~\n"
_TEXT_TAG = re.compile(r"\[(/?)text\]", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Credentials:
    login: str
    password: str


def compose(prefix: str, text: str, comment: str = "") -> str:
    """The <mes> field: message-type prefix, the text, and an unbilled comment after \\n~~~\\n."""
    return prefix + text + (COMMENT_SEPARATOR + comment if comment else "")


def is_list_form(request: SmsRequest) -> bool:
    return _is_list_form(request, messages(request))


def _is_list_form(request: SmsRequest, texts: list[str]) -> bool:
    return len(request.entries) > 1 or any("\n" in mes for mes in texts)


def messages(request: SmsRequest) -> list[str]:
    """Each entry's <mes> as it will be sent (before list-form escaping)."""
    return [_canonical(compose(request.prefix, e.text, request.comment)) for e in request.entries]


def as_sent(request: SmsRequest) -> list[str]:
    """Each entry's <mes> exactly as the provider will read it back (after its unescaping)."""
    texts = messages(request)
    if _is_list_form(request, texts):
        # The provider turns `\n` into a line break in the list form; a literal backslash-n in
        # the text would turn too, so it gets a space that keeps it visible and literal.
        texts = [t.replace("\\n", "\\ n") for t in texts]
    return texts


def format_command(request: SmsRequest, credentials: Credentials, test: str) -> str:
    """The body of the provider mail, lines joined by "\\n"."""
    head = _head(request.relay_id, request.options, credentials, test)
    texts = as_sent(request)
    list_form = _is_list_form(request, texts)
    for mes in texts:
        if len(mes) > MAX_MES:
            raise ContentError(f"message text is {len(mes)} characters; the provider accepts {MAX_MES}")
    phone_lists = [_phones(e) for e in request.entries]
    if not list_form:
        return f"{head}:{phone_lists[0]}:{texts[0]}"
    lines = [
        f"{phones}:{mes.replace(chr(10), chr(92) + 'n')}"
        for phones, mes in zip(phone_lists, texts, strict=True)
    ]
    return f"{head}::" + "\n".join(lines)


def _head(relay_id: str, o: Options, credentials: Credentials, test: str) -> str:
    try:
        parts = [
            fields.login(credentials.login),
            fields.password(credentials.password),
            fields.request_id(relay_id),
            _joined(fields.time(o.time) if o.time else "", fields.tz(o.tz) if o.tz else ""),
            _joined(
                _choice(o.translit, "translit", 2),
                _choice(o.format, "format", 12),
                fields.sender(o.sender) if o.sender else "",
                _choice(test, "test", 2),
            ),
        ]
    except ValueError as exc:
        raise ContentError(f"invalid provider field: {exc}") from None
    return ":".join(parts)


def _phones(entry: Entry) -> str:
    if not entry.phones:
        raise AddressError("no phone numbers for this message")
    try:
        return ",".join(fields.phones(entry.phones, groups=True))
    except ValueError as exc:
        raise AddressError(str(exc)) from None


def _joined(*values: str) -> str:
    # Optional sub-fields may be left empty, but the commas before a given one must stay.
    return ",".join(values).rstrip(",")


def _choice(value: str, name: str, top: int) -> str:
    if value and not (value.isascii() and value.isdigit() and int(value) <= top):
        raise ValueError(f"{name} {value!r} must be 0..{top}")
    return value


def _canonical(mes: str) -> str:
    # Only "\n" as a line break; [text] tags would make the provider read only what is
    # between them, so a text must not be able to write them.
    # Trailing white space is never seen on a phone, and mail hops may strip it anyway.
    return _TEXT_TAG.sub(r"(\1text)", normalize(mes)).rstrip()
