"""No injection: nothing a client sends can shift a provider field or add a second command.

For arbitrary subjects, bodies, recipients and header values, every produced provider mail,
parsed back by relay/parsers/command.py, yields exactly the intended fields; and the HTTP
API request made from it (relay/formatters/api.py), encoded as the client sends it and
decoded as the provider reads it, holds exactly the intended form fields.
"""

from __future__ import annotations

import base64
import dataclasses
import email
import email.header
import functools
import itertools
import re
from typing import Any
from urllib.parse import parse_qsl

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay import fields
from relay.config.schema import PREFIXES
from relay.errors import RelayError
from relay.formatters import api, command, provider
from relay.model import Entry, Options, RouteMode, SmsRequest
from relay.parsers import command as command_parser
from relay.pipeline import storm_outgoing
from relay.spool import alerts as stormstore
from relay.spool import schema as spool_schema
from relay.spool.sqlite import connect
from tests.helpers import BASE_CONFIG, PASSWORD, body_text, make_config, render

CFG = make_config()
# Arbitrary text, weighted towards the characters that matter to the command syntax.
SYNTAX = [":", "::", ",", ";", "\n", "\r", "\r\n", "\x85", "\u2028", "\u2029", "\x00", "\x0b",
          "[text]", "[/TEXT]", "~~~", "\n~~~\n", "\\n", "__CALL__: ", "__HLR__",
          "login:psw:1:0,0:0,0,X,0:79990000000:hi", "=?utf-8?q?x?=", "Bcc: evil@example.com"]  # fmt: skip
ANY_TEXT = st.lists(
    st.one_of(st.sampled_from(SYNTAX), st.text(st.characters(exclude_categories=["Cs"]), max_size=30)),
    max_size=12,
).map("".join)
PHONE = st.from_regex(r"\+?[1-9][0-9]{9,13}", fullmatch=True)
HEADERS = ["From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type",
           "Content-Transfer-Encoding", "Auto-Submitted", "X-Smsc-Relay-Id"]  # fmt: skip


def raw_mail(subject: str, body: str, header_from: str = "app@example.com") -> bytes:
    enc = email.header.Header(subject, "utf-8").encode()
    enc_from = email.header.Header(header_from, "utf-8").encode()
    payload = base64.encodebytes(body.encode("utf-8")).decode()
    return (
        f"From: {enc_from}\r\nSubject: {enc}\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{payload}"
    ).encode("ascii")


def check_provider_mail(request: SmsRequest, message: bytes, phones: list[str]) -> None:
    msg = email.message_from_bytes(message)
    assert msg.keys() == HEADERS  # exactly these headers: nothing injected
    assert not msg.is_multipart()
    body = body_text(msg)
    parsed = command_parser.parse(body)
    assert (parsed.login, parsed.password, parsed.request_id) == (
        "mylogin",
        PASSWORD,
        request.relay_id,
    )
    assert parsed.options.test == "1"
    assert parsed.options.sender == request.options.sender
    assert [e.text for e in parsed.entries] == command.as_sent(request)
    assert [p for e in parsed.entries for p in e.phones] == phones
    for sent in (e.text for e in parsed.entries):
        # Client text can neither hide itself in an unsent comment nor become a voice call.
        assert "\n~~~\n" not in sent
        assert not re.match(r"\s*__[A-Za-z]+__", sent)
    # One line per entry: the single form is one line, the list form one line per phone group.
    assert len(body.split("\n")) == (len(request.entries) if parsed.list_form else 1)
    check_http_form(request, parsed, phones)


BASE_FIELDS = {"login", "psw", "id", "charset", "fmt", "cost", "op"}


def check_http_form(request: SmsRequest, parsed: command_parser.Command, phones: list[str]) -> None:
    """The same request as the HTTP transport sends it: after the client's own encoding and the
    provider's decoding, exactly the intended fields, the texts as the SMTP gateway reads them."""
    form = api.send_form(parsed)
    wire = httpx.Request("POST", "https://smsc.ru/sys/send.php", data=dict(form)).read().decode("ascii")
    got = parse_qsl(wire, keep_blank_values=True, strict_parsing=True, encoding="utf-8", errors="strict")
    names = [k for k, _ in got]
    assert len(names) == len(set(names))  # no field twice
    values = dict(got)
    options = {"sender"} if request.options.sender else set()
    sent = command.as_sent(request)
    # A message-type prefix is the route's (the pipeline defuses one a client writes, see
    # check_provider_mail): the gateway reads it as the type, the API takes it as a flag.
    typed = [n for n in sorted(api.TYPE_FLAGS) if all(t.startswith(PREFIXES[n]) for t in sent)]
    if typed:
        options.add(typed[0])
        sent = [t[len(PREFIXES[typed[0]]) :] for t in sent]
    assert set(values) == BASE_FIELDS | options | ({"list"} if "list" in values else {"phones", "mes"})
    assert (values["login"], values["psw"], values["id"]) == ("mylogin", PASSWORD, request.relay_id)
    assert values.get("sender", "") == request.options.sender
    if "list" in values:
        lines = values["list"].split("\n")
        assert len(lines) == len(request.entries)
        read = [line.split(":", 1) for line in lines]
        assert [p.split(",") for p, _ in read] == [list(e.phones) for e in parsed.entries]
        assert [t.replace("\\n", "\n") for _, t in read] == sent
    else:
        assert values["phones"].split(",") == phones
        assert [values["mes"]] == sent


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(subject=ANY_TEXT, body=ANY_TEXT, phone=PHONE, header_from=ANY_TEXT)
def test_mail_through_whole_pipeline(subject: str, body: str, phone: str, header_from: str) -> None:
    raw = raw_mail(subject, body, header_from)
    rcpts = [f"{phone}@sms.example.com", "oncall@sms.example.com"]
    try:
        result = render(raw, rcpts, CFG)
    except RelayError as exc:
        # The only acceptable refusal for arbitrary content: nothing usable in it.
        assert exc.reply.code == 554 and "nothing usable" in exc.reply.text
        return
    # The two routes differ in options (sender), so they are two requests.
    intended = {"number": ([phone], ""), "oncall": (["+79990000001", "+79990000002"], "ALERTS")}
    assert sorted(r.route for r in result.requests) == ["number", "oncall"]
    for request, pm in zip(result.requests, result.provider_mails, strict=True):
        phones, sender = intended[request.route]
        assert request.options.sender == sender
        check_provider_mail(request, pm.message, phones)


