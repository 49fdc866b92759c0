"""DKIM: provider mail signed on the way out; replies trusted only with a valid, whole-body
signature of the provider's domain; DNS never blocks the event loop."""

from __future__ import annotations

import asyncio
import base64
import email
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import aiosmtplib
import dkim
import pytest

from relay.cli import main as cli
from relay.config.schema import DkimKey
from relay.delivery import dkim as dkimsig
from tests import spooldb
from tests.fakes import ReplyingProvider
from tests.helpers import message, smtplib_send, wait_state
from tests.spooldb import row

pytestmark = pytest.mark.timeout(60)


class Keys:
    """Two real RSA keys (ours and the provider's) and a DNS stand-in that serves them."""

    def __init__(self, directory: Path) -> None:
        self.ours = directory / "relay.pem"
        self.provider = directory / "smsc.pem"
        self.records: dict[bytes, bytes] = {}
        for path, selector, domain in (
            (self.ours, "smsc", "relay.example.com"),
            (self.provider, "mail", "smsc.ru"),
        ):
            dkimsig.keygen(path, domain=domain, selector=selector)
            der = subprocess.run(["openssl", "pkey", "-in", str(path), "-pubout", "-outform", "DER"],
                                 check=True, capture_output=True).stdout  # fmt: skip
            self.records[f"{selector}._domainkey.{domain}.".encode()] = (
                b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)
            )
        self.lookups = 0
        # A resolver that hangs until the test opens the gate: `entered` says a lookup is waiting.
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.gate_timed_out = False

    def dns(self, name: bytes, timeout: int = 5) -> bytes | None:
        self.lookups += 1
        if self.gate is not None:
            self.entered.set()
            # Bounded, so that a lookup wrongly run on the event loop ends the hang (and the test
            # fails on gate_timed_out) instead of hanging the suite.
            if not self.gate.wait(20):
                self.gate_timed_out = True
        return self.records.get(name)

    def provider_key(self) -> DkimKey:
        return DkimKey("smsc.ru", "mail", self.provider.read_bytes())


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return Keys(tmp_path_factory.mktemp("dkim"))


@pytest.fixture
async def signed_relay(replying_relay: Any, keys: Keys) -> tuple[ReplyingProvider, Any]:
    extra = (f"  dkim: {{domain: relay.example.com, selector: smsc, key_file: {keys.ours}}}\n"
             "  verify_replies: true\n")  # fmt: skip
    fake, relay = await replying_relay(
        ReplyingProvider(signer=keys.provider_key()), provider_extra=extra, dnsfunc=keys.dns
    )
    return fake, relay


async def test_provider_mail_is_signed_and_signed_replies_apply(
    signed_relay: tuple[ReplyingProvider, Any], keys: Keys
) -> None:
    fake, relay = signed_relay
    await asyncio.to_thread(smtplib_send, relay.port, message())
    await wait_state(relay, "confirmed")  # the provider's signed OK was trusted
    raw = fake.received[0].raw
    assert raw.startswith(b"DKIM-Signature: ")
    assert dkim.verify(raw, dnsfunc=keys.dns)
    assert b"d=relay.example.com" in raw and b"s=smsc" in raw


@pytest.mark.parametrize(
    ("forgery", "reason"),
    [("unsigned", "no valid signature"), ("other-domain", "signed by relay.example.com, not by smsc.ru, smscentre.com"),
     ("body-length", "body length (l=) signatures are not accepted")],
)  # fmt: skip
async def test_forged_replies_change_nothing(
    signed_relay: tuple[ReplyingProvider, Any], keys: Keys, forgery: str, reason: str
) -> None:
    fake, relay = signed_relay
    fake.answer = lambda got: None  # the real provider stays silent
    await asyncio.to_thread(smtplib_send, relay.port, message())
    sent = await wait_state(relay, "sent")
    body = f"ERROR = 7 (forged), ID - {sent['id']}\r\n".encode()
    mail = (
        b"From: noreply@smsc.ru\r\nTo: replies@relay.example.com\r\nSubject: result\r\nMessage-ID: <f@x>\r\n\r\n"
        + body
    )
    if forgery == "other-domain":
        mail = dkimsig.sign(DkimKey("relay.example.com", "smsc", keys.ours.read_bytes()), mail)
    if forgery == "body-length":
        # A real smsc.ru signature over a short body, with text appended after it (l= abuse).
        short = mail.replace(body, b"OK\r\n")
        header = dkim.sign(short, b"mail", b"smsc.ru", keys.provider.read_bytes(), length=True)
        mail = header + short + body
    await asyncio.to_thread(_send, relay.port, mail)
    replies = await spooldb.select(relay, "replies", "outcome")
    assert [r[0] for r in replies] == [f"kept (untrusted: DKIM: {reason})"]
    assert (await row(relay))["state"] == "sent"


def _send(port: int, mail: bytes) -> None:
    import smtplib

    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("noreply@smsc.ru", ["replies@relay.example.com"], mail)


async def test_slow_dns_does_not_block_the_loop(
    signed_relay: tuple[ReplyingProvider, Any], keys: Keys
) -> None:
    """Shown by order, not by time: while the reply's key lookup hangs, the relay answers another
    client, and the reply applies only once the lookup is let go. Were the lookup run on the event
    loop, nothing would answer until the gate's bound ran out, and gate_timed_out would say so."""
    _fake, relay = signed_relay
    keys.gate, keys.entered, keys.gate_timed_out = threading.Event(), threading.Event(), False
    try:
        await asyncio.to_thread(smtplib_send, relay.port, message())
        assert await asyncio.to_thread(keys.entered.wait, 30)  # the reply's lookup hangs now
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.port, timeout=30)
        await client.connect()
        assert (await client.noop()).code == 250  # the loop is free while the lookup waits
        await client.quit()
        assert (await row(relay))["state"] == "sent"  # the reply is held by its lookup
        assert not keys.gate_timed_out
        keys.gate.set()
        await wait_state(relay, "confirmed")
        assert not keys.gate_timed_out
    finally:
        keys.gate.set()
        keys.gate = None


def test_dkim_keygen_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "k.pem"
    assert cli.main(["dkim-keygen", "--domain", "relay.example.com", "--key", str(key)]) == 0
    out = capsys.readouterr().out
    assert 'smsc._domainkey.relay.example.com. IN TXT ( "v=DKIM1; k=rsa; p=' in out
    assert oct(os.stat(key).st_mode & 0o777) == "0o600"
    assert (
        cli.main(["dkim-keygen", "--domain", "relay.example.com", "--key", str(key)]) == 1
    )  # never overwrites
    assert "not overwriting" in capsys.readouterr().err


def test_signed_mail_still_parses_as_a_command(keys: Keys) -> None:
    from tests.helpers import make_config, render

    (pm,) = render(b"Subject: x\r\n\r\ny", ["79991234567@sms.example.com"], make_config()).provider_mails
    signed = dkimsig.sign(DkimKey("relay.example.com", "smsc", keys.ours.read_bytes()), pm.message)
    assert email.message_from_bytes(signed).get_payload(decode=True) == email.message_from_bytes(
        pm.message
    ).get_payload(decode=True)
