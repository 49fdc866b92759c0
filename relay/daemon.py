"""`smsc-relay serve`: load config -> build -> start -> READY -> wait for a signal -> drain -> close."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, TextIO

from relay import config as config_mod
from relay import metrics as metrics_mod
from relay.config import Config
from relay.delivery import Deliverer, RetryPolicy, unmasker
from relay.errors import ConfigError, SpoolError
from relay.holder import Holder
from relay.listener import Handler
from relay.metrics import Metrics
from relay.model import State
from relay.notify import Notifier
from relay.sdnotify import SystemdNotifier
from relay.senders import OutboxSender, Sender, SmtpSender
from relay.spool import Spool

log = logging.getLogger("relay.daemon")


def setup_logging(level: str = "INFO", stream: TextIO | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        # journald adds the time; a <N> prefix keeps the level as syslog priority.
        handler.setFormatter(_JournalFormatter("%(name)s %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(MaskPhones())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiosmtpd logs every command and peer at INFO: too chatty, and it would log AUTH data.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    return handler


class MaskPhones(logging.Filter):
    """Phone numbers in log lines at INFO and above keep their first 4 and last 2 digits.

    Only standalone digit runs of 7 to 15 (as in `<79991234567@sms...>`) match: relay ids,
    dates and error codes do not.
    """

    PHONE = re.compile(r"(?<![\w.:-])(\+?\d{4})\d{1,9}(\d{2})(?![\w-])")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.INFO:
            text = record.getMessage()
            masked = self.PHONE.sub(
                lambda m: m.group(1) + "*" * (len(m.group(0)) - len(m.group(1)) - 2) + m.group(2), text
            )
            if masked != text:
                record.msg, record.args = masked, ()
        return True


class _JournalFormatter(logging.Formatter):
    PRIORITY: ClassVar[dict[int, int]] = {
        logging.DEBUG: 7,
        logging.INFO: 6,
        logging.WARNING: 4,
        logging.ERROR: 3,
        logging.CRITICAL: 2,
    }

    def format(self, record: logging.LogRecord) -> str:
        return f"<{self.PRIORITY.get(record.levelno, 6)}>{super().format(record)}"


class Daemon:
    def __init__(self, config_path: Path, cfg: Config, clock: Callable[[], float] = time.time) -> None:
        self.config_path = config_path
        self.clock = clock  # storm control's clock; tests pass a simulated one
        self.holder: Holder | None = None
        self.cfg = cfg
        self.spool = Spool(cfg.spool.path)
        self.deliverer: Deliverer | None = None
        self.handler: Handler | None = None
        self.server: asyncio.Server | None = None
        self.stop_event = asyncio.Event()
        self.sweeper: asyncio.Task[None] | None = None
        self.systemd = SystemdNotifier()
        self.metrics = Metrics()
        self.metrics_server: asyncio.Server | None = None
        self.heartbeat: asyncio.Task[None] | None = None
        self.notifier: Notifier | None = None

    def _new_sender(self) -> Sender:
        p, d = self.cfg.provider, self.cfg.delivery
        if p.outbox is not None:
            return OutboxSender(p.outbox)
        return SmtpSender(
            p.hosts, p.port, timeout=d.timeout, starttls=d.starttls, local_hostname=self.handler_hostname
        )

    @property
    def handler_hostname(self) -> str:
        return self.handler.hostname if self.handler else socket.getfqdn()

    async def start(self) -> None:
        recovered = await self.spool.open()
        if recovered:
            log.warning("event=recovered rows=%d note='left sending by a crash; queued again'", recovered)
        d = self.cfg.delivery
        self.deliverer = Deliverer(
            self.spool,
            self._new_sender,
            unmasker(lambda: self.cfg.provider),
            signer=lambda: self.cfg.provider.dkim,
            concurrency=d.concurrency,
            policy=RetryPolicy(d.min_backoff, d.max_backoff, d.max_age),
        )
        self.handler = Handler(self.cfg, self.spool, self.deliverer, self.cfg.listen.max_connections)
        if self.cfg.notify is not None:
            self.notifier = Notifier(
                self.spool, self.cfg.notify, reporting_host=self.handler.hostname,
                reply_address=self.cfg.provider.reply_address,
            )  # fmt: skip
            self.deliverer.on_failed = self.handler.on_failed = self.notifier.failed
        self.handler.clock = self.clock
        self.holder = Holder(
            self.spool, lambda: self.cfg, lambda: self.handler_hostname, self.deliverer, clock=self.clock
        )
        self.handler.on_alert_due = self.holder.due
        self.holder.start()
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            self.handler.factory, self.cfg.listen.host, self.cfg.listen.port
        )
        self.deliverer.metrics = self.handler.metrics = self.metrics
        if self.cfg.metrics is not None:
            m = self.cfg.metrics
            self.metrics_server = await metrics_mod.serve(
                m.host, m.port, self.metrics, self._refresh, self.health
            )
        self.deliverer.start()
        self.sweeper = asyncio.create_task(self._sweep_unconfirmed(), name="sweep-unconfirmed")
        mode = (
            f"dry-run outbox={self.cfg.provider.outbox}"
            if self.cfg.provider.outbox
            else "provider=" + ",".join(self.cfg.provider.hosts)
        )
        log.info(
            "event=ready listen=%s:%d spool=%s %s", self.cfg.listen.host, self.port, self.cfg.spool.path, mode
        )
        self.systemd.ready(await self.status())
        self.heartbeat = asyncio.create_task(self._heartbeat(), name="sd-heartbeat")

    async def _refresh(self) -> None:
        counts = await self.spool.counts()
        for state in State:
            self.metrics.queue.labels(state.value).set(counts.get(state.value, 0))
        self.metrics.paused.set(1 if self.deliverer and self.deliverer.pause_reason else 0)

    async def health(self) -> str:
        """ "" when healthy; else why not: the spool cannot commit, its disk is (almost) full, or
        delivery is paused."""
        if self.spool.failing:
            return f"spool not writable: {self.spool.failing}"
        disk = os.statvfs(self.cfg.spool.path.parent)
        free = disk.f_bavail * disk.f_frsize
        if free < 2 * self.cfg.listen.max_message_size:
            return f"spool disk almost full: {free} bytes free"
        try:
            # A real, fsynced write: a locked or read-only spool shows here.
            await self.spool.set_control("health_checked", f"{time.time():.0f}")
        except SpoolError as exc:
            return f"spool not writable: {exc.__cause__ or exc}"
        if self.deliverer is not None and self.deliverer.pause_reason:
            return f"delivery paused: {self.deliverer.pause_reason}"
        return ""

    async def status(self) -> str:
        """One line for `systemctl status`: where we listen and what waits."""
        waiting = await self.spool.count_waiting()
        paused = self.deliverer.pause_reason if self.deliverer else ""
        text = f"listening on {self.cfg.listen.host}:{self.port}, {waiting} queued"
        return text + (f"; DELIVERY PAUSED: {paused}" if paused else "")

    async def _heartbeat(self) -> None:
        """STATUS every 10 s; WATCHDOG=1 at half the watchdog period, from the event loop itself,
        so a stuck loop (or spool) stops the keep-alives and systemd restarts the relay."""
        interval = min(10.0, self.systemd.watchdog_interval or 10.0)
        last_status = 0.0
        while True:
            await asyncio.sleep(interval)
            fields = []
            if self.systemd.watchdog_interval:
                fields.append("WATCHDOG=1")
            loop_time = asyncio.get_running_loop().time()
            if loop_time - last_status >= 10.0 or not fields:
                try:
                    fields.append(f"STATUS={await self.status()}")
                except SpoolError as exc:
                    fields.append(f"STATUS=spool unavailable: {exc}")
                last_status = loop_time
            self.systemd.notify(*fields)

    async def _sweep_unconfirmed(self) -> None:
        """With test=1, a message the provider never answered must be visible, not `sent` forever.
        Also retention: finished messages and replies older than spool.keep_days go."""
        while True:
            await asyncio.sleep(min(60.0, self.cfg.provider.confirm_timeout / 4))
            try:
                pruned = await self.spool.prune(time.time() - self.cfg.spool.keep_days * 86400)
            except SpoolError as exc:
                log.error("event=prune_failed error=%r", str(exc))
            else:
                if any(pruned):
                    log.info("event=pruned messages=%d replies=%d", *pruned)
            if not self.cfg.provider.test:
                continue
            try:
                count = await self.spool.sweep_unconfirmed(self.cfg.provider.confirm_timeout)
            except SpoolError as exc:
                log.error("event=sweep_failed error=%r", str(exc))
                continue
            if count:
                log.warning(
                    "event=unconfirmed count=%d note='no provider reply in %.0fs: the SMS may not have gone out'",  # noqa: E501
                    count, self.cfg.provider.confirm_timeout,
                )  # fmt: skip

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    def reload(self) -> None:
        """SIGHUP: routes, policy and provider settings from the file; a broken file changes nothing."""
        self.systemd.reloading()
        try:
            self._reload()
        finally:
            self.systemd.notify("READY=1")

    def _reload(self) -> None:
        try:
            new = config_mod.load(self.config_path)
        except ConfigError as exc:
            log.error("event=reload_refused problems=%d detail=%r", len(exc.problems), str(exc))
            return
        if (new.listen.host, new.listen.port, new.spool.path) != (
            self.cfg.listen.host,
            self.cfg.listen.port,
            self.cfg.spool.path,
        ):
            log.warning("event=reload_partial note='listen address and spool path change only on restart'")
        if self.handler:
            try:
                self.handler.reconfigure(new)
            except (OSError, ssl.SSLError) as exc:
                log.error("event=reload_refused detail=%r", f"TLS certificate: {exc}")
                return
        self.cfg = new
        if self.holder is not None:
            self.holder.wake()  # storm settings may have changed
        if self.deliverer is not None and self.deliverer.pause_reason:
            # SIGHUP is how an operator says "the password / the balance is fixed".
            asyncio.get_running_loop().create_task(self._resume())
        log.info("event=reloaded routes=%d", len(new.routes))

    async def _resume(self) -> None:
        await self.spool.set_control("paused_until", None)
        await self.spool.set_control("pause_reason", None)
        if self.deliverer is not None:
            self.deliverer.resume()

    async def stop(self) -> None:
        self.systemd.stopping()
        if self.metrics_server is not None:
            self.metrics_server.close()
        if self.heartbeat is not None:
            self.heartbeat.cancel()
        timeout = self.cfg.delivery.shutdown_timeout
        loop = asyncio.get_running_loop()
        if self.server:
            self.server.close()
        if self.handler:
            await self.handler.drain(loop.time() + timeout)
        if self.holder is not None:
            await self.holder.stop()  # what it holds stays in the spool for the next start
        if self.deliverer:
            await self.deliverer.stop(timeout)
        if self.sweeper is not None:
            self.sweeper.cancel()
            await asyncio.gather(self.sweeper, return_exceptions=True)
        await self.spool.close()
        self.systemd.close()
        log.info("event=stopped")


async def amain(config_path: Path) -> int:
    cfg = config_mod.load(config_path)
    daemon = Daemon(config_path, cfg)
    try:
        await daemon.start()
    except SpoolError as exc:
        log.error("event=start_failed error=%r", str(exc))
        return 75  # EX_TEMPFAIL
    except OSError as exc:
        log.error(
            "event=start_failed error=%r", f"cannot listen on {cfg.listen.host}:{cfg.listen.port}: {exc}"
        )
        await daemon.spool.close()
        return 71  # EX_OSERR
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.stop_event.set)
    loop.add_signal_handler(signal.SIGHUP, daemon.reload)
    await daemon.stop_event.wait()
    log.info("event=stopping")
    await daemon.stop()
    return 0
