"""The SMPP transport (issue 24, relay/delivery/smpp.py) against the fake SMSC: every part taken
is the provider's OK; a refused phone is its ERROR 7; a throttled part goes again; a lost part
leaves the request uncertain, sent again only after the provider's minute; no session bound
is the upstream unavailable (nothing sent: not uncertain, and failover may take it); mail that is no command line is refused. In a child process, as
tests/test_smpp_session.py says why.
"""

from __future__ import annotations

from tests.fake_smsc import run_child

CHILD = r"""
import asyncio, json, socket
from datetime import datetime, UTC
from smpplib import consts
from relay.delivery.smpp import SmppTransport
from relay.delivery.smpp_session import SmppSession, SmppSettings
from relay.delivery.transport import Outgoing
from relay.errors import DeliveryError
from relay.formatters import mime
from tests.fake_smsc import NACK, FakeSmsc

def outgoing(line: str, relay_id: str = "r1") -> Outgoing:
    env = mime.Envelope("replies@relay.example.com", "send@send.smscentre.com", "", relay_id, "relay.test")
    return Outgoing(relay_id, env.mail_from, env.rcpt_to, mime.build(line, env, "utf-8", datetime.now(UTC)))

async def outcome(transport: SmppTransport, mail: Outgoing) -> dict:
    try:
        a = await transport.send(mail)
    except DeliveryError as exc:
        return {"error": type(exc).__name__, "uncertain": exc.uncertain, "retry_after": exc.retry_after,
                "temporary": exc.temporary, "text": exc.text}
    r = a.answer
    return {"via": a.via.value, "kind": r.kind.value, "code": r.code, "sms": r.sms_count, "line": r.line}

async def main() -> None:
    throttled = {"79990000003": 2}
    def status_for(pdu):
        phone = pdu.destination_addr.decode()
        if phone == "79990000007":
            return consts.SMPP_ESME_RINVDSTADR
        if throttled.get(phone, 0) > 0:
            throttled[phone] -= 1
            return consts.SMPP_ESME_RTHROTTLED
        if phone == "79990000009" and pdu.short_message[5:6] == b"\x02":
            return NACK  # the second part of a long text
        return consts.SMPP_ESME_ROK
    fake = FakeSmsc(window=10, status_for=status_for)
    port = await fake.start()
    session = SmppSession(SmppSettings(hosts=(("127.0.0.1", port),), system_id="login", password="secret",
                                       bind_timeout=3, throttle_pause=0.1))
    session.start()
    transport = SmppTransport(session)
    out = {}
    out["ok"] = await outcome(transport, outgoing("mylogin:***:r1:,:,,ALERTS,:79991234567,79990000002:disk full"))
    out["bad_phone"] = await outcome(transport, outgoing("mylogin:***:r2:,:,,ALERTS,:79990000007:x"))
    out["throttled"] = await outcome(transport, outgoing("mylogin:***:r3:,:,,ALERTS,:79990000003:x"))
    out["lost_part"] = await outcome(transport, outgoing("mylogin:***:r4:,:,,ALERTS,:79990000009:" + "y" * 300))
    out["no_command"] = await outcome(transport, outgoing("hello, this is no command line"))
    out["submits"] = len(fake.submits)
    await session.stop()
    s = socket.socket(); s.bind(("127.0.0.1", 0)); closed = s.getsockname()[1]; s.close()
    down = SmppSession(SmppSettings(hosts=(("127.0.0.1", closed),), system_id="login", password="secret",
                                    bind_timeout=0.5, min_backoff=5))
    down.start()
    out["no_session"] = await outcome(SmppTransport(down), outgoing("mylogin:***:r5:,:,,ALERTS,:79991234567:x"))
    await down.stop()
    await fake.stop()
    print(json.dumps(out))

asyncio.run(main())
"""


async def test_the_transport_maps_every_answer_as_the_other_transports_do() -> None:
    out = await run_child(CHILD, timeout=90)
    ok = out["ok"]
    assert (ok["via"], ok["kind"], ok["sms"]) == ("smpp", "ok", 2) and "message_id" in ok["line"]
    assert (out["bad_phone"]["kind"], out["bad_phone"]["code"]) == ("error", 7)  # fails, as ERROR 7 does
    assert (out["throttled"]["kind"], out["throttled"]["sms"]) == ("ok", 1)  # taken at the third try
    lost = out["lost_part"]
    assert lost["error"] == "UpstreamDeferred" and lost["uncertain"] and lost["retry_after"] >= 61
    assert "1 of 2 part(s) taken" in lost["text"]
    assert out["no_command"]["error"] == "UpstreamRefused" and not out["no_command"]["temporary"]
    gone = out["no_session"]
    # Nothing went out: the upstream's fault (a connection error), which provider.failover takes
    assert gone["error"] == "UpstreamUnavailable" and not gone["uncertain"] and gone["retry_after"] == 0
    assert "no SMPP session bound" in gone["text"]
    # 2 + 1 + 3 (throttled twice) + 2 (the long text's parts); nothing for the mail that is no command
    assert out["submits"] == 8
