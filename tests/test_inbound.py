"""Inbound parsing: charsets, part choice, cleanup; nothing raises on bad input."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.config.schema import ParsingConfig
from relay.model import BodySource, InboundMail
from relay.parsers import charsets, cleanup, inbound

S = ParsingConfig()


def parse(raw: bytes, settings: ParsingConfig = S) -> InboundMail:
    return inbound.parse(raw, settings=settings)


@pytest.mark.parametrize(
    ("label", "codec"),
    [("KOI8-R", "koi8-r"), ("koi8-r", "koi8-r"), ("cp1251", "cp1251"), ("windows-1251", "cp1251"),
     ("x-mac-cyrillic", "mac-cyrillic"), ("utf8", "utf-8"), ('"UTF-8"', "utf-8"), ("x-cp1251", "cp1251"),
     ("x-unknown", None), ("rot13", None), ("zlib", None), ("hex", None), ("base64", None), ("", None)],
)  # fmt: skip
def test_resolve(label: str, codec: str | None) -> None:
    assert charsets.resolve(label) == codec


@pytest.mark.parametrize(
    ("data", "label", "text", "warned"),
    [
        ("Привет".encode("koi8-r"), None, "Привет", False),  # undeclared 8-bit: koi8-r
        ("Привет".encode(), None, "Привет", False),  # undeclared but valid UTF-8
        ("Привет".encode("koi8-r"), "us-ascii", "Привет", False),  # wrong ASCII label
        ("Привет".encode("cp1251"), "windows-1251", "Привет", False),
        ("Привет".encode("koi8-r"), "x-unknown", "Привет", True),
        (b"a\xffb", "utf-8", "a\ufffdb", True),
        (b"\xed\xa0\x80", "utf-8", "\ufffd\ufffd\ufffd", True),  # a lone surrogate, encoded
        ("Привет".encode("utf-16-le"), "utf-16", None, False),  # no BOM: decodes, no exception
        (b"+BB8EQAQ4BDIENQRC-", "utf-7", "Привет", False),
    ],
)
def test_decode_never_raises(data: bytes, label: str | None, text: str | None, warned: bool) -> None:
    d = charsets.decode(data, label, undeclared="koi8-r", detect_utf8=True, what="body")
    if text is not None:
        assert d.text == text
    assert bool(d.warning) == warned


def test_undeclared_charset_is_configurable() -> None:
    data = "Привет".encode("cp1251")
    d = charsets.decode(data, None, undeclared="cp1251", detect_utf8=True, what="body")
    assert d.text == "Привет"


def test_html_only_mail_becomes_readable_text() -> None:
    raw = (b"Subject: s\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
           b"<html><head><style>.x{color:red}</style><script>alert(1)</script></head>"
           b"<body><p>Hello&nbsp;<b>world</b> &amp; co</p><ul><li>one</li><li>two</li></ul></body></html>")  # fmt: skip
    mail = parse(raw)
    assert mail.body_source is BodySource.HTML
    assert mail.text == "Hello world & co\n* one\n* two"


def test_an_html_parts_stand_alone_links_are_named_and_kept_in_the_text() -> None:
    raw = (b"Subject: s\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
           b"<p><a href='https://x.example/ip/1'>203.0.113.9</a> was banned.</p>"
           b"<p><a href='https://cti.example/1'><b>Threat Intel</b></a></p>"
           b"<div><span><a href='https://x.example/a'>Open incident</a></span></div>")  # fmt: skip
    mail = parse(raw)
    assert mail.link_labels == ("Threat Intel", "Open incident")  # not the link inside a sentence
    assert "Threat Intel" in mail.text and "Open incident" in mail.text  # the plain path keeps them
    assert parse(b"Subject: s\r\nContent-Type: text/html\r\n\r\n   ").link_labels == ()


def test_plain_wins_over_html_and_attachments_ignored() -> None:
    raw = b"""Subject: s
Content-Type: multipart/mixed; boundary=b

--b
Content-Type: text/plain; name=log.txt

attached log
--b
Content-Type: multipart/alternative; boundary=c

--c
Content-Type: text/html

<p>html</p>
--c
Content-Type: text/plain

plain body
--c--
--b--
"""
    mail = parse(raw)
    assert mail.text == "plain body"
    assert mail.body_source is BodySource.PLAIN


def test_text_block_wins_everywhere() -> None:
    raw = b"Subject: s\n\nnoise [TEXT]  exactly this  [/text] more"
    assert parse(raw).text == "exactly this"
    assert parse(b"Subject: s\n\nnoise [text]to the end").text == "to the end"


def test_forwarded_message_part_is_not_read() -> None:
    raw = b"""Subject: fwd
Content-Type: multipart/mixed; boundary=b

--b
Content-Type: message/rfc822

Subject: inner

