"""LeanSMTP builds, from cached tables, exactly the session state aiosmtpd's own __init__ builds."""

from __future__ import annotations

import asyncio
import inspect
import types
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, _AuthMechAttr
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.smtp.handler import Handler
from relay.smtp.session import RelaySMTP
from tests.fakes import FakeProvider
from tests.helpers import Raw, listen_extra


def normal(value: Any, owner: object, handler: object) -> Any:
    """A value with per-instance objects replaced by what identifies them."""
    if isinstance(value, types.MethodType):
        bound_to = (
            "session" if value.__self__ is owner else "handler" if value.__self__ is handler else "other"
        )
        return ("method", value.__func__, bound_to)
    if isinstance(value, _AuthMechAttr):
        return ("auth", normal(value.method, owner, handler), value.is_builtin)
    if isinstance(value, dict):
        return {k: normal(v, owner, handler) for k, v in value.items()}
    if isinstance(value, asyncio.StreamReader | asyncio.Future) or inspect.isawaitable(value):
        return type(value)
    if type(value).__name__ == "ReferenceType":
        return ("weakref", type(value()))
    return value


def state(protocol: SMTP, handler: Handler) -> dict[str, Any]:
    return {k: normal(v, protocol, handler) for k, v in vars(protocol).items()}


async def compare(handler: Handler) -> None:
    options = handler.session_options()
    stock = RelaySMTP.__new__(RelaySMTP)
    SMTP.__init__(stock, handler, **options)
    lean = RelaySMTP(handler, sessions=handler.sessions, **options)
    for key in RelaySMTP.OWN:  # the relay's own state on top of aiosmtpd's
        setattr(stock, key, getattr(lean, key))
    expected, got = state(stock, handler), state(lean, handler)
    assert sorted(got) == sorted(expected)
    for key in expected:
        assert got[key] == expected[key], key
    assert lean._smtp_methods.keys() >= {"EHLO", "MAIL", "RCPT", "DATA", "STARTTLS", "AUTH"}
    lean2 = RelaySMTP(
        handler, sessions=handler.sessions, **options
    )  # the cached tables bind to each session, not the first
    assert lean2._smtp_methods["DATA"].__self__ is lean2
    assert lean2._auth_methods["PLAIN"].method.__self__ is lean2


async def test_same_state_as_aiosmtpd_plain(provider: tuple[FakeProvider, int], relay_factory: Any) -> None:
    relay = await relay_factory(provider[1])
    assert relay.handler is not None
    await compare(relay.handler)


async def test_same_state_as_aiosmtpd_tls_and_auth(
    provider: tuple[FakeProvider, int], relay_factory: Any, tls_files: dict[str, Any]
) -> None:
    relay = await relay_factory(provider[1], listen_extra=listen_extra(tls_files, required=True))
    assert relay.handler is not None and relay.handler.tls_context is not None
    await compare(relay.handler)


ADDRESSES = [
    "", "<>", "<a@b.example>", "a@b.example", "<a@b.example> SIZE=100", "<a@b.example> BODY=8BITMIME",
    '<"quoted local"@b.example>', "<@route:a@b.example>", "<a@b", "a b c", "<<a@b>>", "<" + "x" * 70 + "@b>",
    "<пользователь@пример.рф>", "<a@[127.0.0.1]>", "  <a@b.example>", "@", "<a@>", "<", '"', '<"',
]  # fmt: skip


def stock_getaddr(arg: str) -> tuple[str | None, str | None]:
    try:
        return SMTP._getaddr(RelaySMTP.__new__(RelaySMTP), arg)
    except (IndexError, AttributeError):  # stdlib parser bugs on malformed input: the relay says 553
        return None, None


@pytest.mark.parametrize("arg", ADDRESSES)
def test_getaddr_matches_aiosmtpd(arg: str) -> None:
    assert RelaySMTP.__new__(RelaySMTP)._getaddr(arg) == stock_getaddr(arg)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from([*'<>@"., :[]\\ab1-=', "é"]), max_size=30))
def test_getaddr_matches_aiosmtpd_on_anything(arg: str) -> None:
    assert RelaySMTP.__new__(RelaySMTP)._getaddr(arg) == stock_getaddr(arg)


_ATOM = st.text(alphabet=st.sampled_from([*"abcXYZ019!#$%&'*+/=?^_`{|}~-"]), min_size=1, max_size=8)
_PLAIN = st.builds(
    lambda local, domain, rest: f"<{'.'.join(local)}@{'.'.join(domain)}>{rest}",
    st.lists(_ATOM, min_size=1, max_size=3),
    st.lists(st.text(alphabet="ab-09", min_size=1, max_size=6), min_size=1, max_size=3),
    st.sampled_from(["", " ", "  SIZE=100", " BODY=8BITMIME SMTPUTF8", "\t(comment)", "(c) X", " x@y", ">"]),
)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        _PLAIN, _PLAIN.map(lambda a: a.replace("@", "@@", 1)), _PLAIN.map(lambda a: "<" + "x" * 70 + a[1:])
    )
)
def test_getaddr_fast_path_matches_aiosmtpd(arg: str) -> None:
    """Plain <local@domain> takes the relay's fast path: the same answers as aiosmtpd's parser."""
    assert RelaySMTP.__new__(RelaySMTP)._getaddr(arg) == stock_getaddr(arg)


async def test_truncated_addresses_get_553_and_the_session_goes_on(
    provider: tuple[FakeProvider, int], relay_factory: Any
) -> None:
    relay = await relay_factory(provider[1])
    raw = await Raw.connect(relay.port)
    assert (await raw.cmd(b"EHLO client.test\r\n")).startswith("250")
    for bad in (
        b"MAIL FROM:<\r\n",
        b'MAIL FROM:"\r\n',
        b'MAIL FROM:<"\r\n',
        b"MAIL FROM:<a\x00@x.example>\r\n",
    ):
        assert (await raw.cmd(bad)).startswith("553 5.1.3"), bad  # stock aiosmtpd: 451 (IndexError)
    assert (await raw.cmd(b"MAIL FROM:<cron@host.test>\r\n")).startswith("250")
    for bad in (
        b"RCPT TO:<\r\n",
        b'RCPT TO:"\r\n',
        b"RCPT TO:1@[\r\n",
        b"RCPT TO:<7999\x00@sms.example.com>\r\n",
    ):
        assert (await raw.cmd(bad)).startswith("553 5.1.3"), bad
    assert (await raw.cmd(b"RCPT TO:<79991234567@sms.example.com>\r\n")).startswith("250")
    assert (await raw.cmd(b"DATA\r\n")).startswith("354")
    assert (await raw.cmd(b"Subject: disk\r\n\r\nfull\r\n.\r\n")).startswith("250 2.0.0")
    await raw.close()
