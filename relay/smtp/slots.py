"""The open SMTP sessions: the connection caps at connect, the sessions busy in DATA, the drain."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aiosmtpd.smtp import Session

from relay import replies
from relay.config.schema import ListenConfig, Network
from relay.smtp.session import peer_of
from relay.smtp.transports import writable

if TYPE_CHECKING:
    from relay.smtp.session import RelaySMTP

log = logging.getLogger("relay.listener")


def in_networks(host: str, networks: Sequence[Network]) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in net for net in networks)


class Sessions:
    """Open SMTP sessions: capped, and waited for on shutdown.

    Three caps at connect: all sessions; the sessions of one client address; and the sessions
    of clients outside the trusted networks, which may only mail the reply address: a flood from
    the internet fills its own share and never the trusted clients' slots.
    """

    def __init__(self, listen: ListenConfig) -> None:
        self.configure(listen)
        self.open: set[RelaySMTP] = set()
        self.busy: set[Session] = set()  # sessions inside handle_DATA: never cut off mid-write
        self.accepting = True
        self._hosts: dict[RelaySMTP, tuple[str, bool]] = {}  # session -> (address, trusted)

    def configure(self, listen: ListenConfig) -> None:
        """The caps and networks in force (SIGHUP); open sessions keep their slots."""
        self.limit = listen.max_connections
        self.per_address = listen.max_connections_per_address
        self.untrusted_limit = listen.untrusted_connections or max(1, listen.max_connections // 4)
        self.untrusted_per_address = min(self.per_address, listen.untrusted_connections_per_address)
        self.mail_timeout = listen.untrusted_mail_timeout
        self.networks = listen.networks

    def admit(self, protocol: RelaySMTP, host: str = "") -> replies.Reply | None:
        """None when admitted, else the 421 to answer. A full untrusted share makes room: its
        idlest session is closed, so that a newcomer (the provider's reply server) gets in
        whoever holds the share."""
        if not self.accepting:
            return replies.S421_TOO_MANY_CONNECTIONS
        trusted = in_networks(host, self.networks)
        held = sum(1 for h, _ in self._hosts.values() if h == host)
        if held >= (self.per_address if trusted else self.untrusted_per_address):
            return replies.S421_TOO_MANY_FROM_YOU
        if not trusted and sum(1 for _, t in self._hosts.values() if not t) >= self.untrusted_limit:
            idlest = self._idlest_untrusted()
            if idlest is None:
                return replies.S421_TOO_MANY_CONNECTIONS
            log.warning("event=closed reason=making_room peer=%s", peer_of(idlest.session))
            idlest.close_with(replies.S421_MAKING_ROOM)
        if len(self.open) >= self.limit:
            return replies.S421_TOO_MANY_CONNECTIONS
        self.open.add(protocol)
        self._hosts[protocol] = (host, trusted)
        return None

    def trusted(self, protocol: RelaySMTP) -> bool:
        return self._hosts.get(protocol, ("", True))[1]

    def _idlest_untrusted(self) -> RelaySMTP | None:
        """The untrusted session that said nothing for longest; never one whose mail is being
        written to the spool."""
        idle = [p for p, (_, t) in self._hosts.items() if not t and p.session not in self.busy]
        return min(idle, key=lambda p: p.last_active, default=None)

    def release(self, protocol: RelaySMTP) -> None:
        self.open.discard(protocol)
        self._hosts.pop(protocol, None)

    async def drain(self, deadline: float) -> None:
        """Shutdown: no new sessions; a session mid-DATA-handling finishes, the others are told
        421 and closed (their clients keep the mail and retry)."""
        self.accepting = False
        loop = asyncio.get_running_loop()
        while self.open and loop.time() < deadline:
            for proto in list(self.open):
                transport = writable(proto.transport)  # uvloop's too (relay/smtp/transports.py)
                if proto.session in self.busy:
                    continue
                self.release(proto)
                if transport is None:
                    continue
                # A TLS session whose peer just left can fail to write: it is closing anyway.
                with contextlib.suppress(OSError, RuntimeError, AttributeError):
                    transport.write(f"{replies.S421_SHUTTING_DOWN}\r\n".encode())
                transport.close()
            await asyncio.sleep(0.02)  # a busy session's DATA handling is finishing
