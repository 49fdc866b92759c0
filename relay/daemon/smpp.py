"""The relay's SMPP sessions (provider.transport: smpp): made from the config in force, started
with the daemon, bound and kept bound by their supervisors (relay/delivery/smpp_session.py),
their deliver_sm handed to the receipts loop (relay/delivery/receipts.py), and made again when
SIGHUP changes what they bind with. Delivery picks the next bound one for each request."""

from __future__ import annotations

import asyncio
import itertools
import logging

from relay.config.current import Current
from relay.config.schema import Config
from relay.delivery.receipts import Receipts
from relay.delivery.smpp_session import SmppSession, SmppSettings
from relay.model import TransportKind

log = logging.getLogger("relay.smpp")


def wanted(cfg: Config) -> bool:
    p = cfg.provider
    return p.transport is TransportKind.SMPP and p.outbox is None


def settings(cfg: Config) -> SmppSettings:
    p, s = cfg.provider, cfg.provider.smpp
    return SmppSettings(
        hosts=s.hosts, system_id=p.login, password=p.password.value, system_type=s.system_type,
        tls=s.tls, window=s.window, bind_timeout=s.bind_timeout, submit_timeout=cfg.delivery.timeout,
        validity=s.validity,
    )  # fmt: skip


class SmppLink:
    def __init__(self, current: Current, receipts: Receipts) -> None:
        self.current = current
        self.receipts = receipts
        self.sessions: list[SmppSession] = []
        self._settings: tuple[SmppSettings, int] | None = None
        self._turn = itertools.count()

    async def start(self) -> None:
        self.receipts.start()
        self._make(self.current.config)

    def _make(self, cfg: Config) -> None:
        if not wanted(cfg):
            return
        self._settings = (settings(cfg), cfg.provider.smpp.sessions)
        self.sessions = [
            SmppSession(self._settings[0], on_deliver=self.receipts.deliver)
            for _ in range(cfg.provider.smpp.sessions)
        ]
        for session in self.sessions:
            session.start()

    async def apply(self, cfg: Config) -> None:
        """After SIGHUP: new sessions when what they bind with changed (the old ones unbind
        first: a submit on them waits for the new, its bind_timeout at most)."""
        new = (settings(cfg), cfg.provider.smpp.sessions) if wanted(cfg) else None
        if new == self._settings:
            return
        old, self.sessions, self._settings = self.sessions, [], None
        await asyncio.gather(*(s.stop() for s in old))
        self._make(cfg)
        if old or self.sessions:
            log.warning("event=smpp_sessions_renewed sessions=%d", len(self.sessions))

    def pick(self) -> SmppSession:
        """The next bound session, round the list; the next one at all when none is bound (its
        submit then waits for a bind, bind_timeout at most)."""
        if not self.sessions:
            raise LookupError("no SMPP sessions: provider.transport is not smpp")
        n = len(self.sessions)
        start = next(self._turn)
        for i in range(n):
            session = self.sessions[(start + i) % n]
            if session.bound:
                return session
        return self.sessions[start % n]

    @property
    def bound(self) -> int:
        return sum(s.bound for s in self.sessions)

    @property
    def reason(self) -> str:
        """Why no session is bound ("" when one is, or SMPP is not in use)."""
        if not self.sessions or self.bound:
            return ""
        return self.sessions[0].reason

    async def stop(self) -> None:
        await asyncio.gather(*(s.stop() for s in self.sessions))
        self.sessions = []
        await self.receipts.stop()
