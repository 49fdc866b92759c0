"""The provider's HTTP API answers (fmt=3, JSON) -> ProviderReply, PhoneStatus, a balance.

An answer that is not what the API documents raises ValueError: the caller cannot tell
whether the request took effect, and treats it as such (never as a success or a failure).
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

from relay.model import PhoneStatus, ProviderReply, ReplyKind

MAX_ANSWER = 1024 * 1024  # an answer is a few hundred bytes; a list status of 200 pairs ~40 KB
MAX_TEXT = 200  # of an error description kept


def _load(body: bytes) -> Any:
    if len(body) > MAX_ANSWER:
        raise ValueError(f"answer of {len(body)} bytes")
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a JSON answer: {_preview(body)}") from exc


def _preview(body: bytes) -> str:
    return " ".join(body[:80].decode("utf-8", "replace").split()) or "(empty)"


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{name} is not a number")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} {str(value)[:20]!r} is not a number") from None


def _text(value: Any) -> str:
    return " ".join(str(value).split())[:MAX_TEXT]


def amount(value: Any) -> str:
    """A cost or balance as the API gives it (a string), checked to be a number."""
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{str(value)[:20]!r} is not an amount") from None
    if not number.is_finite():
        raise ValueError(f"{str(value)[:20]!r} is not an amount")
    return str(number)


def send_answer(body: bytes, relay_id: str) -> ProviderReply:
    """send.php's answer. An error names its code; success its SMS count, cost and balance.
    The answer's id must be ours: anything else is not an answer to this request."""
    data = _load(body)
    if not isinstance(data, dict):
        raise ValueError("answer is not a JSON object")
    line = _text(json.dumps(data, ensure_ascii=False))
    if "error_code" in data:
        code = _int(data["error_code"], "error_code")
        return ProviderReply(
            ReplyKind.ERROR, relay_id, code=code, description=_text(data.get("error", "")), line=line
        )
    if "cnt" not in data:
        raise ValueError(f"answer has neither error_code nor cnt: {line[:80]}")
    answered = str(data.get("id", relay_id))
    if answered != relay_id:
        raise ValueError(f"answer is for id {answered[:40]!r}, not {relay_id}")
    return ProviderReply(
        ReplyKind.OK,
        relay_id,
        sms_count=_int(data["cnt"], "cnt"),
        line=line,
        cost=amount(data["cost"]) if "cost" in data else "",
        balance=amount(data["balance"]) if "balance" in data else "",
    )


def status_error(data: Any) -> tuple[int, str] | None:
    """(code, description) when status.php answered an error instead of statuses."""
    if isinstance(data, dict) and "error_code" in data:
        return _int(data["error_code"], "error_code"), _text(data.get("error", ""))
    return None


def statuses(body: bytes, pairs: list[tuple[str, str]]) -> list[PhoneStatus]:
    """A list status answer: one record per (id, phone) asked, each naming its id and phone.
    Records for pairs we did not ask about are dropped; raises StatusError on an error answer."""
    data = _load(body)
    error = status_error(data)
    if error is not None:
        raise StatusError(*error)
    records = data if isinstance(data, list) else [data]
    asked = set(pairs)
    result = []
    for record in records:
        if not isinstance(record, dict):
            raise ValueError("status record is not an object")
        relay_id, phone = str(record.get("id", "")), str(record.get("phone", "")).lstrip("+")
        match = next(((i, p) for i, p in asked if i == relay_id and p.lstrip("+") == phone), None)
        if match is None:
            if len(pairs) == 1 and not record.get("id"):  # a single answer names neither
                match = pairs[0]
            else:
                continue
        at = record.get("last_timestamp", 0)
        result.append(
            PhoneStatus(
                match[0],
                match[1],
                _int(record.get("status"), "status"),
                _int(record.get("err", 0), "err"),
                float(at) if isinstance(at, int | float) and not isinstance(at, bool) else 0.0,
            )
        )
    return result


def balance(body: bytes) -> str:
    data = _load(body)
    if isinstance(data, dict) and "error_code" in data:
        code, text = _int(data["error_code"], "error_code"), _text(data.get("error", ""))
        raise StatusError(code, text)
    if not isinstance(data, dict) or "balance" not in data:
        raise ValueError("answer has no balance")
    return amount(data["balance"])


class StatusError(Exception):
    """status.php or balance.php answered an error code."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(f"ERROR {code}: {description}")
        self.code = code
        self.description = description
