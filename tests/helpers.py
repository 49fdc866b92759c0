"""Shared test helpers: configs, a deterministic id source, and rendering shortcuts."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from relay import config as config_mod
from relay import pipeline

CORPUS = Path(__file__).parent / "corpus"
NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
PASSWORD = "T0p-s3cret,pw"

# The routes every daemon and pipeline test uses (no format fields: plain YAML).
ROUTES = r"""
aliases:
  oncall: ["+79990000001", "+79990000002"]
routes:
  - name: number
    match: {recipient: '^(?P<phones>\+?[0-9]{10,15})@sms\.example\.com$'}
  - name: oncall
    match: {recipient: '^oncall@sms\.example\.com$'}
    phones: [oncall]
    sender: ALERTS
  - name: ops
    match: {recipient: '^ops@sms\.example\.com$'}
    mode: email2sms
"""

BASE_CONFIG = (
    f"""
provider:
  login: mylogin
  password: "{PASSWORD}"
  reply_address: replies@relay.example.com
"""
    + ROUTES
    + r"""  - name: legacy
    match: {recipient: '^send@send\.smscentre\.com$'}
    mode: passthrough
"""
)


def make_config(text: str = BASE_CONFIG) -> config_mod.Config:
    return config_mod.parse(text, env={})


def counter(prefix: str = "id") -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"{prefix}{next(numbers)}"


def render(
    raw: bytes,
    rcpt: list[str],
    cfg: config_mod.Config | None = None,
    mail_from: str = "app@example.com",
) -> pipeline.Rendered:
    return pipeline.render(
        raw,
        mail_from=mail_from,
        rcpt_tos=rcpt,
        config=cfg or make_config(),
        new_id=counter(),
        now=NOW,
        hostname="relay.test",
    )


def mail(body: str, subject: str = "Alert", charset: str = "utf-8", extra: str = "") -> bytes:
    head = f"From: app@example.com\r\nSubject: {subject}\r\nContent-Type: text/plain; charset={charset}\r\n"
    return (head + extra + "\r\n").encode("ascii") + body.encode(charset)
