"""The provider mail: fixed header set, charset with UTF-8 fallback, base64, 100 KB cap."""

from __future__ import annotations

import base64
import email

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.errors import TooBigError
from relay.formatters import mime
from tests.helpers import NOW, body_text

ENV = mime.Envelope("replies@relay.example.com", "send@send.smscentre.com", "SMS r1", "r1", "relay.test")


def test_koi8r_by_default() -> None:
    raw = mime.build("l:p:r1::,,,1:79991234567:Привет", ENV, "koi8-r", NOW)
    msg = email.message_from_bytes(raw)
    assert msg.get_content_charset() == "koi8-r"
    assert msg.get_payload(decode=True) == "l:p:r1::,,,1:79991234567:Привет".encode("koi8-r")
    assert raw.isascii()
    assert all(len(line) <= 78 for line in raw.split(b"\r\n"))


def test_text_the_charset_cannot_hold_goes_as_utf8() -> None:
    raw = mime.build("l:p:r1::,,,1:79991234567:Привет 🔥 café", ENV, "koi8-r", NOW)
    msg = email.message_from_bytes(raw)
    assert msg.get_content_charset() == "utf-8"
    assert body_text(msg) == "l:p:r1::,,,1:79991234567:Привет 🔥 café"


def test_exact_header_set() -> None:
    msg = email.message_from_bytes(mime.build("x", ENV, "koi8-r", NOW))
    assert msg.items() == [
        ("From", "replies@relay.example.com"),
        ("To", "send@send.smscentre.com"),
        ("Subject", "SMS r1"),
        ("Date", "Sun, 22 Nov 2026 03:00:00 +0000"),
        ("Message-ID", "<r1@relay.test>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", 'text/plain; charset="koi8-r"'),
        ("Content-Transfer-Encoding", "base64"),
        ("Auto-Submitted", "auto-generated"),
        ("X-Smsc-Relay-Id", "r1"),
    ]


def test_size_cap() -> None:
    mime.build("x" * 70_000, ENV, "koi8-r", NOW)  # ~95 KB in base64: fits
    with pytest.raises(TooBigError) as info:
        mime.build("x" * 80_000, ENV, "koi8-r", NOW)
    assert info.value.reply.code == 552
    assert "the provider accepts 102400" in info.value.reason


def test_readable() -> None:
    raw = mime.build("Привет", ENV, "koi8-r", NOW)
    assert mime.readable(raw).endswith("\n\nПривет\n")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_base64_lines_are_encodebytes_with_crlf(data: bytes) -> None:
    assert mime.base64_lines(data) == base64.encodebytes(data).decode("ascii").replace("\n", "\r\n")
