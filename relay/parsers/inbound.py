"""Raw inbound mail -> InboundMail: the part to use, its charset, [text] blocks, HTML as text.

Choice of body, best first: a [text]...[/text] block anywhere in the text; text/plain (also
inside nested multipart/alternative, mixed, related); text/html converted to readable text;
else the subject alone. Attachments are never read as text. Nothing here raises on bad input:
a best-effort decode adds a warning instead, because one bad header must not lose a whole alert.
"""

from __future__ import annotations

import email.header
import email.parser
import email.policy
import re
from collections.abc import Iterator, Sequence
from email.message import Message
from functools import cache
from typing import TYPE_CHECKING, Any

from relay.config.schema import ParsingConfig
from relay.model import BodySource, InboundMail
from relay.parsers import charsets, cleanup

if TYPE_CHECKING:
    from inscriptis.model.config import ParserConfig

MAX_PARTS = 200  # a hostile mail with 100,000 parts is walked this far, no further
_BARE_CR = re.compile(rb"\r(?!\n)")


class _RawHeaders(email.policy.Compat32):
    """compat32, but header values come back as written (8-bit bytes as surrogates), so that
    undeclared koi8-r or UTF-8 in a Subject can be decoded instead of turned into U+FFFD."""

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value


_POLICY = _RawHeaders()


def parse(
    raw: bytes, *, mail_from: str = "", rcpt_tos: Sequence[str] = (), settings: ParsingConfig
) -> InboundMail:
    # Legacy senders mix CRLF, bare LF and bare CR; the parser wants one kind.
    raw = _BARE_CR.sub(b"\n", raw).replace(b"\r\n", b"\n")
    msg = email.parser.BytesParser(policy=_POLICY).parsebytes(raw)
    warnings: list[str] = []

    def header(name: str) -> str:
        value = msg.get_all(name, [])
        return _decode_header(str(value[0]), settings, warnings, name) if value else ""

    subject = cleanup.squeeze(header("Subject")).replace("\n", " ")
    plain, html, charset, links = _bodies(msg, settings, warnings)
    text, source = _choose(plain, html, subject, settings)
    body = plain if plain is not None else html or ""
    return InboundMail(
        mail_from=mail_from,
        rcpt_tos=tuple(rcpt_tos),
        subject=subject,
        text=text,
        body_source=source,
        body=body,
        header_from=header("From"),
        message_id=header("Message-ID").strip(),
        charset=charset,
        received_count=len(msg.get_all("Received", [])),
        warnings=tuple(warnings),
        link_labels=links,
    )


def _choose(plain: str | None, html: str | None, subject: str, s: ParsingConfig) -> tuple[str, BodySource]:
    for candidate in (plain, html):
        block = cleanup.text_block(candidate) if candidate else None
        if block is not None:
            # An explicit block is what the sender wants sent: only trimmed, never cut.
            return cleanup.squeeze(block), BodySource.TEXT_BLOCK
    for candidate, source in ((plain, BodySource.PLAIN), (html, BodySource.HTML)):
        if candidate is not None:
            text = cleanup.clean(
                candidate,
                strip_signature=s.strip_signature,
                strip_quotes=s.strip_quotes,
                boilerplate=s.boilerplate,
            )
            if text:
                return text, source
    return "", BodySource.SUBJECT if subject else BodySource.NONE


def _bodies(
    msg: Message, s: ParsingConfig, warnings: list[str]
) -> tuple[str | None, str | None, str, tuple[str, ...]]:
    """The first text/plain and the first text/html body part, decoded, the plain part's charset,
    and the HTML part's stand-alone link labels."""
    plain = html = None
    charset = ""
    links: tuple[str, ...] = ()
    for part in _leaves(msg):
        ctype = part.get_content_type()
        if ctype not in ("text/plain", "text/html") or _is_attachment(part):
            continue
        if (ctype == "text/plain" and plain is not None) or (ctype == "text/html" and html is not None):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        decoded = charsets.decode(
            data,
            _param(part, "charset"),
            undeclared=s.undeclared_charset,
            detect_utf8=s.detect_utf8,
            what=f"{ctype} part",
        )
        if decoded.warning:
            warnings.append(decoded.warning)
        if ctype == "text/plain":
            plain, charset = decoded.text, decoded.charset
            if (_param(part, "format") or "").lower() == "flowed":
                plain = unflow(plain, delsp=(_param(part, "delsp") or "").lower() == "yes")
        else:
            html, links = _html_to_text(decoded.text)
            charset = charset or decoded.charset
    return plain, html, charset, links


