"""Provider reply mails -> ProviderReply values (SMTP page: test replies).

    OK - <n> SMS, ID - <id>
    ERROR = N (description)                 errors 1, 2, 4, 5, 9
    ERROR = N (description), ID - <id>      errors 3, 6, 7, 8

Replies may come in koi8-r or another charset, as HTML, quoted ("> OK - ..."), with other lines
around them, and several in one mail. An ERROR without an ID is matched through the mail's
In-Reply-To/References headers or subject, which carry the relay id of the mail it answers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from relay.config.schema import ParsingConfig
from relay.model import ProviderReply, ReplyKind
from relay.parsers import inbound

_ID = r"[A-Za-z0-9._-]{1,40}"
OK_LINE = re.compile(rf"\bOK\s*-\s*(?P<n>\d+)\s*SMS\s*,\s*ID\s*-\s*(?P<id>{_ID})", re.IGNORECASE)
ERROR_LINE = re.compile(
    rf"\bERROR\s*=\s*(?P<code>\d+)\s*(?:\((?P<desc>[^\n]*)\))?(?:\s*,\s*ID\s*-\s*(?P<id>{_ID}))?",
    re.IGNORECASE,
)
# Our own ids (relay/ids.py), as they appear in Message-ID/In-Reply-To/Subject of the exchange.
RELAY_ID = re.compile(r"\b(r[0-9a-f]{8,16}-[0-9a-f]{8})\b")


def parse(raw: bytes, *, settings: ParsingConfig, headers_id: str | None = None) -> list[ProviderReply]:
    """Every result in the mail; a mail with none yields one UNKNOWN reply (to be kept)."""
    mail = inbound.parse(raw, settings=settings)
    context_id = headers_id if headers_id is not None else _context_id(raw, mail.subject)
    text = "\n".join(part for part in (mail.body, mail.text) if part)
    results = parse_text(text, context_id)
    if not results:
        snippet = " ".join((mail.subject + " " + (mail.body or mail.text)).split())[:200]
        return [ProviderReply(ReplyKind.UNKNOWN, relay_id=context_id, line=snippet)]
    return results


def parse_text(text: str, context_id: str = "") -> list[ProviderReply]:
    found: dict[tuple[object, ...], ProviderReply] = {}
    for line in text.splitlines():
        for m in OK_LINE.finditer(line):
            reply = ProviderReply(ReplyKind.OK, relay_id=m["id"], sms_count=int(m["n"]), line=_clean(line))
            found.setdefault((reply.kind, reply.relay_id, reply.sms_count), reply)
        for m in ERROR_LINE.finditer(line):
            reply = ProviderReply(
                ReplyKind.ERROR,
                relay_id=m["id"] or context_id,
                code=int(m["code"]),
                description=(m["desc"] or "").strip(),
                line=_clean(line),
            )
            found.setdefault((reply.kind, reply.relay_id, reply.code), reply)
    return list(found.values())


def _context_id(raw: bytes, subject: str) -> str:
    head = raw.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
    for source in (_header(head, ("in-reply-to", "references")), subject):
        m = RELAY_ID.search(source)
        if m:
            return m.group(1)
    return ""


def _header(head: str, names: Sequence[str]) -> str:
    unfolded = re.sub(r"\r?\n[ \t]+", " ", head)
    return " ".join(line.split(":", 1)[1] for line in unfolded.splitlines()
                    if ":" in line and line.split(":", 1)[0].strip().lower() in names)  # fmt: skip


def _clean(line: str) -> str:
    return " ".join(line.lstrip("> ").split())[:300]
