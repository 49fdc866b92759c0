"""An SMPP delivery receipt (a `deliver_sm` whose esm_class says so) -> what happened to one part,
pure (issue 24).

The text is SMPP 3.4 appendix B's, as the provider sends it (smpp-notes.md):
`id:<id> sub:001 dlvrd:001 submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DELIVRD err:000 text:...`.
The TLVs `receipted_message_id` and `message_state`, when the SMSC adds them, win over the text
(they are typed; the text is free-form and SMSCs differ in case, order and the id's form).
Anything that is not such a receipt gives None: the caller keeps it as a digest and changes
nothing.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec an incoming SMS is read with)

from relay.model import Inbound, PartStatus

ESM_TYPE_MASK = 0x3C  # esm_class bits 2-5: the message type
ESM_DELIVERY_RECEIPT = 0x04
MAX_TEXT = 1024  # of a short_message read: a receipt is ~120 octets


class Stat(enum.Enum):
    DELIVERED = "DELIVRD"
    EXPIRED = "EXPIRED"
    DELETED = "DELETED"
    UNDELIVERABLE = "UNDELIV"
    ACCEPTED = "ACCEPTD"
    UNKNOWN = "UNKNOWN"
    REJECTED = "REJECTD"

    @property
    def final(self) -> bool:
        """Whether no other status can follow (ACCEPTD and UNKNOWN are not the phone's)."""
        return self not in (Stat.ACCEPTED, Stat.UNKNOWN)

    @property
    def delivered(self) -> bool:
        return self is Stat.DELIVERED


# The receipt's stat -> the provider's status code of one SMS to one phone (status.php's, so
# that receipts and polling fill the same per-phone statuses): DELETED and UNDELIV are "cannot be
# delivered", REJECTD "prohibited"; ACCEPTD is "handed to the operator", UNKNOWN "waiting".
STATUS_CODE = {
    Stat.DELIVERED: 1, Stat.EXPIRED: 3, Stat.DELETED: 20, Stat.UNDELIVERABLE: 20,
    Stat.ACCEPTED: 0, Stat.UNKNOWN: -1, Stat.REJECTED: 23,
}  # fmt: skip
MAX_DIGEST = 200  # characters of a deliver_sm kept as its digest

# message_state TLV (SMPP 3.4 5.3.2.35) -> the same statuses
MESSAGE_STATE = {
    2: Stat.DELIVERED, 3: Stat.EXPIRED, 4: Stat.DELETED, 5: Stat.UNDELIVERABLE, 6: Stat.ACCEPTED,
    7: Stat.UNKNOWN, 8: Stat.REJECTED,
}  # fmt: skip
TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_MESSAGE_STATE = 0x0427


@dataclass(frozen=True, slots=True)
class Receipt:
    message_id: str  # the provider's, as submit_sm_resp gave it
    stat: Stat
    error: str = ""  # `err:` as sent (three digits, network specific)
    submitted: datetime | None = None
    done: datetime | None = None


def is_receipt(esm_class: int) -> bool:
    return esm_class & ESM_TYPE_MASK == ESM_DELIVERY_RECEIPT


_FIELD = re.compile(r"(?<!\w)(id|sub|dlvrd|submit date|done date|stat|err|text)\s*:\s*", re.IGNORECASE)
_STAT_WORDS = {s.value: s for s in Stat} | {"UNDELIVERED": Stat.UNDELIVERABLE, "DELIVERED": Stat.DELIVERED}


def parse(short_message: bytes, tlvs: Mapping[int, bytes] | None = None) -> Receipt | None:
    """The receipt in a deliver_sm's short_message and TLVs, or None when it is none."""
    tlvs = tlvs or {}
    text = short_message[:MAX_TEXT].decode("latin-1")
    fields = _fields(text)
    message_id = _tlv_text(tlvs.get(TLV_RECEIPTED_MESSAGE_ID)) or fields.get("id", "")
    stat = _tlv_state(tlvs.get(TLV_MESSAGE_STATE)) or _STAT_WORDS.get(fields.get("stat", "").upper())
    if not message_id or stat is None or len(message_id) > 65:
        return None
    return Receipt(
        message_id=message_id,
        stat=stat,
        error=fields.get("err", ""),
        submitted=_date(fields.get("submit date", "")),
        done=_date(fields.get("done date", "")),
    )


def _fields(text: str) -> dict[str, str]:
    """`name:value` pairs of the appendix B text; `text:` takes the rest, the others one word."""
    found: dict[str, str] = {}
    marks = list(_FIELD.finditer(text))
    for n, m in enumerate(marks):
        name = m[1].lower()
        end = marks[n + 1].start() if n + 1 < len(marks) else len(text)
        value = text[m.end() : end].strip()
        found.setdefault(name, value if name == "text" else (value.split() or [""])[0])
    return found


def _tlv_text(value: bytes | None) -> str:
    """A C-octet string TLV: up to its NUL, printable ASCII only."""
    if not value:
        return ""
    text = value.split(b"\0", 1)[0].decode("ascii", "replace")
    return text if text.isprintable() else ""


def _tlv_state(value: bytes | None) -> Stat | None:
    return MESSAGE_STATE.get(value[0]) if value and len(value) == 1 else None


def _date(value: str) -> datetime | None:
    """YYMMDDhhmm (appendix B), or with seconds (YYMMDDhhmmss: some SMSCs), as UTC."""
    fmt = {10: "%y%m%d%H%M", 12: "%y%m%d%H%M%S"}.get(len(value)) if value.isdigit() else None
    if fmt is None:
        return None
    try:  # by length: strptime alone would read 2612041530 as 15:03:00
        return datetime.strptime(value, fmt).replace(tzinfo=UTC)
    except ValueError:
        return None


def read(
    esm_class: int, short_message: bytes, tlvs: Mapping[int, bytes], *, source: str, data_coding: int = 0
) -> PartStatus:
    """Any deliver_sm -> what it is: a receipt's part status, a malformed receipt, or an SMS;
    each with a short digest to keep (printable, bounded: the peer's bytes are not trusted)."""
    if not is_receipt(esm_class):
        text = _decode(short_message[:MAX_TEXT], data_coding)
        return PartStatus(Inbound.SMS, _digest(f"from {source}: {text}"))
    found = parse(short_message, tlvs)
    text = short_message[:MAX_TEXT].decode("latin-1")
    if found is None:
        return PartStatus(Inbound.MALFORMED, _digest(f"from {source}: {text}"))
    return PartStatus(
        Inbound.RECEIPT,
        _digest(f"from {source}: {text}"),
        message_id=found.message_id,
        status=STATUS_CODE[found.stat],
        err=int(found.error) if found.error.isdigit() and len(found.error) <= 9 else 0,
        at=found.done.timestamp() if found.done is not None else 0.0,
    )


def _decode(data: bytes, data_coding: int) -> str:
    """The text of an incoming SMS: UCS-2 (0x08), Latin-1 (0x03), else the GSM default alphabet
    (what the provider sends it as); a byte it cannot read becomes U+FFFD, never an error."""
    if data_coding == 0x08:
        return data.decode("utf-16-be", "replace")
    if data_coding == 0x03:
        return data.decode("latin-1")
    try:
        return data.decode("gsm03.38")
    except UnicodeDecodeError:
        return data.decode("ascii", "replace")


def _digest(text: str) -> str:
    """One line of printable characters, at most MAX_DIGEST."""
    flat = "".join(ch if ch.isprintable() else " " for ch in text)
    flat = " ".join(flat.split())
    return flat if len(flat) <= MAX_DIGEST else flat[: MAX_DIGEST - 1] + "…"
