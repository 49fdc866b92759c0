"""A provider command line -> the `submit_sm` PDUs' fields of the provider's SMPP interface (issue
24): one submit per phone and part, pure. The PDU's bytes are the SMPP library's to write; what
is decided here is what goes in each field.

- The text is each entry's, with the message-type prefix and the `\\n~~~\\n` comment as the other
  interfaces send them (smpp-notes.md: the SMPP page takes both).
- GSM-7 (data_coding 0x00, the SMSC default alphabet, one octet a septet) when every character
  is in GSM 03.38, else UCS-2 (0x08, UTF-16BE), decided by the same counting as the formatters'
  part counts (relay/formatters/segments.py), so the parts the relay counts are the parts sent.
- A long text goes as concatenated parts with a user data header (esm_class 0x40, the 8-bit
  reference IE 00): every handset and operator reassembles UDH, where the SAR TLVs depend on
  the SMSC turning them into a UDH (SMPP 3.4 leaves it optional). A part holds 153 GSM-7
  septets or 67 UCS-2 units, and never splits an escape pair (€, [, ...) or a surrogate pair.
- Source address: an alphanumeric sender is TON 5 / NPI 0 by default (the provider's example:
  5 / 1; provider.smpp.source_ton/npi), a numeric one TON 1 / NPI 1; destinations TON 1 / NPI 1
  by default (dest_ton/npi), the digits without "+".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)

from relay.errors import ContentError
from relay.formatters import segments
from relay.model import Encoding
from relay.parsers.command import Command

DATA_CODING = {Encoding.GSM7: 0x00, Encoding.UCS2: 0x08}
ESM_DEFAULT = 0x00
ESM_UDHI = 0x40  # the short message starts with a user data header
SINGLE = {Encoding.GSM7: 160, Encoding.UCS2: 70}  # septets / UTF-16 units in one SMS
MULTI = {Encoding.GSM7: 153, Encoding.UCS2: 67}  # the same in each part of a long one
MAX_PARTS = 255  # the 8-bit concatenation IE counts parts in one octet


@dataclass(frozen=True, slots=True)
class Address:
    ton: int
    npi: int
    value: str


@dataclass(frozen=True, slots=True)
class Submit:
    """One submit_sm: the fields this request decides (the session adds sequence, validity...)."""

    source: Address
    destination: Address
    data_coding: int
    esm_class: int
    short_message: bytes  # the UDH first when esm_class has UDHI
    part: int  # 1-based
    parts: int
    phone: str = ""  # as the request names it (the spool's per-phone statuses are by this)


def submits(
    command: Command, *, source_ton: int = 5, source_npi: int = 0, dest_ton: int = 1, dest_npi: int = 1
) -> tuple[Submit, ...]:
    """Every submit_sm of a request, phone by phone, parts in order. Raises ContentError for a
    text that cannot go as one concatenated message (over 255 parts)."""
    sender = command.options.sender
    source = _source(sender, source_ton, source_npi)
    translit = command.options.translit not in ("", "0")
    out: list[Submit] = []
    for entry in command.entries:
        text = segments.transliterate(entry.text) if translit else entry.text
        encoding = segments.encoding_for(text)
        chunks = split(text, encoding)
        if len(chunks) > MAX_PARTS:
            raise ContentError(
                f"the text needs {len(chunks)} SMS parts; SMPP concatenation allows {MAX_PARTS}"
            )
        for phone in entry.phones:
            reference = _reference(command.request_id, phone, entry.text)
            for n, chunk in enumerate(chunks, 1):
                body = encode(chunk, encoding)
                if len(chunks) > 1:
                    body = bytes((5, 0, 3, reference, len(chunks), n)) + body
                out.append(
                    Submit(
                        source=source,
                        destination=Address(dest_ton, dest_npi, phone.removeprefix("+")),
                        data_coding=DATA_CODING[encoding],
                        esm_class=ESM_UDHI if len(chunks) > 1 else ESM_DEFAULT,
                        short_message=body,
                        part=n,
                        parts=len(chunks),
                        phone=phone,
                    )
                )
    return tuple(out)


def validity_period(minutes: int) -> str:
    """submit_sm's validity_period as SMPP 3.4's relative time (7.1.1: YYMMDDhhmmsstnnR)."""
    days, rest = divmod(minutes, 1440)
    return f"0000{days:02d}{rest // 60:02d}{rest % 60:02d}00000R"


def split(text: str, encoding: Encoding) -> list[str]:
    """The text's parts: one when it fits one SMS, else parts of MULTI units, each character
    whole (two units for a GSM-7 escape or an astral character)."""
    sizes = [_units(ch, encoding) for ch in text]
    if sum(sizes) <= SINGLE[encoding]:
        return [text]
    parts, start, used = [], 0, 0
    for at, size in enumerate(sizes):
        if used + size > MULTI[encoding]:
            parts.append(text[start:at])
            start, used = at, 0
        used += size
    parts.append(text[start:])
    return parts


def encode(text: str, encoding: Encoding) -> bytes:
    """GSM 03.38 unpacked (an escape pair for the extension table) or UTF-16BE."""
    return text.encode("gsm03.38") if encoding is Encoding.GSM7 else text.encode("utf-16-be")


def _units(ch: str, encoding: Encoding) -> int:
    if encoding is Encoding.GSM7:
        return 2 if ch in segments.GSM_EXTENSION else 1
    return 2 if ord(ch) > 0xFFFF else 1


def _source(sender: str, ton: int, npi: int) -> Address:
    digits = sender.removeprefix("+")
    if digits.isdigit():
        return Address(1, 1, digits)
    return Address(ton, npi, sender)


def _reference(request_id: str, phone: str, text: str) -> int:
    """The concatenation reference: the same for every part of one text to one phone, and the
    same again when the request is resent (a resend of one part then joins the others)."""
    return hashlib.sha256(f"{request_id}\0{phone}\0{text}".encode()).digest()[0]
