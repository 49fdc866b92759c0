"""MIME nesting and part count are bounded before parsing (issue 22, item 3): a permanent
554 5.6.0 that names the limit, in the listener and in `render`, never a 451 or a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import io
import smtplib
from email.message import EmailMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.cli import main as cli
from relay.errors import ContentError
from relay.parsers import mimescan

RCPT = "79991234567@sms.example.com"
CORPUS = Path(__file__).parent / "corpus"


def nested(depth: int) -> bytes:
    """Multiparts `depth` deep, as compact as they come (1,000 levels fit the tests' 64 KB)."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    names = [(digits[i // 36] + digits[i % 36]).encode() for i in range(depth)]
    head = b"From: a@b.example\r\nTo: " + RCPT.encode() + b"\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"
    body = b"".join(
        b"Content-Type:multipart/mixed;boundary=" + n + b"\r\n\r\n--" + n + b"\r\n" for n in names
    )
    body += b"Content-Type: text/plain\r\n\r\nhello\r\n"
    return head + body + b"".join(b"--" + n + b"--\r\n" for n in reversed(names))


def wide(parts: int) -> bytes:
    head = f"From: a@b.example\r\nTo: {RCPT}\r\nSubject: wide\r\nMIME-Version: 1.0\r\n"
    head += 'Content-Type: multipart/mixed; boundary="z"\r\n\r\n'
    body = "".join(f"--z\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n" for i in range(parts))
    return (head + body + "--z--\r\n").encode()


def _send(port: int, raw: bytes) -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        try:
            client.sendmail("a@b.example", [RCPT], raw)
        except smtplib.SMTPDataError as exc:
            said = exc.smtp_error
            return exc.smtp_code, said.decode() if isinstance(said, bytes) else said
    return 250, ""


async def test_deep_and_wide_mail_get_a_permanent_answer(provider: Any, relay_factory: Any) -> None:
    _fake, port = provider
    relay = await relay_factory(port, extra="parsing: {max_mime_parts: 100}")
    code, text = await asyncio.to_thread(_send, relay.port, nested(1000))
    assert code == 554 and text.startswith("5.6.0 MIME parts nested deeper than 20 levels"), text
    code, text = await asyncio.to_thread(_send, relay.port, wide(200))
    assert code == 554 and text == "5.6.0 more than 100 MIME parts (parsing.max_mime_parts)", text
    code, _text = await asyncio.to_thread(_send, relay.port, nested(5))  # an ordinary depth goes through
    assert code == 250


def test_render_says_why_and_exits_non_zero(tmp_path: Path) -> None:
    mail = tmp_path / "deep.eml"
    mail.write_bytes(nested(1000))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["render", "-c", "config/relay.example.yaml", str(mail)])
    assert code == 65 and "554 5.6.0 MIME parts nested deeper than 20 levels" in err.getvalue()
    assert "Traceback" not in err.getvalue()


def _tree(draw: Any, depth: int) -> EmailMessage | MIMEMultipart | MIMEText:
    if depth == 0 or draw(st.booleans()):
        return MIMEText(draw(st.text(min_size=0, max_size=20)), "plain", "utf-8")
    outer = MIMEMultipart(draw(st.sampled_from(["mixed", "alternative", "related"])))
    for _ in range(draw(st.integers(1, 3))):
        outer.attach(_tree(draw, depth - 1))
    return outer


def _depth_and_parts(msg: Any) -> tuple[int, int]:
    if not msg.is_multipart():
        return 0, 0
    inner = [_depth_and_parts(p) for p in msg.get_payload()]
    return 1 + max(d for d, _ in inner), len(inner) + sum(p for _, p in inner)


@given(st.data(), st.integers(1, 6))
def test_the_scan_counts_what_the_parser_builds(data: Any, levels: int) -> None:
    msg = _tree(data.draw, levels)
    raw = msg.as_bytes()
    depth, parts = _depth_and_parts(msg)
    mimescan.check(raw, max_depth=max(depth, 1), max_parts=max(parts, 1))  # at the limits: accepted
    if depth > 1:
        with pytest.raises(ContentError, match="nested deeper"):
            mimescan.check(raw, max_depth=depth - 1, max_parts=10**6)
    if parts > 1:
        with pytest.raises(ContentError, match="MIME parts"):
            mimescan.check(raw, max_depth=100, max_parts=parts - 1)


def test_no_corpus_mail_is_refused() -> None:
    mails = sorted(CORPUS.rglob("*.eml"))
    assert len(mails) > 150
    for path in mails:
        mimescan.check(path.read_bytes(), max_depth=20, max_parts=1000)
