"""/health: is the relay able to do its job? "" when it is, else the reason (HTTP 503)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from relay.config.current import Current
from relay.errors import SpoolError
from relay.model import SpoolBackend
from relay.spool.interface import Spool


class Health:
    def __init__(
        self,
        spool: Spool,
        current: Current,
        paused: Callable[[], str],
        unwritten: Callable[[], int] = lambda: 0,
        smpp: Callable[[], str] = lambda: "",
    ) -> None:
        self.spool = spool
        self.current = current  # the config in force (SIGHUP replaces it)
        self.paused = paused  # why delivery is paused, or ""
        self.unwritten = unwritten  # delivery outcomes the spool has not taken yet
        self.smpp = smpp  # why no SMPP session is bound ("" when one is, or SMPP is not used)

    async def check(self) -> str:
        """Unhealthy when the spool cannot commit, its disk is (almost) full, delivery is
        paused, or (SMPP, no failover) no session is bound."""
        cfg = self.current.config
        if self.spool.failing:
            return f"spool not writable: {self.spool.failing}"
        if cfg.spool.backend is SpoolBackend.SQLITE:  # a database server watches its own disk
            disk = os.statvfs(cfg.spool.path.parent)
            free = disk.f_bavail * disk.f_frsize
            if free < 2 * cfg.listen.max_message_size:
                return f"spool disk almost full: {free} bytes free"
        try:
            # A real, fsynced write: a locked or read-only spool shows here.
            await self.spool.set_control("health_checked", f"{time.time():.0f}")
        except SpoolError as exc:
            return f"spool not writable: {exc.__cause__ or exc}"
        if self.unwritten():
            return f"spool not writable: {self.unwritten()} delivery outcome(s) waiting to be recorded"
        paused = self.paused()
        if paused:
            return f"delivery paused: {paused}"
        unbound = self.smpp()
        if unbound and not cfg.provider.failover:  # with failover, mail goes the other way
            return f"no SMPP session bound: {unbound}"
        return ""