inner text
--b--
"""
    mail = parse(raw)
    assert mail.text == "" and mail.body_source is BodySource.SUBJECT


def test_headers_in_any_charset_and_raw_8bit() -> None:
    raw = (b"Subject: =?windows-1251?B?z/Do4uXy?= =?iso-8859-2?Q?=B1?=\r\nFrom: " + "Иван".encode("koi8-r")
           + b" <i@example.com>\r\n\r\nbody")  # fmt: skip
    mail = parse(raw)
    assert mail.subject == "Приветą"
    assert mail.header_from == "Иван <i@example.com>"


def test_bad_headers_do_not_reject_the_mail() -> None:
    raw = (
        b'Subject: =?x-nope?B?////?= =?utf-8?B?@@@?=\r\nContent-Type: text/plain; charset="\r\n\r\nstill here'
    )
    mail = parse(raw)
    assert mail.text == "still here"


def test_line_endings_are_normalized() -> None:
    raw = b"Subject: s\r\n\r\none\rtwo\nthree\r\nfour\x00five"
    assert parse(raw).text == "one\ntwo\nthree\nfourfive"
    assert parse("Subject: s\n\na\u2028b\x85c".encode()).text == "a\nb\nc"


def test_many_parts_are_bounded() -> None:
    parts = "".join("--b\nContent-Type: image/png\n\nx\n" for _ in range(5000))
    raw = f"Subject: big\nContent-Type: multipart/mixed; boundary=b\n\n{parts}--b\nContent-Type: text/plain\n\nlate\n--b--\n"
    mail = parse(raw.encode())
    assert mail.text == ""  # the text part after 5000 images is past the walk limit
    assert mail.subject == "big"


def test_received_headers_are_counted() -> None:
    raw = b"".join(b"Received: from x by y\r\n" for _ in range(3)) + b"Subject: s\r\n\r\nb"
    assert parse(raw).received_count == 3


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("a  b\t\tc", "a b c"),
        ("a\n\n\n\nb", "a\nb"),
        ("   lead\ntrail   ", "lead\ntrail"),
        ("msg\n-- \nJohn\nphone", "msg"),
        ("msg\n--\nJohn", "msg"),
        ("table\n--\n" + "row\n" * 12 + "end", "table\n--\n" + "row\n" * 12 + "end"),
        ("Yes.\nOn Mon, Bob wrote:\n> q?\n> r", "Yes."),
        ("Yes.\n-----Original Message-----\nFrom: x", "Yes."),
        ("> only a quote", "> only a quote"),
    ],
)
def test_clean(text: str, want: str) -> None:
    assert cleanup.clean(text) == want


def test_clean_can_be_switched_off_and_boilerplate() -> None:
    import re

    text = "msg\n> quoted\n-- \nsig\nSent from my phone"
    assert (
        cleanup.clean(text, strip_signature=False, strip_quotes=False)
        == "msg\n> quoted\n--\nsig\nSent from my phone"
    )
    pattern = re.compile("^Sent from my .*$", re.MULTILINE | re.IGNORECASE)
    assert cleanup.clean("msg\nSent from my phone", boilerplate=[pattern]) == "msg"


def test_format_flowed_is_unwrapped() -> None:
    raw = ("Subject: x\r\nContent-Type: text/plain; charset=utf-8; format=flowed\r\n\r\n"
           "Пожар в здании \r\nна ул. Ленина, 5\r\n\r\n-- \r\nBot\r\n").encode()  # fmt: skip
    assert parse(raw).text.startswith("Пожар в здании на ул. Ленина, 5")
    delsp = b"Subject: x\r\nContent-Type: text/plain; format=flowed; delsp=yes\r\n\r\nsplit wo \r\nrd\r\n"
    assert parse(delsp).text == "split word"


_BREAKS = re.compile(r"\r\n|[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")  # the definition, as one regex


@settings(max_examples=500, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from([*"a \r\n\t\x0b\x0c\x1c\x1e\x85\u2028\u2029\x00\x07\x7f\u200b\ufeffж"]),
        max_size=60,
    )
)
def test_normalize_keeps_its_definition(text: str) -> None:
    """CRLF and every other line break one LF, tabs spaces, controls gone: the fast code
    (str.replace, then a character class) says what the one-regex definition says."""
    want = re.sub(r"[\x00-\x08\x0e-\x1f\x7f\u200b\ufeff]", "", _BREAKS.sub("\n", text).replace("\t", " "))
    assert cleanup.normalize(text) == want


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from([*"ab \n\t\r\u00a0\u2003\u3000\x85\x1c"]), max_size=60))
def test_squeeze_keeps_its_definition(text: str) -> None:
    """Spaces collapsed and trimmed line by line, blank lines gone, whatever the line breaks."""
    spaces = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
    lines = (spaces.sub(" ", line).strip() for line in cleanup.normalize(text).split("\n"))
    assert cleanup.squeeze(text) == "\n".join(line for line in lines if line)
