"""The fake SMSC itself (tests/fake_smsc.py), driven over raw sockets with smpplib's codec, not
the relay's smpp34 (so no child process): binds taken and refused, receipts pushed for accepted
submits (each stat, late, on a later session, lost, never, twice, for an unknown id), an
incoming SMS, the deliver_sm_resp counted, sessions dropped and idle, nothing left at stop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from smpplib import consts, smpp

from relay.parsers import receipt
from tests.fake_smsc import DEFAULT_PHONE, MESSAGE_STATE, FakeSmsc, make_pdu

WAIT = 5.0  # seconds any one read or condition may take


class Esme:
    """A bare SMPP client: one connection, PDUs in and out by smpplib's codec."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.sequence = 0

    @classmethod
    async def connect(cls, port: int) -> Esme:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), WAIT)
        return cls(reader, writer)

    async def send(self, command: str, sequence: int | None = None, **fields: Any) -> None:
        if sequence is None:
            self.sequence += 1
            sequence = self.sequence
        self.writer.write(make_pdu(command, sequence, **fields).generate())
        await asyncio.wait_for(self.writer.drain(), WAIT)

    async def read(self) -> Any:
        head = await asyncio.wait_for(self.reader.readexactly(4), WAIT)
        rest = await asyncio.wait_for(self.reader.readexactly(int.from_bytes(head, "big") - 4), WAIT)
        return smpp.parse_pdu(head + rest, sequence=0, allow_unknown_opt_params=True)

    async def bind(self, password: str = "secret") -> int:
        await self.send("bind_transceiver", system_id="login", password=password)
        resp = await self.read()
        assert resp.command == "bind_transceiver_resp"
        return int(resp.status)

    async def submit(self, phone: str = "79990000001") -> str:
        """A submit_sm's message id (the fake's answer must be OK)."""
        await self.send(
            "submit_sm", source_addr="ALERTS", source_addr_ton=5, destination_addr=phone,
            dest_addr_ton=1, dest_addr_npi=1, registered_delivery=1, short_message=b"disk full",
        )  # fmt: skip
        resp = await self.read()
        assert (resp.command, resp.status) == ("submit_sm_resp", consts.SMPP_ESME_ROK)
        return str(resp.message_id.decode())

    async def deliver(self) -> Any:
        """The next deliver_sm, answered as a client must."""
        pdu = await self.read()
        assert pdu.command == "deliver_sm"
        await self.send("deliver_sm_resp", pdu.sequence)
        return pdu

    async def unbind(self) -> None:
        await self.send("unbind")
        assert (await self.read()).command == "unbind_resp"

    async def ended(self) -> str:
        """How the fake ends the connection: "eof" (closed) or "reset" (dropped); "data" if it
        sends something more first."""
        try:
            data = await asyncio.wait_for(self.reader.read(1), WAIT)
        except ConnectionResetError:
            return "reset"
        return "eof" if data == b"" else "data"

    def close(self) -> None:
        self.writer.close()


