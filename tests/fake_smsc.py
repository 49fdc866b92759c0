"""A fake of the provider's SMPP server (issue 24) on 127.0.0.1 port 0.

Every PDU is encoded and decoded by smpplib's codec (a second SMPP implementation, independent
of the relay's client library, so each checks the other); only the 4-byte command_length framing
is done here. It checks the bind's system_id and password, answers enquire_link and unbind, keeps
every submit_sm decoded, answers each with a message id (or the status `status_for` gives, or a
generic_nack), counts submits outstanding against its window, drops a session idle past
`idle_timeout` (the provider's 2 minutes, shorter in tests) and pushes delivery receipts.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec the fake decodes GSM-7 with)
from smpplib import consts, smpp

NACK = -1  # status_for's answer for a generic_nack instead of a submit_sm_resp


@dataclass
class Session:
    writer: asyncio.StreamWriter
    bound: bool = False
    outstanding: int = 0
    max_outstanding: int = 0
    over_window: int = 0
    sequence: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


class FakeSmsc:
    def __init__(
        self,
        *,
        system_id: str = "login",
        password: str = "secret",
        window: int = 10,
        idle_timeout: float = 120.0,
        answer_delay: float = 0.0,
        status_for: Callable[[Any], int] = lambda pdu: consts.SMPP_ESME_ROK,
    ) -> None:
        self.system_id, self.password, self.window = system_id, password, window
        self.idle_timeout, self.answer_delay, self.status_for = idle_timeout, answer_delay, status_for
        self.submits: list[Any] = []  # smpplib's decoded submit_sm PDUs, in order
        self.ids: dict[str, Any] = {}  # message id given -> its submit
        self.events: list[str] = []  # what happened: bind_transceiver, idle-drop, ...
        self.sessions: list[Session] = []
        self._ids = itertools.count(0x1000)
        self._tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        for s in self.sessions:
            s.writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def push_receipt(
        self, message_id: str, stat: str = "DELIVRD", *, phone: str = "79991234567"
    ) -> None:
        """A delivery receipt for `message_id` on the newest bound session (text and TLVs)."""
        s = next(s for s in reversed(self.sessions) if s.bound)
        text = (
            f"id:{message_id} sub:001 dlvrd:001 submit date:2612041200 done date:2612041201 "
            f"stat:{stat} err:000 text:"
        )
        pdu = make_pdu(
            "deliver_sm", next(s.sequence), source_addr_ton=1, source_addr_npi=1, source_addr=phone,
            dest_addr_ton=5, dest_addr_npi=0, destination_addr="ALERTS", esm_class=0x04, data_coding=0,
            short_message=text.encode(), receipted_message_id=message_id,
        )  # fmt: skip
        s.writer.write(pdu.generate())
        await s.writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        s = Session(writer)
        self.sessions.append(s)
        try:
            while await self._one(s, reader):
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            self.events.append("peer-closed")
        finally:
            writer.close()

    async def _one(self, s: Session, reader: asyncio.StreamReader) -> bool:
        """Read and answer one PDU; False when the session ends."""
        try:
            head = await asyncio.wait_for(reader.readexactly(4), self.idle_timeout)
        except TimeoutError:
            self.events.append("idle-drop")  # the provider's inactivity limit
            return False
        (length,) = struct.unpack(">L", head)
        data = head + await reader.readexactly(length - 4)
        pdu = smpp.parse_pdu(data, sequence=0, allow_unknown_opt_params=True)  # sequence: see make_pdu
        self.events.append(pdu.command)
        if pdu.command == "bind_transceiver":
            ok = (pdu.system_id.decode(), pdu.password.decode()) == (self.system_id, self.password)
            status = consts.SMPP_ESME_ROK if ok else consts.SMPP_ESME_RINVPASWD
            s.writer.write(
                make_pdu("bind_transceiver_resp", pdu.sequence, status=status, system_id="FAKE").generate()
            )
            s.bound = ok
            return ok
        if pdu.command == "enquire_link":
            s.writer.write(make_pdu("enquire_link_resp", pdu.sequence).generate())
        elif pdu.command == "unbind":
            s.writer.write(make_pdu("unbind_resp", pdu.sequence).generate())
            return False
        elif pdu.command == "submit_sm":
            self.submits.append(pdu)
            s.outstanding += 1
            s.max_outstanding = max(s.max_outstanding, s.outstanding)
            s.over_window += s.outstanding > self.window
            task = asyncio.ensure_future(self._answer(s, pdu))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return True

    async def _answer(self, s: Session, pdu: Any) -> None:
        await asyncio.sleep(self.answer_delay)
        status = self.status_for(pdu)
        s.outstanding -= 1
        if status == NACK:
            answer = make_pdu("generic_nack", pdu.sequence, status=consts.SMPP_ESME_RSYSERR)
        else:
            message_id = f"{next(self._ids):x}" if status == consts.SMPP_ESME_ROK else ""
            if message_id:
                self.ids[message_id] = pdu
            answer = make_pdu("submit_sm_resp", pdu.sequence, status=status, message_id=message_id)
        if not s.writer.is_closing():
            s.writer.write(answer.generate())


def make_pdu(command: str, sequence: int, **fields: Any) -> Any:
    """A PDU by smpplib's codec (its bytes: .generate())."""
    # smpplib takes a PDU's sequence from its client, of which the fake has none: given, it asks
    # no client, and it is set again after (make_pdu keeps its own otherwise)
    pdu = smpp.make_pdu(command, client=None, sequence=sequence, **fields)
    pdu.sequence = sequence
    return pdu


def text_of(pdu: Any) -> tuple[int, int, str]:
    """(reference, parts, text) of a decoded submit: the UDH's, or (0, 1, ...) without one."""
    body: bytes = pdu.short_message
    reference, parts = 0, 1
    if pdu.esm_class & 0x40:
        reference, parts, body = body[3], body[4], body[6:]
    return reference, parts, body.decode("gsm03.38" if pdu.data_coding == 0 else "utf-16-be")
