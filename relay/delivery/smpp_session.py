"""One bound SMPP transceiver session with the provider (issue 24; smpp-notes.md).

Bound at start and kept bound: a supervisor binds to the main host, then the backup, and binds
again after a drop, with a backoff that doubles (with jitter) up to `max_backoff`. smpp34 (the
client library, docs/smpp-libraries.md) frames the PDUs, numbers and matches them, answers the
SMSC's enquire_link and sends its own every 30 s, under the provider's 2-minute inactivity
limit. What smpp34 does not do is here:

- the window: at most `window` submits wait for their responses (smpp34 takes a window_size
  but does not enforce it);
- throttling: an ESME_RTHROTTLED or ESME_RMSGQFUL answer holds every submit for a pause that
  doubles while they go on, and ends at the first answer that is not one;
- a refused bind: smpp34 reports one as "bind timed out", like a server that never answers, so
  the SMSC is asked once more by smpplib's client (smpp_probe.py), and the reason says which
  cause its answer names (a wrong password, an unknown login, SMPP access off or this relay's
  IP not on the allowed list);
- its runtime's shutdown: a pause after stop() (it has crashed at interpreter exit without);
- TCP_NODELAY on its sockets (`no_delay`): without it a submit can wait 40 ms for an ACK.

Receipts and other deliver_sm go to `on_deliver` as they come; what they mean is the core's
(relay/parsers/receipt.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from relay.delivery import smpp_probe
from relay.errors import UpstreamTimeout, UpstreamUnavailable
from relay.formatters.smpp import Submit, validity_period
from relay.provider_errors import SmppAnswer, smpp_status

if TYPE_CHECKING:
    import smpp34

log = logging.getLogger("relay.smpp")
SHUTDOWN_PAUSE = 0.05  # seconds after smpp34's stop(): its runtime's threads end first


@dataclass(frozen=True, slots=True)
class SmppSettings:
    hosts: tuple[tuple[str, int], ...]  # main first, then the backup
    system_id: str  # the provider login
    password: str = field(repr=False)
    system_type: str = ""
    tls: bool = False
    window: int = 10  # submits waiting for their responses, at most
    bind_timeout: float = 10.0
    submit_timeout: float = 30.0
    min_backoff: float = 1.0
    max_backoff: float = 60.0
    throttle_pause: float = 1.0  # the first pause after a throttled answer; doubles to 30 s
    validity: int = 1440  # minutes the SMSC keeps trying a part


@dataclass(frozen=True, slots=True)
class SubmitAnswer:
    status: int  # command_status: 0, the part was taken
    message_id: str  # the provider's, which its receipts name


class SmppSession:
    def __init__(
        self,
        settings: SmppSettings,
        *,
        on_deliver: Callable[[smpp34.DeliverSmEvent], None] = lambda event: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.on_deliver = on_deliver
        self.clock = clock
        self.reason = "not bound yet"  # why no session is bound; "" while one is
        self.host = ""  # host:port of the bound session
        self.binds = 0  # sessions bound so far
        self._smsc: smpp34.Smsc | None = None
        self._client: smpp34.Client | None = None
        self._validity = validity_period(settings.validity)
        self._bound = asyncio.Event()
        self._window = asyncio.Semaphore(settings.window)
        self._slow_until = 0.0
        self._slow = 0.0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def bound(self) -> bool:
        return self._bound.is_set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name="smpp-session")

    async def stop(self) -> None:
        """Unbind (the SMSC then knows the session ended on purpose), then end the supervisor."""
        self._stopping = True
        smsc = self._smsc
        if smsc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(smsc.unbind(), 5)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._close()

    async def wait_bound(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._bound.wait(), timeout)
        return self.bound

    async def submit(self, s: Submit) -> SubmitAnswer:
        """One submit_sm, within the window, once a session is bound. Raises UpstreamUnavailable
        when none is bound in time (the part was not sent) or when the session failed while the
        part was out (uncertain: it may have been taken)."""
        if not await self.wait_bound(self.settings.bind_timeout):
            raise UpstreamUnavailable(f"no SMPP session bound: {self.reason}")
        async with self._window:
            await self._throttled()
            smsc = self._smsc
            if smsc is None:
                raise UpstreamUnavailable(f"no SMPP session bound: {self.reason}")
            try:
                resp = await asyncio.wait_for(
                    smsc.submit_sm(
                        s.destination.value, s.short_message, source_addr=s.source.value,
                        source_addr_ton=s.source.ton, source_addr_npi=s.source.npi,
                        dest_addr_ton=s.destination.ton, dest_addr_npi=s.destination.npi,
                        esm_class=s.esm_class, data_coding=s.data_coding, registered_delivery=1,
                        validity_period=self._validity,
                    ),
                    self.settings.submit_timeout,
                )  # fmt: skip
            except TimeoutError:
                raise UpstreamTimeout("SMPP: no submit_sm_resp in time", uncertain=True) from None
            except Exception as exc:  # smpp34.SmppError: a timeout, a lost session, a generic_nack
                raise UpstreamUnavailable(f"SMPP: {exc}", uncertain=True) from None
        self._note(resp.command_status)
        return SubmitAnswer(resp.command_status, resp.message_id or "")

    def _note(self, status: int) -> None:
        """A throttled answer slows every submit; any other ends the slowing."""
        if status and smpp_status(status).answer is SmppAnswer.THROTTLE:
            self._slow = min(30.0, self._slow * 2 or self.settings.throttle_pause)
            self._slow_until = self.clock() + self._slow
            log.warning("event=smpp_throttled status=0x%08X pause=%.1fs", status, self._slow)
        else:
            self._slow = 0.0

    async def _throttled(self) -> None:
        wait = self._slow_until - self.clock()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _supervise(self) -> None:
        backoff = self.settings.min_backoff
        while not self._stopping:
            smsc = await self._bind_any()
            if smsc is None:
                await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                backoff = min(self.settings.max_backoff, backoff * 2)
                continue
            backoff = self.settings.min_backoff
            try:
                await self._read(smsc)
            finally:
                self._bound.clear()
                self._smsc = None
                await self._close()

    async def _bind_any(self) -> smpp34.Smsc | None:
        import smpp34  # the relays that use SMPP load it (and its runtime) only

        s = self.settings
        failures = []
        for host, port in s.hosts:
            client = smpp34.Client(
                host, port, s.system_id, s.password, bind_type="TRX", system_type=s.system_type,
                tls=s.tls, window_size=s.window, connect_timeout_ms=int(s.bind_timeout * 1000),
            )  # fmt: skip
            try:
                smsc = await asyncio.wait_for(client.connect(), s.bind_timeout + 1)
            except Exception as exc:  # SmppError, OSError, TimeoutError: try the next host
                await _stop(client)
                failures.append(f"{host}:{port}: {await self._why(host, port, str(exc))}")
                continue
            self._client, self._smsc, self.host = client, smsc, f"{host}:{port}"
            await asyncio.to_thread(no_delay, host, port)
            self.binds += 1
            self.reason = ""
            self._bound.set()
            log.info("event=smpp_bound host=%s:%d", host, port)
            return smsc
        self.reason = "cannot bind (" + "; ".join(failures) + ")"
        log.error("event=smpp_bind_failed reason=%r", self.reason)
        return None

    async def _why(self, host: str, port: int, error: str) -> str:
        """A failed bind in the operator's words: smpp34 says "bind timed out" for a refusal too,
        so the SMSC is asked once more, with another client, what it answers the bind."""
        if "bind timed out" not in error:
            return error  # no connection at all: refused, unreachable, a TLS failure
        s = self.settings
        status = await asyncio.to_thread(
            smpp_probe.bind_status, host, port, s.system_id, s.password,
            system_type=s.system_type, tls=s.tls, timeout=s.bind_timeout,
        )  # fmt: skip
        return smpp_probe.reason(status) or (
            f"{error}: no answer to the bind (a wrong login or password, SMPP access off in the"
            " account's API settings, or this relay's IP not on its allowed list can look so)"
        )

    async def _read(self, smsc: smpp34.Smsc) -> None:
        """Until the session ends: deliver_sm to on_deliver, the end logged."""
        import smpp34

        while True:
            event = await smsc.next()
            if isinstance(event, smpp34.DeliverSmEvent):
                try:
                    self.on_deliver(event)
                except Exception:  # a fault of ours must not end the session
                    log.exception("event=smpp_deliver_failed")
            elif isinstance(event, smpp34.Disconnected | smpp34.Unbound):
                self.reason = f"the session with {self.host} ended"
                log.warning("event=smpp_session_lost host=%s", self.host)
                return

    async def _close(self) -> None:
        client = self._client
        self._smsc = self._client = None
        if client is not None:
            await _stop(client)


def no_delay(host: str, port: int) -> int:
    """TCP_NODELAY on this process's TCP sockets connected to host:port (the sessions smpp34
    has bound there); how many. smpp34 1.5 leaves Nagle's algorithm on and has no option for
    it: a submit_sm written while its last small write (often a deliver_sm_resp) waits for the
    SMSC's delayed ACK waits with it, about 40 ms a submit on Linux. The option belongs to the
    socket, so setting it through a duplicate of its descriptor changes smpp34's own."""
    done = 0
    for sock in peer_sockets(host, port):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        done += 1
    return done


def peer_sockets(host: str, port: int) -> Iterator[socket.socket]:
    """A duplicate of each of this process's TCP sockets connected to host:port, closed (the
    duplicate only) after its turn."""
    try:
        peers = {a[4][0] for a in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
        names = os.listdir("/proc/self/fd")
    except OSError:
        return
    for name in names:
        try:
            # Sockets only, told by their link, never by opening: closing a duplicate of a file's
            # descriptor would drop the process's POSIX locks on it (SQLite's, on the spool)
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            fd = os.dup(int(name))
        except (OSError, ValueError):
            continue  # gone (the listing's own descriptor)
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            os.close(fd)
            continue
        with sock:  # closes the duplicate only
            try:
                tcp = sock.type == socket.SOCK_STREAM and sock.family in (socket.AF_INET, socket.AF_INET6)
                peer = sock.getpeername() if tcp else None
            except OSError:
                continue  # not connected
            if peer is not None and peer[1] == port and peer[0] in peers:
                yield sock


async def _stop(client: smpp34.Client) -> None:
    with contextlib.suppress(Exception):
        await client.stop()
    await asyncio.sleep(SHUTDOWN_PAUSE)
