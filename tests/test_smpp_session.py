"""The SMPP session supervisor (issue 24, relay/delivery/smpp_session.py) against the fake SMSC:
the backup host when the main one is down, the relay's window, throttling, receipts, a re-bind
after a drop, a refused bind's reason, the unbind at stop.

It runs in a child process (with the fake in the child's loop): smpp34's runtime has crashed at
interpreter exit (docs/smpp-libraries.md), which must fail this test by the child's exit status,
not end pytest.
"""

from __future__ import annotations

from pathlib import Path

from tests.fake_smsc import run_child

CHILD = r"""
import asyncio, json, socket, time
from smpplib import consts
from relay.delivery.smpp_session import SmppSession, SmppSettings, peer_sockets
from relay.formatters import smpp
from relay.model import Entry, Options
from relay.parsers import receipt
from relay.parsers.command import Command
from tests.fake_smsc import FakeSmsc

def closed_port() -> int:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port

def nodelay_of(port: int) -> list:
    # TCP_NODELAY of this process's sockets connected to port (smpp34's)
    return [bool(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)) for s in peer_sockets("127.0.0.1", port)]

async def main() -> None:
    out = {}
    throttle_first = [True]
    def status_for(pdu):
        if pdu.destination_addr.decode() == "79990000099" and throttle_first[0]:
            throttle_first[0] = False
            return consts.SMPP_ESME_RTHROTTLED
        return consts.SMPP_ESME_ROK
    fake = FakeSmsc(window=2, answer_delay=0.1, status_for=status_for)
    port = await fake.start()
    delivered = []
    settings = SmppSettings(hosts=(("127.0.0.1", closed_port()), ("127.0.0.1", port)), system_id="login",
                            password="secret", window=2, bind_timeout=3, min_backoff=0.2, max_backoff=1,
                            throttle_pause=0.4)
    session = SmppSession(settings, on_deliver=delivered.append)
    session.start()
    out["bound"] = await session.wait_bound(10)
    out["host"] = session.host == f"127.0.0.1:{port}"
    out["nodelay"] = nodelay_of(port)
    cmd = Command("login", "***", "r1", Options(sender="ALERTS"),
                  (Entry(tuple(f"+7999000000{i}" for i in range(6)), "disk full"),), False)
    answers = await asyncio.gather(*(session.submit(s) for s in smpp.submits(cmd)))
    out["taken"] = [a.status == 0 and bool(a.message_id) for a in answers]
    out["max_outstanding"] = max(s.max_outstanding for s in fake.sessions)
    out["over_window"] = sum(s.over_window for s in fake.sessions)
    # throttled: the answer says so; the next submit waits the pause
    (t,) = smpp.submits(Command("login", "***", "r2", Options(), (Entry(("+79990000099",), "x"),), False))
    first = await session.submit(t)
    started = time.monotonic()
    second = await session.submit(t)
    out["throttled"] = [first.status, second.status]
    out["slowed"] = time.monotonic() - started >= 0.35
    # a receipt reaches on_deliver, and the core reads it
    await fake.push_receipt(answers[0].message_id)
    for _ in range(100):
        if delivered:
            break
        await asyncio.sleep(0.05)
    ev = delivered[0] if delivered else None
    r = receipt.parse(bytes(ev.short_message), {t.tag: bytes(t.value) for t in ev.tlvs}) if ev else None
    out["receipt"] = None if r is None else [r.message_id == answers[0].message_id, r.stat.value]
    # the SMSC drops the session: bound again
    for s in fake.sessions:
        s.writer.close()
    for _ in range(200):
        if session.binds >= 2 and session.bound:
            break
        await asyncio.sleep(0.05)
    out["rebound"] = [session.binds, session.bound]
    await session.stop()
    out["unbind"] = "unbind" in fake.events
    # a refused bind: not bound, and the reason names what to check
    wrong = SmppSession(SmppSettings(hosts=(("127.0.0.1", port),), system_id="login", password="wrong",
                                     bind_timeout=1, min_backoff=5))
    wrong.start()
    out["wrong_bound"] = await wrong.wait_bound(2.5)
    out["wrong_reason"] = wrong.reason
    await wrong.stop()
    await fake.stop()
    print(json.dumps(out))

asyncio.run(main())
"""


async def test_the_session_binds_windows_throttles_reads_receipts_and_binds_again() -> None:
    out = await run_child(CHILD, timeout=90)
    assert out["bound"] and out["host"]  # the main host refused: the backup
    assert out["nodelay"] == [True]  # smpp34's own socket, TCP_NODELAY set by the session
    assert out["taken"] == [True] * 6
    assert out["max_outstanding"] <= 2 and out["over_window"] == 0  # the relay's window of 2
    assert out["throttled"] == [0x58, 0] and out["slowed"]
    assert out["receipt"] == [True, "DELIVRD"]
    assert out["rebound"] == [2, True]
    assert out["unbind"]
    # smpp34 calls the refusal a timeout; the reason says what the SMSC answered (asked again)
    assert out["wrong_bound"] is False
    assert "the password is wrong (ESME_RINVPASWD)" in out["wrong_reason"], out["wrong_reason"]


def test_no_delay_sets_tcp_nodelay_on_the_sockets_to_that_peer_only() -> None:
    """smpp34 leaves Nagle's algorithm on: the session sets TCP_NODELAY on its sockets, found by
    their peer, through a duplicate of the descriptor."""
    import socket

    from relay.delivery.smpp_session import no_delay

    with socket.create_server(("127.0.0.1", 0)) as server, socket.create_server(("127.0.0.1", 0)) as other:
        port, other_port = server.getsockname()[1], other.getsockname()[1]
        with (
            socket.create_connection(("127.0.0.1", port)) as a,
            socket.create_connection(("127.0.0.1", other_port)) as b,
        ):
            assert a.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
            assert no_delay("127.0.0.1", port) == 1
            assert a.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            assert b.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0  # another peer's


def test_no_delay_leaves_the_spools_file_locks_alone(tmp_path: Path) -> None:
    """Closing any descriptor of a file drops the process's POSIX locks on it: no_delay must
    never duplicate a file's, or SQLite's lock on the spool would go with it."""
    import sqlite3
    import subprocess
    import sys

    from relay.delivery.smpp_session import no_delay

    path = tmp_path / "spool.db"
    held = sqlite3.connect(path, isolation_level=None)
    held.execute("CREATE TABLE t (x)")
    held.execute("BEGIN IMMEDIATE")  # a write lock, as a spool transaction holds
    held.execute("INSERT INTO t VALUES (1)")
    no_delay("127.0.0.1", 9)
    other = (
        "import sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)\n"
        "try:\n    c.execute('BEGIN IMMEDIATE'); print('locked-by-me')\n"
        "except sqlite3.OperationalError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", other, str(path)], capture_output=True, text=True, timeout=30)
    held.execute("ROLLBACK")
    held.close()
    assert out.stdout.strip() == "database is locked"
