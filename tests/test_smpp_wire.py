"""The SMPP core's fields on the wire (issue 24): the relay's submits through smpp34, the client
library chosen (docs/smpp-libraries.md), to the fake SMSC, which decodes them with smpplib's
codec; a receipt back through smpp34 into the relay's receipt parser.

The client runs in a child process of its own: smpp34's Rust runtime has crashed at interpreter
exit without a pause after stop() (docs/smpp-libraries.md), and a crash must show as this test's
failure (the child's exit status), not end pytest's process.
"""

from __future__ import annotations

import asyncio
import json
import sys

from smpplib import consts

from tests.fake_smsc import FakeSmsc, make_pdu, text_of

CHILD = r"""
import asyncio, json, sys
import smpp34
from relay.formatters import smpp
from relay.model import Entry, Options
from relay.parsers import receipt
from relay.parsers.command import Command

async def main(port: int) -> None:
    texts = ("disk /var 95% full on db1 {€}", "Диск заполнен на сервере db1 " * 4)
    cmd = Command("login", "***", "r1-abc", Options(sender="ALERTS"),
                  tuple(Entry(("+79991234567", "+79990000002"), t) for t in texts), False)
    client = smpp34.Client("127.0.0.1", port, "login", "secret", bind_type="TRX", connect_timeout_ms=5000)
    session = await asyncio.wait_for(client.connect(), 10)
    window = asyncio.Semaphore(2)  # smpp34 does not enforce its window_size: the relay's own

    async def submit(s: smpp.Submit) -> str:
        async with window:
            resp = await asyncio.wait_for(session.submit_sm(
                s.destination.value, s.short_message, source_addr=s.source.value,
                source_addr_ton=s.source.ton, source_addr_npi=s.source.npi, dest_addr_ton=s.destination.ton,
                dest_addr_npi=s.destination.npi, esm_class=s.esm_class, data_coding=s.data_coding,
                registered_delivery=1), 10)
            return resp.message_id if resp.command_status == 0 else f"status={resp.command_status}"

    ids = await asyncio.gather(*(submit(s) for s in smpp.submits(cmd)))
    print(json.dumps({"ids": ids}), flush=True)
    got = None
    for _ in range(10):  # bounded: the receipt is the next event
        event = await asyncio.wait_for(session.next(), 10)
        if isinstance(event, smpp34.DeliverSmEvent) or hasattr(event, "short_message"):
            pdu = getattr(event, "pdu", event)
            tlvs = {t.tag: bytes(t.value) for t in getattr(pdu, "tlvs", [])}
            r = receipt.parse(bytes(pdu.short_message), tlvs) if receipt.is_receipt(pdu.esm_class) else None
            got = None if r is None else {"id": r.message_id, "stat": r.stat.value, "final": r.stat.final}
            break
    print(json.dumps({"receipt": got}), flush=True)
    await session.unbind()
    await client.stop()
    await asyncio.sleep(0.05)  # the runtime's own shutdown (docs/smpp-libraries.md)

asyncio.run(main(int(sys.argv[1])))
"""


async def test_submits_reach_the_smsc_as_the_relay_made_them_and_a_receipt_comes_back() -> None:
    fake = FakeSmsc(window=2, answer_delay=0.05)
    port = await fake.start()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(port), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 30)
        ids = json.loads(line)["ids"]
        # 2 texts x 2 phones: the first one part (GSM-7 with escapes), the second 2 UCS-2 parts
        assert len(ids) == 6 and all(len(i) > 0 and not i.startswith("status=") for i in ids)
        await fake.push_receipt(ids[0])
        line = await asyncio.wait_for(child.stdout.readline(), 30)
        assert json.loads(line)["receipt"] == {"id": ids[0], "stat": "DELIVRD", "final": True}
        _, err = await asyncio.wait_for(child.communicate(), 30)
        assert child.returncode == 0, err.decode(errors="replace")[-2000:]
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        await fake.stop()
    assert fake.events[0] == "bind_transceiver" and "unbind" in fake.events
    assert (
        max(s.max_outstanding for s in fake.sessions) <= 2 and sum(s.over_window for s in fake.sessions) == 0
    )
    decoded = [(p.destination_addr.decode(), p.data_coding, *text_of(p)) for p in fake.submits]
    first = [d for d in decoded if d[1] == 0x00]
    assert sorted(d[0] for d in first) == ["79990000002", "79991234567"]
    assert {d[4] for d in first} == {"disk /var 95% full on db1 {€}"} and {d[3] for d in first} == {1}
    for phone in ("79991234567", "79990000002"):
        parts = [d for d in decoded if d[0] == phone and d[1] == 0x08]
        assert len(parts) == 2 and len({d[2] for d in parts}) == 1 and {d[3] for d in parts} == {2}
        assert "".join(d[4] for d in parts) == "Диск заполнен на сервере db1 " * 4
    assert {p.source_addr.decode() for p in fake.submits} == {"ALERTS"}
    assert {p.source_addr_ton for p in fake.submits} == {5}


async def test_a_wrong_password_is_refused_by_the_fake() -> None:
    fake = FakeSmsc(password="other")
    port = await fake.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(make_pdu("bind_transceiver", 1, system_id="login", password="secret").generate())
        head = await asyncio.wait_for(reader.readexactly(16), 5)
        assert int.from_bytes(head[8:12], "big") == consts.SMPP_ESME_RINVPASWD
    finally:
        writer.close()
        await fake.stop()
