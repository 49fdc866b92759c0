"""Field validators: one table per field of the provider command line."""

from __future__ import annotations

import pytest

from relay import fields


@pytest.mark.parametrize(
    ("raw", "groups", "want"),
    [
        ("79991234567", False, "79991234567"),
        ("+79991234567", False, "+79991234567"),
        ("+7 999 123-45-67", False, "+79991234567"),
        ("+7 (999) 123.45.67", False, "+79991234567"),
        ("G12", True, "G12"),
        ("G12", False, None),
        ("", False, None),
        ("+", False, None),
        ("123", False, None),
        ("1234567890123456", False, None),  # 16 digits
        ("0079991234567", False, None),
        ("79991234567,79991234568", False, None),
        ("7999;1234567", False, None),
        ("7999:1234567", False, None),
        ("#12345", True, None),
        ("٧٩٩٩١٢٣٤٥٦٧", False, None),  # Arabic-Indic digits
        ("７９９９１２３４５６７", False, None),  # fullwidth
        ("7999¹234567", False, None),  # superscript
    ],
)
def test_phone(raw: str, groups: bool, want: str | None) -> None:
    if want is None:
        with pytest.raises(ValueError):
            fields.phone(raw, groups=groups)
    else:
        assert fields.phone(raw, groups=groups) == want


def test_phones_dedupes_and_caps() -> None:
    assert fields.phones(["79991234567", "+7 999 123 45 67", "79991234567"]) == (
        "79991234567",
        "+79991234567",
    )
    with pytest.raises(ValueError, match="at most 100"):
        fields.phones([f"7999{n:07d}" for n in range(101)])


@pytest.mark.parametrize(
    ("raw", "ok"),
    [("ALERTS", True), ("My Shop", True), ("12345678901", True), ("123456789012345", True),
     ("1234567890123456", False), ("TOO-LONG-NAME", False), ("a:b", False), ("a,b", False),
     ("Алерт", False), ("", False)],
)  # fmt: skip
def test_sender(raw: str, ok: bool) -> None:
    if ok:
        assert fields.sender(raw) == raw
    else:
        with pytest.raises(ValueError):
            fields.sender(raw)


@pytest.mark.parametrize(
    ("raw", "ok"),
    [("1", True), ("2147483647", True), ("2147483648", False), ("0", False), ("r1a2-b.c_d", True),
     ("x" * 40, True), ("x" * 41, False), ("a:b", False), ("", False), ("a b", False)],
)  # fmt: skip
def test_request_id(raw: str, ok: bool) -> None:
    if ok:
        assert fields.request_id(raw) == raw
    else:
        with pytest.raises(ValueError):
            fields.request_id(raw)


@pytest.mark.parametrize(
    ("raw", "ok"),
    [("0", True), ("2211261030", True), ("22.11.26 10.30", True), ("9-21", True), ("0-24", True),
     ("21-9", False), ("9-25", False), ("01732252000", True), ("+30", True), ("22.11.26 10:30", False),
     ("tomorrow", False), ("", False)],
)  # fmt: skip
def test_time(raw: str, ok: bool) -> None:
    if ok:
        assert fields.time(raw) == raw
    else:
        with pytest.raises(ValueError):
            fields.time(raw)


@pytest.mark.parametrize(
    ("raw", "ok"), [("0", True), ("-3", True), ("+7", True), ("25", False), ("x", False)]
)
def test_tz(raw: str, ok: bool) -> None:
    if ok:
        assert fields.tz(raw) == raw
    else:
        with pytest.raises(ValueError):
            fields.tz(raw)


@pytest.mark.parametrize("raw", ["", "a:b", "a\nb", "a\rb", "a\u2028b", "a\x00b"])
def test_bad_password_never_echoed(raw: str) -> None:
    with pytest.raises(ValueError) as info:
        fields.password(raw)
    if raw:
        assert raw not in str(info.value)


def test_login() -> None:
    assert fields.login("") == ""  # empty: the password is an API key
    assert fields.login("my.login-1") == "my.login-1"
    with pytest.raises(ValueError):
        fields.login("a:b")
