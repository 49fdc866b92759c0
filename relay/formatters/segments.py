"""GSM-7 / UCS-2 part counting, as the provider bills it (160/153 and 70/67 per part)."""

from __future__ import annotations

import re
import unicodedata

from relay.model import Encoding, Segments

# GSM 03.38 default alphabet (one septet each) and extension table (escape + char: two septets).
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = frozenset("^{}\\[~]|€\f")

# translit=1 as the provider describes it ("translate"): an estimate for counting only, since
# the provider's exact table is not published. Upper case maps the same way, capitalised.
_TRANSLIT = dict(
    zip(
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
        "a b v g d e yo zh z i j k l m n o p r s t u f h c ch sh shh \" y' ' e' yu ya".split(" "),  # noqa: SIM905
        strict=True,
    )
)

# Typography that has a plain GSM-7 look-alike. One curly quote would otherwise turn a whole
# Latin text into UCS-2: 70 characters a part instead of 160, more than double the cost.
_GSM_FOLD = str.maketrans(
    {
        "\u00a0": " ", "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"',
        "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-",
        "\u2026": "...", "\u00b7": ".", "\u2022": "*", "\u00d7": "x", "\u2032": "'", "\u2033": '"',
        "\ufffd": "?",  # an undecodable byte: visible, and no reason to pay for UCS-2
    }
)  # fmt: skip

SINGLE = {Encoding.GSM7: 160, Encoding.UCS2: 70}
MULTI = {Encoding.GSM7: 153, Encoding.UCS2: 67}


def fold_to_gsm(text: str) -> str:
    """Replace typography with GSM-7 look-alikes when that makes the whole text GSM-7."""
    folded = text.translate(_GSM_FOLD)
    return folded if folded != text and encoding_for(folded) is Encoding.GSM7 else text


def fold_accents(text: str) -> str:
    """Latin letters whose accent GSM-7 lacks (á í ó ú ã õ â ê ç ...) as their plain letter, when
    that makes the whole text GSM-7: a summary in Spanish or Portuguese then has 160 characters
    a part, not 70. Letters GSM-7 has (é è ñ ü ö ...) stay as they are."""
    if text.isascii():
        return text
    folded = "".join(_accentless(ch) for ch in text)
    return folded if folded != text and encoding_for(folded) is Encoding.GSM7 else text


def _accentless(ch: str) -> str:
    if ch.isascii() or ch in GSM_ALL:
        return ch
    base = unicodedata.normalize("NFD", ch)[0]
    return base if base.isascii() and base.isalpha() else ch


def transliterate(text: str) -> str:
    out = []
    for ch in text:
        low = ch.lower()
        if low in _TRANSLIT:
            latin = _TRANSLIT[low]
            out.append(latin.capitalize() if ch != low else latin)
        else:
            out.append(ch)
    return "".join(out)


GSM_ALL = GSM_BASIC | GSM_EXTENSION
# Counting runs several times per mail: character classes scan in C, where a frozenset test
# hashes every character in Python's loop (15 us for 1 KB against about 1).
_ASCII_NOT_GSM = re.compile(
    "[" + re.escape("".join(c for c in map(chr, range(128)) if c not in GSM_ALL)) + "]"
)
_EXTENSION = re.compile("[" + re.escape("".join(sorted(GSM_EXTENSION))) + "]")


def encoding_for(text: str) -> Encoding:
    if text.isascii():
        return Encoding.UCS2 if _ASCII_NOT_GSM.search(text) else Encoding.GSM7
    return Encoding.GSM7 if GSM_ALL.issuperset(text) else Encoding.UCS2


def count(text: str, *, translit: int = 0) -> Segments:
    """Count the parts of one SMS text; a character is never split across two parts."""
    if translit:
        text = transliterate(text)
    encoding = encoding_for(text)
    # Extension characters take two septets; astral characters (emoji) two UTF-16 units.
    if encoding is Encoding.GSM7:
        doubles = len(_EXTENSION.findall(text))
    else:
        doubles = sum(1 for ch in text if ord(ch) > 0xFFFF) if not text.isascii() else 0
    total = len(text) + doubles
    if total <= SINGLE[encoding]:
        return Segments(encoding, total, 1 if total else 0)
    limit = MULTI[encoding]
    if not doubles:  # every character one unit: plain arithmetic
        return Segments(encoding, total, -(-total // limit))
    parts, used = 1, 0
    for ch in text:
        size = 2 if (ch in GSM_EXTENSION if encoding is Encoding.GSM7 else ord(ch) > 0xFFFF) else 1
        if used + size > limit:
            parts += 1
            used = 0
        used += size
    return Segments(encoding, total, parts)


def fit(text: str, *, max_chars: int, max_parts: int = 0, marker: str = "...", translit: int = 0) -> str:
    """Cut `text` to at most `max_chars` characters and `max_parts` parts (0: no part limit).

    The cut falls on a word boundary when one is near, and `marker` shows the reader that
    something is missing.
    """

    def fits(candidate: str) -> bool:
        if len(candidate) > max_chars:
            return False
        return not max_parts or count(candidate, translit=translit).parts <= max_parts

    if fits(text):
        return text
    lo, hi = 0, min(len(text), max_chars)
    while lo < hi:  # the longest prefix that still fits with the marker
        mid = (lo + hi + 1) // 2
        if fits(text[:mid].rstrip() + marker):
            lo = mid
        else:
            hi = mid - 1
    prefix = text[:lo]
    space = max(prefix.rfind(" "), prefix.rfind("\n"))
    if space >= lo * 0.7:  # don't throw away more than 30% just to end on a whole word
        prefix = prefix[:space]
    return prefix.rstrip() + marker
