"""Storm mail for the daemon tests (tests/test_storm_daemon.py, tests/test_ha.py): corpus alerts
varied per host and per repeat, the routes they go to, and the alerts read back out of the SMS."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage

from tests.fakes import ReplyingProvider
from tests.helpers import CORPUS, STORM_ROUTES

T0 = 1_795_348_800.0  # 2026-11-22 12:00 UTC


def variant(name: str, n: int, recovery: bool = False) -> EmailMessage:
    """Corpus mail `name` as it would come for the n-th host/problem of a storm."""
    msg = email.message_from_bytes((CORPUS / name).read_bytes(), policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    body = msg.get_content()
    subject = str(msg["Subject"])
    swaps = [("app-03", f"app-{n:02}"), ("481516", str(481516 + n)), ("web01", f"web{n:02}")]
    if recovery and "nagios" in name:
        swaps += [("PROBLEM", "RECOVERY"), ("DOWN", "UP")]
    for old, new in swaps:
        body, subject = body.replace(old, new), subject.replace(old, new)
    del msg["Subject"]
    msg["Subject"] = subject
    msg.set_content(body)
    del msg["Message-ID"]
    return msg


def to(msg: EmailMessage, rcpt: str) -> EmailMessage:
    del msg["To"]
    msg["To"] = rcpt
    return msg


def alerts_in(sms: str) -> list[str]:
    """The alerts an SMS carries: a digest has a header line and one line per alert; a lone
    alert is the whole text."""
    first, _, rest = sms.partition("\n")
    if first.endswith(" alerts:"):
        return [line for line in rest.split("\n") if not line.startswith("(+")]
    return [sms]


def sms_texts(fake: ReplyingProvider) -> list[str]:
    return [e.text for r in fake.received if r.command for e in r.command.entries]


DEFAULT_STORM_ROUTES = (
    STORM_ROUTES
    + r"""  - name: defaults
    match: {recipient: '^defaults@sms\.example\.com$'}
    phones: ["+79990000021", "+79990000022"]
    storm: true
"""
)


def volatile(name: str, host: str, n: int) -> EmailMessage:
    """A corpus mail for `host`, as its n-th repeat: new time, value and event id each time."""
    msg = variant(name, 3)
    body = msg.get_content().replace("app-03", host).replace("web03", host)
    body = re.sub(r"\d\d:\d\d:\d\d", f"03:{n % 60:02}:{(7 * n) % 60:02}", body)
    body = re.sub(r"97\.2 %", f"{90 + n % 9}.{n % 10} %", body)
    body = re.sub(r"Original problem ID: \d+", f"Original problem ID: {1000 + n}", body)
    subject = str(msg["Subject"]).replace("app-03", host).replace("web03", host)
    del msg["Subject"]
    msg["Subject"] = subject
    msg.set_content(body)
    return msg