def unflow(text: str, *, delsp: bool = False) -> str:
    """RFC 3676 format=flowed: a line ending in a space continues on the next one (with
    DelSp=yes that space is only the soft break); "-- " is a signature line, never flowed."""
    out: list[str] = []
    carry = ""
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if line.startswith(" "):
            line = line[1:]  # space-stuffing
        if line.endswith(" ") and line != "-- ":
            carry += line[:-1] if delsp else line
            continue
        out.append(carry + line)
        carry = ""
    if carry:
        out.append(carry)
    return "\n".join(out)


def _leaves(msg: Message) -> Iterator[Message]:
    """Non-multipart parts in document order; message/rfc822 (a forwarded mail) is not entered."""
    stack = [msg]
    seen = 0
    while stack and seen < MAX_PARTS:
        part = stack.pop()
        seen += 1
        if part.is_multipart() and part.get_content_maintype() == "multipart":
            payload = part.get_payload()
            if isinstance(payload, list):
                stack.extend(p for p in reversed(payload) if isinstance(p, Message))
        elif part.get_content_maintype() != "message":
            yield part


def _is_attachment(part: Message) -> bool:
    disposition = (_param_header(part, "Content-Disposition") or "").split(";")[0].strip().lower()
    if disposition == "attachment":
        return True
    # A named text part without an inline disposition is a file (a log, a report), not the body.
    return disposition != "inline" and bool(
        part.get_param("name") or part.get_param("filename", header="Content-Disposition")
    )


def _param(part: Message, name: str) -> str | None:
    try:
        value = part.get_param(name)
    except Exception:
        return None
    if isinstance(value, tuple):  # RFC 2231 form
        value = value[2]
    return str(value) if value else None


def _param_header(part: Message, name: str) -> str | None:
    value = part.get(name)
    return str(value) if value is not None else None


@cache
def _html_config() -> ParserConfig:
    """inscriptis (with lxml, ~5 MiB of RSS) is imported by the first mail with an HTML part."""
    from inscriptis.css_profiles import CSS_PROFILES
    from inscriptis.model.config import ParserConfig

    return ParserConfig(css=CSS_PROFILES["strict"], display_links=False, display_images=False)


def _html_to_text(html: str) -> tuple[str, tuple[str, ...]]:
    """The HTML part as text, and the labels of its stand-alone links (a button's `CrowdSec CTI`,
    `Open incident`): the summaries drop those lines, the plain text keeps them."""
    from inscriptis import Inscriptis
    from lxml.etree import ParserError
    from lxml.html import document_fromstring

    config = _html_config()
    try:
        stripped = html.strip()
        if not stripped:
            return "", ()
        try:
            tree = document_fromstring(stripped)
        except ParserError:
            tree = document_fromstring("<pre>" + stripped + "</pre>")
        return str(Inscriptis(tree, config).get_text()), _link_labels(tree)
    except Exception:
        return re.sub(r"<[^>]*>", " ", html), ()


_INLINE = frozenset(("span", "b", "strong", "em", "i", "u", "font", "small", "big"))
_MAX_LABELS = 50


def _link_labels(tree: Any) -> tuple[str, ...]:  # an lxml tree (lxml has no type hints)
    """The text of each link that is all of its block (`<p><a href=...>CrowdSec CTI</a></p>`)."""
    labels: dict[str, None] = {}
    for anchor in tree.iter("a"):
        label = " ".join(anchor.text_content().split())
        if not label or len(label) > 80:
            continue
        block = anchor.getparent()
        while block is not None and block.tag in _INLINE:
            block = block.getparent()
        if block is not None and " ".join(block.text_content().split()) == label:
            labels[label] = None
            if len(labels) >= _MAX_LABELS:
                break
    return tuple(labels)


def _decode_header(value: str, s: ParsingConfig, warnings: list[str], name: str) -> str:
    """Unfold and decode a header: RFC 2047 words in any charset, or raw 8-bit bytes."""
    value = re.sub(r"\r?\n[ \t]", " ", value)
    if any("\udc80" <= ch <= "\udcff" for ch in value):
        # compat32 keeps undeclared 8-bit header bytes as surrogates: decode them like a body.
        data = value.encode("ascii", "surrogateescape")
        value = charsets.decode(
            data, None, undeclared=s.undeclared_charset, detect_utf8=s.detect_utf8, what=name
        ).text
    try:
        chunks = email.header.decode_header(value)
    except (email.errors.HeaderParseError, ValueError):
        warnings.append(f"malformed encoded words in {name}; kept as written")
        return value
    out = []
    for chunk, label in chunks:
        if isinstance(chunk, str):
            out.append(chunk)
            continue
        decoded = charsets.decode(
            chunk,
            label or "ascii",
            undeclared=s.undeclared_charset,
            detect_utf8=s.detect_utf8,
            what=name,
        )
        if decoded.warning:
            warnings.append(decoded.warning)
        out.append(decoded.text)
    return "".join(out)
