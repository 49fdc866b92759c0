"""Decode bytes whose charset is declared wrongly, oddly or not at all, without ever raising."""

from __future__ import annotations

import codecs
from dataclasses import dataclass

# Spellings seen in real mail that Python's codec registry does not know.
ALIASES = {
    "x-mac-cyrillic": "mac-cyrillic",
    "x-mac-ukrainian": "mac-cyrillic",
    "x-cp1251": "cp1251",
    "win-1251": "cp1251",
    "windows1251": "cp1251",
    "x-user-defined": "cp1252",
    "unicode-1-1-utf-8": "utf-8",
    "x-unicode20utf8": "utf-8",
    "utf8mb4": "utf-8",
    "koi8": "koi8-r",
    "ks_c_5601-1987": "cp949",
    "iso-8859-8-i": "iso-8859-8",
    "ansi_x3.4-1968": "ascii",
}
# Labels that promise ASCII but are routinely stamped on 8-bit text by legacy programs.
ASCII_LABELS = frozenset({"us-ascii", "ascii", "ansi_x3.4-1968", "646"})


@dataclass(frozen=True, slots=True)
class Decoded:
    text: str
    charset: str  # the codec actually used
    warning: str = ""  # set when the result is a best effort


def resolve(label: str | None) -> str | None:
    """The Python codec for a MIME charset label, or None if there is no text codec by that name.

    Bytes-to-bytes and str-to-str codecs (zlib, hex, rot13, base64...) are refused: a charset
    label must never run a decompressor on a mail.
    """
    if not label:
        return None
    name = label.strip().strip("\"'").lower()
    name = ALIASES.get(name, name)
    try:
        info = codecs.lookup(name)
    except LookupError:
        return None
    if not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


def decode(data: bytes, label: str | None, *, undeclared: str, detect_utf8: bool, what: str) -> Decoded:
    """Decode `data` declared as `label`; fall back on UTF-8 detection and `undeclared` (koi8-r)."""
    if label and label.strip().strip("\"'").lower() in ASCII_LABELS and not data.isascii():
        label = None  # 8-bit bytes under an ASCII label: the label is wrong, guess as if undeclared
    codec = resolve(label)
    if label and codec is None:
        guess = _guess(data, undeclared, detect_utf8)
        return Decoded(
            data.decode(guess, errors="replace"),
            guess,
            f"unknown charset {label!r} in {what}; decoded as {guess}",
        )
    if codec is None:
        if data.isascii():
            return Decoded(data.decode("ascii"), "ascii")
        codec = _guess(data, undeclared, detect_utf8)
    try:
        return Decoded(data.decode(codec), codec)
    except (UnicodeDecodeError, ValueError):
        return Decoded(
            data.decode(codec, errors="replace"),
            codec,
            f"invalid {codec} bytes in {what}; replaced with U+FFFD",
        )


def _guess(data: bytes, undeclared: str, detect_utf8: bool) -> str:
    # Valid multi-byte UTF-8 is very unlikely to be koi8-r or cp1251 text: Cyrillic letters in
    # those charsets are 0xC0-0xFF, which UTF-8 never puts twice in a row.
    if detect_utf8:
        try:
            data.decode("utf-8")
            return "utf-8"
        except UnicodeDecodeError:
            pass
    return undeclared
