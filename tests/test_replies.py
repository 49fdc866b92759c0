"""Every reply constant is named after its code, and its enhanced code has the same class."""

from __future__ import annotations

import re

import pytest

from relay import errors, replies
from relay.replies import Reply

CONSTANTS = {name: value for name, value in vars(replies).items() if isinstance(value, Reply)}


@pytest.mark.parametrize("name", sorted(CONSTANTS))
def test_name_matches_code(name: str) -> None:
    reply = CONSTANTS[name]
    assert re.fullmatch(r"S[2-5][0-9]{2}_[A-Z0-9_]+", name)
    assert int(name[1:4]) == reply.code
    assert reply.enhanced.split(".")[0] == str(reply.code)[0]
    assert re.fullmatch(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}", reply.enhanced)


def test_reply_is_one_line_whatever_its_text() -> None:
    reply = replies.S554_NO_CONTENT.with_text("bad\r\n250 OK\nsmuggled")
    assert str(reply) == "554 5.6.0 bad 250 OK smuggled"


@pytest.mark.parametrize(
    ("error", "code"),
    [(errors.TemporaryError("x"), 451), (errors.SpoolError("x"), 451), (errors.NoRouteError("a@b"), 550),
     (errors.AddressError("x"), 553), (errors.TooBigError("x"), 552), (errors.ContentError("x"), 554),
     (errors.LoopError("x"), 554)],
)  # fmt: skip
def test_error_tree_maps_to_replies(error: errors.RelayError, code: int) -> None:
    assert error.reply.code == code
    assert (code < 500) == isinstance(error, errors.TemporaryError)
