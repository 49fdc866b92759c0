"""Shorten mail text without losing its meaning: every character saved is money on an SMS."""

from __future__ import annotations

import re
from collections.abc import Iterable

# Line breaks of every kind (CR, LF, NEL, LS, PS, VT, FF) become "\n"; other controls go.
_LONE_BREAKS = re.compile(r"[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")  # after CRLF -> LF
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\u200b\ufeff]")
_SPECIAL = re.compile(r"[\r\t\x00-\x08\x0b-\x1f\x7f\x85\u200b\u2028\u2029\ufeff]")  # any of the above
# A run of spaces of any kind -> one space. Written so that a lone ASCII space, which it would
# replace by itself, is no match (replacing every space of a mail cost more than the rest of
# squeeze), and so that it starts with a character class, which the regex engine scans for fast.
_SPACE = r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]"
_SPACES = re.compile(rf"{_SPACE}(?:(?<= )(?={_SPACE})|(?<! )){_SPACE}*")
_SIGNATURE = re.compile(r"^-- ?$", re.MULTILINE)
_ORIGINAL = re.compile(
    r"^\s*-{2,}\s*(Original Message|Исходное сообщение|Forwarded message|Пересылаемое сообщение)\s*-{2,}",
    re.MULTILINE | re.IGNORECASE,
)
_ATTRIBUTION = re.compile(r"^(On|Am|Le|В|\d).{0,200}(wrote|schrieb|a écrit|пишет|написал\(а\)|написал):\s*$")
TEXT_BLOCK = re.compile(r"\[text\](.*?)(?:\[/text\]|\Z)", re.IGNORECASE | re.DOTALL)


def normalize(text: str) -> str:
    """One kind of line break, no control characters, tabs as spaces."""
    # CRLF first with str.replace, then one character class: an alternation (`\r\n|[...]`) is
    # tried at every position, and this runs several times on every mail.
    if _SPECIAL.search(text) is None:
        return text  # most text, and all text normalized before: one scan, nothing built
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    text = _LONE_BREAKS.sub("\n", text)
    if "\t" in text:
        text = text.replace("\t", " ")
    return _CONTROLS.sub("", text)


def text_block(text: str) -> str | None:
    """The content of the first [text]...[/text] block, or None if there is none."""
    m = TEXT_BLOCK.search(text)
    return m.group(1) if m else None


def clean(
    text: str,
    *,
    strip_signature: bool = True,
    strip_quotes: bool = True,
    boilerplate: Iterable[re.Pattern[str]] = (),
) -> str:
    text = normalize(text)
    if strip_signature:
        text = _cut_signature(text)
    if strip_quotes:
        text = _cut_quotes(text)
    for pattern in boilerplate:
        text = pattern.sub("", text)
    return squeeze(text)


def squeeze(text: str) -> str:
    """Collapse runs of spaces, trim every line, drop blank lines."""
    # One substitution for the whole text: no run of spaces crosses a line break.
    lines = (line.strip() for line in _SPACES.sub(" ", normalize(text)).split("\n"))
    return "\n".join(line for line in lines if line)


def _cut_signature(text: str) -> str:
    # RFC 3676 puts the signature after "-- "; many programs trim it to "--". Only a "--" near
    # the end counts, since a lone "--" high up is more likely a separator in the content.
    for m in _SIGNATURE.finditer(text):
        rest = text[m.end() :].strip("\n")
        if m.group(0) == "-- " or rest.count("\n") < 10:
            return text[: m.start()]
    return text


def _cut_quotes(text: str) -> str:
    m = _ORIGINAL.search(text)
    if m and text[: m.start()].strip():
        text = text[: m.start()]
    lines = text.split("\n")
    kept: list[str] = []
    for line in lines:
        if line.lstrip().startswith(">"):
            # Drop the quoted line and the "On <date>, <someone> wrote:" line that led into it.
            if kept and _ATTRIBUTION.match(kept[-1].strip()):
                kept.pop()
            continue
        kept.append(line)
    # A mail that is nothing but a quote keeps its quote: better long than empty.
    return "\n".join(kept) if any(k.strip() for k in kept) else text