async def until(condition: Callable[[], bool]) -> None:
    """Wait, within WAIT seconds, for `condition` to hold: a state polled, not a time slept."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def start() -> AsyncIterator[Callable[..., Any]]:
    """Start a FakeSmsc with the given settings; give it and its port; stop it after."""
    fakes: list[FakeSmsc] = []

    async def start(**settings: Any) -> tuple[FakeSmsc, int]:
        fake = FakeSmsc(**settings)
        fakes.append(fake)
        return fake, await fake.start()

    yield start
    for fake in fakes:
        await fake.stop()


async def test_a_bind_is_taken_and_refused_while_binds_are_refused(start: Any) -> None:
    fake, port = await start()
    esme = await Esme.connect(port)
    assert await esme.bind() == consts.SMPP_ESME_ROK
    fake.refuse_binds = True
    refused = await Esme.connect(port)
    assert await refused.bind() == consts.SMPP_ESME_RBINDFAIL
    assert await refused.ended() == "eof"
    fake.refuse_binds = False
    again = await Esme.connect(port)
    assert await again.bind() == consts.SMPP_ESME_ROK
    assert [s.bound for s in fake.sessions] == [True, False, True]
    for e in (esme, refused, again):
        e.close()


@pytest.mark.parametrize("stat", ["DELIVRD", "UNDELIV", "EXPIRED", "REJECTD"])
async def test_an_accepted_submit_gets_its_receipt_after_the_delay(start: Any, stat: str) -> None:
    fake, port = await start(receipts=lambda pdu: stat, receipt_delay=0.3)
    esme = await Esme.connect(port)
    await esme.bind()
    started = time.monotonic()
    message_id = await esme.submit("79990000005")
    pdu = await esme.deliver()
    assert time.monotonic() - started >= 0.29
    assert (pdu.esm_class, pdu.source_addr.decode(), pdu.destination_addr.decode()) == (
        0x04,
        "79990000005",  # the submit's destination
        "ALERTS",
    )
    assert pdu.receipted_message_id.decode() == message_id and pdu.message_state == MESSAGE_STATE[stat]
    r = receipt.parse(pdu.short_message)  # the text alone says it too, as the relay reads it
    assert r is not None and (r.message_id, r.stat.value) == (message_id, stat)
    assert fake.receipts_sent == [(message_id, stat)]
    await until(lambda: fake.deliver_resps == 1)
    esme.close()


async def test_a_late_receipt_comes_on_the_session_bound_then_or_is_lost(start: Any) -> None:
    fake, port = await start(receipts=lambda pdu: "DELIVRD", receipt_delay=1.0)
    first = await Esme.connect(port)
    await first.bind()
    message_id = await first.submit()
    await first.unbind()
    second = await Esme.connect(port)
    await second.bind()
    pdu = await second.deliver()
    assert pdu.receipted_message_id.decode() == message_id
    await second.unbind()
    # none bound when it fires: lost, as a real SMSC may lose it
    fake.receipt_delay = 0.2
    third = await Esme.connect(port)
    await third.bind()
    await third.submit()
    await third.unbind()
    await until(lambda: "receipt-lost" in fake.events)
    assert fake.receipts_sent == [(message_id, "DELIVRD")]
    for e in (first, second, third):
        e.close()


async def test_no_receipt_when_receipts_says_never(start: Any) -> None:
    fake, port = await start(receipt_delay=0.0)  # the default: never
    esme = await Esme.connect(port)
    await esme.bind()
    await esme.submit()
    await esme.send("enquire_link")
    assert (await esme.read()).command == "enquire_link_resp"  # nothing came before it
    assert fake.receipts_sent == [] and "receipt-lost" not in fake.events
    esme.close()


async def test_duplicate_receipts_come_twice(start: Any) -> None:
    fake, port = await start(receipts=lambda pdu: "DELIVRD", duplicate_receipts=True)
    esme = await Esme.connect(port)
    await esme.bind()
    message_id = await esme.submit()
    ids = [(await esme.deliver()).receipted_message_id.decode() for _ in range(2)]
    assert ids == [message_id] * 2 and fake.receipts_sent == [(message_id, "DELIVRD")] * 2
    await until(lambda: fake.deliver_resps == 2)
    esme.close()


async def test_a_receipt_for_an_id_never_given_is_pushed_as_asked(start: Any) -> None:
    fake, port = await start()
    assert not await fake.push_receipt("ffff0000", "DELIVRD")  # none bound: lost
    assert fake.events == ["receipt-lost"]
    esme = await Esme.connect(port)
    await esme.bind()
    assert await fake.push_receipt("ffff0000", "UNDELIV")
    pdu = await esme.deliver()
    assert (pdu.receipted_message_id.decode(), pdu.source_addr.decode()) == ("ffff0000", DEFAULT_PHONE)
    assert b"stat:UNDELIV" in pdu.short_message and fake.receipts_sent == [("ffff0000", "UNDELIV")]
    esme.close()


async def test_an_incoming_sms_is_a_deliver_sm_that_is_no_receipt(start: Any) -> None:
    fake, port = await start()
    esme = await Esme.connect(port)
    await esme.bind()
    assert await fake.push_sms("STOP {disk} 5€ @home", phone="79990000003")
    pdu = await esme.deliver()
    assert (pdu.esm_class, pdu.data_coding, pdu.source_addr.decode()) == (0, 0, "79990000003")
    assert not receipt.is_receipt(pdu.esm_class)
    assert pdu.short_message.decode("gsm03.38") == "STOP {disk} 5€ @home"
    await until(lambda: fake.deliver_resps == 1)
    assert fake.delivers_sent == 1 and fake.receipts_sent == []
    esme.close()


async def test_dropped_sessions_end_abruptly_and_a_new_bind_is_taken(start: Any) -> None:
    fake, port = await start()
    esme = await Esme.connect(port)
    await esme.bind()
    fake.drop_sessions()
    assert await esme.ended() == "reset"  # abruptly: no unbind, no FIN
    await until(lambda: not fake._tasks)  # the session's task has ended
    assert "drop" in fake.events and "peer-closed" not in fake.events
    assert not await fake.push_sms("hello")  # nothing bound any more
    again = await Esme.connect(port)
    assert await again.bind() == consts.SMPP_ESME_ROK
    esme.close()
    again.close()


async def test_an_idle_session_is_dropped(start: Any) -> None:
    fake, port = await start(idle_timeout=0.3)
    esme = await Esme.connect(port)
    await esme.bind()
    assert await esme.ended() == "eof"
    assert fake.events == ["bind_transceiver", "idle-drop"] and not fake.sessions[0].bound
    esme.close()


async def test_stop_leaves_no_task_with_a_receipt_pending() -> None:
    fake = FakeSmsc(receipts=lambda pdu: "DELIVRD", receipt_delay=60, answer_delay=0.0)
    port = await fake.start()
    esme = await Esme.connect(port)
    await esme.bind()
    await esme.submit()
    assert fake._tasks  # the session, and the receipt waiting its delay
    await asyncio.wait_for(fake.stop(), WAIT)
    assert not fake._tasks and asyncio.all_tasks() == {asyncio.current_task()}
    assert fake.receipts_sent == [] and await esme.ended() == "eof"
    esme.close()
