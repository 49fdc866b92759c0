"""A fake of the provider's SMPP server (issue 24) on 127.0.0.1 port 0.

Every PDU is encoded and decoded by smpplib's codec (a second SMPP implementation, independent
of the relay's client library, so each checks the other); only the 4-byte command_length framing
is done here. It checks the bind's system_id and password (or refuses every bind while
`refuse_binds`), answers enquire_link and unbind, keeps every submit_sm decoded, answers each with
a message id (or the status `status_for` gives, or a generic_nack), counts submits outstanding
against its window, drops a session idle past `idle_timeout` (the provider's 2 minutes, shorter
in tests) or every session at once (`drop_sessions`), pushes delivery receipts (the one
`receipts` gives each accepted submit, after `receipt_delay`, twice if `duplicate_receipts`; or
any, by `push_receipt`) and incoming SMS, and counts the deliver_sm_resp the client answers with.

`run_child` runs smpp34's client code in a child process: its runtime has crashed at interpreter
exit (docs/smpp-libraries.md), which must fail the test by the child's exit status, not end pytest.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec the fake decodes GSM-7 with)
from smpplib import consts, smpp

NACK = -1  # status_for's answer for a generic_nack instead of a submit_sm_resp
ROOT = Path(__file__).resolve().parent.parent
# a receipt's stat -> its message_state TLV (SMPP 3.4 5.3.2.35); other stats go as text only
MESSAGE_STATE = {
    "DELIVRD": 2, "EXPIRED": 3, "DELETED": 4, "UNDELIV": 5, "ACCEPTD": 6, "UNKNOWN": 7, "REJECTD": 8,
}  # fmt: skip
DEFAULT_PHONE = "79991234567"  # a receipt's source_addr for an id the fake never gave


@dataclass
class Session:
    writer: asyncio.StreamWriter
    bound: bool = False
    dropped: bool = False  # by drop_sessions, not by the peer
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
        receipts: Callable[[Any], str | None] = lambda pdu: None,
        receipt_delay: float = 0.0,
        duplicate_receipts: bool = False,
        refuse_binds: bool = False,
    ) -> None:
        self.system_id, self.password, self.window = system_id, password, window
        self.idle_timeout, self.answer_delay, self.status_for = idle_timeout, answer_delay, status_for
        self.receipts, self.receipt_delay = receipts, receipt_delay  # receipts: the stat, None: never
        self.duplicate_receipts = duplicate_receipts
        self.refuse_binds = refuse_binds  # True: every bind gets ESME_RBINDFAIL (may change any time)
        self.submits: list[Any] = []  # smpplib's decoded submit_sm PDUs, in order
        self.ids: dict[str, Any] = {}  # message id given -> its submit
        self.events: list[str] = []  # what happened: bind_transceiver, idle-drop, receipt-lost, ...
        self.sessions: list[Session] = []
        self.receipts_sent: list[tuple[str, str]] = []  # (message id, stat) of each receipt written
        self.delivers_sent = 0  # deliver_sm written: receipts and SMS
        self.deliver_resps = 0  # deliver_sm_resp read back from the client
        self._ids = itertools.count(0x1000)
        self._tasks: set[asyncio.Task[None]] = set()  # sessions, answers, receipts: cancelled at stop
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()  # no new session while the others end
        for s in self.sessions:
            s.writer.close()
        while self._tasks:  # an ending session can have started an answer: until none is left
            for task in list(self._tasks):
                task.cancel()
            await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), 5)
        if self.server is not None:
            await asyncio.wait_for(self.server.wait_closed(), 5)

    def drop_sessions(self) -> None:
        """Close every session's socket abruptly (a reset, no unbind): a session lost."""
        for s in self.sessions:
            if s.writer.is_closing():
                continue
            s.dropped, s.bound = True, False
            sock = s.writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
            s.writer.transport.abort()
            self.events.append("drop")

    async def push_receipt(self, message_id: str, stat: str = "DELIVRD", *, phone: str | None = None) -> bool:
        """A delivery receipt (text and TLVs) on the newest bound session; False if none is bound
        (the receipt is lost). The phone is the submit's destination, for an id the fake gave."""
        if phone is None:
            submit = self.ids.get(message_id)
            phone = DEFAULT_PHONE if submit is None else submit.destination_addr.decode()
        dlvrd = "001" if stat == "DELIVRD" else "000"
        text = (
            f"id:{message_id} sub:001 dlvrd:{dlvrd} submit date:2612041200 done date:2612041201 "
            f"stat:{stat} err:000 text:"
        )
        tlvs: dict[str, Any] = {"receipted_message_id": message_id}
        if stat in MESSAGE_STATE:
            tlvs["message_state"] = MESSAGE_STATE[stat]
        if not await self._deliver("receipt", esm_class=0x04, phone=phone, body=text.encode(), **tlvs):
            return False
        self.receipts_sent.append((message_id, stat))
        return True

    async def push_sms(self, text: str, phone: str = DEFAULT_PHONE) -> bool:
        """An incoming SMS from `phone` (a deliver_sm that is no receipt: esm_class 0, GSM-7)."""
        return await self._deliver("sms", esm_class=0, phone=phone, body=text.encode("gsm03.38"))

    async def _deliver(self, kind: str, *, esm_class: int, phone: str, body: bytes, **tlvs: Any) -> bool:
        s = next((s for s in reversed(self.sessions) if s.bound and not s.writer.is_closing()), None)
        if s is None:
            self.events.append(f"{kind}-lost")  # as a real SMSC may lose it
            return False
        pdu = make_pdu(
            "deliver_sm", next(s.sequence), source_addr_ton=1, source_addr_npi=1, source_addr=phone,
            dest_addr_ton=5, dest_addr_npi=0, destination_addr="ALERTS", esm_class=esm_class,
            data_coding=0, short_message=body, **tlvs,
        )  # fmt: skip
        s.writer.write(pdu.generate())
        try:
            await asyncio.wait_for(s.writer.drain(), self.idle_timeout)
        except (ConnectionError, TimeoutError):
            self.events.append(f"{kind}-lost")
            return False
        self.delivers_sent += 1
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        s = Session(writer)
        self.sessions.append(s)
        try:
            while await self._one(s, reader):
                await asyncio.wait_for(writer.drain(), self.idle_timeout)
        except (asyncio.IncompleteReadError, ConnectionError):
            if not s.dropped:
                self.events.append("peer-closed")
        finally:
            s.bound = False
            writer.close()

    async def _one(self, s: Session, reader: asyncio.StreamReader) -> bool:
        """Read and answer one PDU; False when the session ends."""
        try:
            head = await asyncio.wait_for(reader.readexactly(4), self.idle_timeout)
        except TimeoutError:
            self.events.append("idle-drop")  # the provider's inactivity limit
            return False
        (length,) = struct.unpack(">L", head)
        data = head + await asyncio.wait_for(reader.readexactly(length - 4), self.idle_timeout)
        pdu = smpp.parse_pdu(data, sequence=0, allow_unknown_opt_params=True)  # sequence: see make_pdu
        self.events.append(pdu.command)
        if pdu.command == "bind_transceiver":
            ok = (pdu.system_id.decode(), pdu.password.decode()) == (self.system_id, self.password)
            status = consts.SMPP_ESME_ROK if ok else consts.SMPP_ESME_RINVPASWD
            if self.refuse_binds:
                ok, status = False, consts.SMPP_ESME_RBINDFAIL
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
        elif pdu.command == "deliver_sm_resp":
            self.deliver_resps += 1
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
        """Answer a submit; then, if accepted and `receipts` says so, push its receipt(s)."""
        await asyncio.sleep(self.answer_delay)
        status = self.status_for(pdu)
        s.outstanding -= 1
        message_id = ""
        if status == NACK:
            answer = make_pdu("generic_nack", pdu.sequence, status=consts.SMPP_ESME_RSYSERR)
        else:
            message_id = f"{next(self._ids):x}" if status == consts.SMPP_ESME_ROK else ""
            if message_id:
                self.ids[message_id] = pdu
            answer = make_pdu("submit_sm_resp", pdu.sequence, status=status, message_id=message_id)
        if not s.writer.is_closing():
            s.writer.write(answer.generate())
        stat = self.receipts(pdu) if message_id else None
        if stat is None:
            return
        # accepted even if its answer was lost: the receipt comes all the same, on whatever
        # session is bound by then
        await asyncio.sleep(self.receipt_delay)
        for _ in range(2 if self.duplicate_receipts else 1):
            await self.push_receipt(message_id, stat)


async def run_child(code: str, *args: str, timeout: float) -> dict[str, Any]:
    """Run `code` in a child Python (cwd: the project), check it exits 0 within `timeout` seconds,
    and give the JSON object its stdout's last line prints."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(child.communicate(), timeout)
    finally:
        if child.returncode is None:  # timed out (or cancelled): no child left behind
            child.kill()
            await child.wait()
    stderr = err.decode(errors="replace")
    assert child.returncode == 0, stderr[-3000:]
    result: dict[str, Any] = json.loads(out.decode().splitlines()[-1])
    return result


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