@settings(max_examples=400, deadline=None)
@given(
    texts=st.lists(ANY_TEXT.filter(lambda t: t.strip()), min_size=1, max_size=4),
    phones=st.lists(st.lists(PHONE, min_size=1, max_size=3, unique=True), min_size=1, max_size=4),
)
def test_formatter_round_trip(texts: list[str], phones: list[list[str]]) -> None:
    entries = tuple(Entry(tuple(p), t) for p, t in zip(phones, texts, strict=False))
    request = SmsRequest("rid-1", RouteMode.COMMAND, "r", (), entries, Options(sender="ALERTS"))
    creds = command.Credentials("mylogin", PASSWORD)
    try:
        body = command.format_command(request, creds, "1")
    except RelayError as exc:
        assert "characters; the provider accepts 1000" in exc.reason
        return
    parsed = command_parser.parse(body)
    assert [e.text for e in parsed.entries] == command.as_sent(request)
    assert [e.phones for e in parsed.entries] == [e.phones for e in entries]
    assert parsed.options == Options(sender="ALERTS", test="1")
    check_http_form(request, parsed, [p for e in entries for p in e.phones])
    assert len(body.split("\n")) == (len(entries) if parsed.list_form else 1)
    for sent, entry in zip(command.as_sent(request), entries, strict=True):
        # What changes on the way is only what is documented: line breaks become "\n", controls
        # and trailing space go, [text] tags lose their brackets, and (list form only) a
        # literal backslash-n gets a space so that the provider does not read it as a break.
        expected = re.sub(r"\r\n|[\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]", "\n", entry.text)
        expected = re.sub(r"[\x00-\x08\x0e-\x1f\x7f\u200b\ufeff]", "", expected.replace("\t", " "))
        expected = re.sub(r"\[(/?)text\]", r"(\1text)", expected, flags=re.IGNORECASE).rstrip()
        if parsed.list_form:
            expected = expected.replace("\\n", "\\ n")
        assert sent == expected


@settings(max_examples=300, deadline=None)
@given(local=ANY_TEXT)
def test_recipient_can_only_yield_one_plain_phone(local: str) -> None:
    rcpt = f"{local}@sms.example.com"
    try:
        result = render(b"Subject: hi\r\n\r\nbody", [rcpt], CFG)
    except RelayError as exc:
        assert exc.reply.code in (550, 553)
        return
    for pm in result.provider_mails:
        for p in pm.phones:
            assert fields.PHONE.fullmatch(p) or p in ("+79990000001", "+79990000002")
            assert p.isascii()


STORM_CFG = make_config(
    BASE_CONFIG.replace("    sender: ALERTS\n", "    sender: ALERTS\n    storm: {hold: 0, min_gap: 0}\n", 1)
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(mails=st.lists(st.tuples(ANY_TEXT, ANY_TEXT), min_size=1, max_size=6))
def test_storm_digests_cannot_be_injected(tmp_path_factory: Any, mails: list[tuple[str, str]]) -> None:
    """Client texts merged into a storm digest still cannot shift a field or add a command."""
    conn = connect(tmp_path_factory.mktemp("inj") / "spool.db")
    spool_schema.migrate(conn)
    ids = itertools.count()
    settings_of = STORM_CFG.storm_settings
    now = 1_795_348_800.0
    for subject, body in mails:
        try:
            rendered = render(raw_mail(subject, body), ["oncall@sms.example.com"], STORM_CFG)
        except RelayError as exc:
            assert exc.reply.code == 554
            continue
        with conn:
            alerts = [dataclasses.replace(a, id=f"a{next(ids)}") for a in rendered.alerts]  # unique ids
            stormstore.admit(conn, alerts, settings=settings_of, now=now, mail_from="", inbound_id="")
    with conn:
        compose = functools.partial(
            storm_outgoing,
            now=now + 1,
            config=STORM_CFG,
            hostname="relay.test",
            new_id=lambda: f"d{next(ids)}",
        )
        tick = stormstore.tick(conn, now=now + 1, compose=compose)
    for row in tick.rows:
        message = provider.unmask(row.message, STORM_CFG.provider)
        msg = email.message_from_bytes(message)
        assert msg.keys() == HEADERS
        text = body_text(msg)
        parsed = command_parser.parse(text)
        assert (parsed.login, parsed.password, parsed.request_id) == ("mylogin", PASSWORD, row.id)
        assert parsed.options.sender == "ALERTS" and parsed.options.test == "1"
        assert [p for e in parsed.entries for p in e.phones] == ["+79990000001", "+79990000002"]
        assert len(text.split("\n")) == (len(parsed.entries) if parsed.list_form else 1)
        for e in parsed.entries:
            assert "\n~~~\n" not in e.text and not re.match(r"\s*__[A-Za-z]+__", e.text)
