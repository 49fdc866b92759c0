"""provider.failover with transport: smpp and smpp.failover_to: smtp (issue 24): while no SMPP
session can be bound (the SMSC refuses the bind), mail goes to the provider's SMTP gateway; once
the hold is over and a session binds, the first mail SMPP takes switches back. The real SMPP
transport and session against the fake SMSC, the real SMTP transport against the fake
gateway (aiosmtpd), in a child process (tests/test_smpp_session.py says why)."""

from __future__ import annotations

from tests.fake_smsc import run_child

CHILD = r"""
import asyncio, json
from datetime import datetime, UTC
from relay.delivery.failover import FailoverState, FailoverTransport
from relay.delivery.smpp import SmppTransport
from relay.delivery.smpp_session import SmppSession, SmppSettings
from relay.delivery.smtp import SmtpTransport
from relay.delivery.transport import Outgoing
from relay.formatters import mime
from relay.metrics import Metrics
from tests.fake_smsc import FakeSmsc
from tests.fakes import FakeProvider
from tests.helpers import serve_fake

def outgoing(n: int) -> Outgoing:
    relay_id = f"r{n}"
    env = mime.Envelope("replies@relay.example.com", "send@send.smscentre.com", "", relay_id, "relay.test")
    line = f"mylogin:secret:{relay_id}:,:,,ALERTS,:79991234567:mail {n}"
    return Outgoing(relay_id, env.mail_from, env.rcpt_to, mime.build(line, env, "utf-8", datetime.now(UTC)))

async def main() -> None:
    smsc = FakeSmsc(refuse_binds=True)
    port = await smsc.start()
    gateway = FakeProvider()
    server, smtp_port = await serve_fake(gateway)
    session = SmppSession(SmppSettings(hosts=(("127.0.0.1", port),), system_id="login", password="secret",
                                       bind_timeout=0.5, min_backoff=0.1, max_backoff=0.2))
    session.start()
    metrics = Metrics()
    now = [0.0]
    state = FailoverState(metrics, hold=60.0, clock=lambda: now[0])
    smtp = SmtpTransport(("127.0.0.1",), smtp_port, timeout=5, starttls="off", local_hostname="relay.test")
    transport = FailoverTransport(SmppTransport(session), smtp, state, ("smpp", "smtp"))
    out = {"via": []}
    for n in range(2):  # the first finds no session: over SMTP, and so the next, within the hold
        out["via"].append((await transport.send(outgoing(n))).via.value)
    out["active"] = state.active
    smsc.refuse_binds = False
    bound = await session.wait_bound(10)
    now[0] += 61  # the hold runs out: the next mail tries SMPP first
    out["bound"] = bound
    out["via"].append((await transport.send(outgoing(2))).via.value)
    out["active_after"] = state.active
    out["smtp_texts"] = [m.sms.entries[0].text for m in gateway.received]
    out["smpp_submits"] = len(smsc.submits)
    out["failovers"] = {to: metrics.registry.get_sample_value("smsc_relay_failovers_total", {"to": to}) for to in ("smtp", "smpp")}
    await transport.close()
    await session.stop()
    await smsc.stop()
    server.close()
    print(json.dumps(out))

asyncio.run(main())
"""


async def test_smpp_fails_over_to_smtp_while_unbound_and_back() -> None:
    out = await run_child(CHILD, timeout=60)
    assert out["via"] == ["smtp", "smtp", "smpp"]
    assert out["active"] and out["bound"] and not out["active_after"]
    assert [t.split("\n")[-1] for t in out["smtp_texts"]] == ["mail 0", "mail 1"]
    assert out["smpp_submits"] == 1  # only the mail after the switch back
    assert out["failovers"] == {"smtp": 1.0, "smpp": 1.0}  # one switch each way
