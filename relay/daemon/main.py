"""`smsc-relay serve`: load config -> build -> start -> READY -> wait for a signal -> drain -> close.

`Daemon.__init__` builds every part and wires them through their constructors; `start` opens
and starts them in order; `stop` undoes it in reverse. Nothing is patched in afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

from relay import ids
from relay.accept.service import AcceptService
from relay.background import Background
from relay.config.current import Current
from relay.config.load import load
from relay.config.schema import Config
from relay.daemon import http, start, transports
from relay.daemon.health import Health
from relay.daemon.sdnotify import SystemdNotifier
from relay.daemon.smpp import SmppLink
from relay.daemon.storm_runner import StormRunner
from relay.delivery import dkim
from relay.delivery.balance import BalanceWatch
from relay.delivery.failover import FailoverState
from relay.delivery.http import ApiClient
from relay.delivery.notices import Notifier
from relay.delivery.receipts import Receipts
from relay.delivery.retry import RetryPolicy
from relay.delivery.tracker import Tracker
from relay.delivery.workers import Deliverer, Hooks, unmasker
from relay.errors import ConfigError, Exit, SpoolError
from relay.metrics import Metrics
from relay.model import State
from relay.provider_errors import account_cause, pause_length
from relay.smtp.handler import Handler
from relay.smtp.intake import ReplyIntake
from relay.smtp.slots import Sessions
from relay.spool import interface as spool

log = logging.getLogger("relay.daemon")
SWEEP_INTERVAL = 60.0  # seconds between retention / unconfirmed sweeps, at most
STATUS_INTERVAL = 10.0  # seconds between STATUS= lines to systemd


class Daemon:
    def __init__(
        self,
        config_path: Path,
        cfg: Config,
        *,
        clock: Callable[[], float] = time.time,
        dnsfunc: dkim.DnsFunc | None = None,
    ) -> None:
        self.config_path = config_path
        self.current = Current(cfg)  # the config in force: every part reads it there
        self.clock = clock  # storm control's clock; tests pass a simulated one
        self.hostname = cfg.listen.hostname or socket.getfqdn()
        self.metrics = Metrics()
        self.systemd = SystemdNotifier()
        self.stop_event = asyncio.Event()
        self.spool = spool.make(cfg.spool, f"{socket.gethostname()}:{cfg.listen.port}")
        self.notifier = (
            Notifier(
                self.spool, cfg.notify, reporting_host=self.hostname, reply_address=cfg.provider.reply_address
            )
            if cfg.notify is not None
            else None
        )
        on_failed = self.notifier.failed if self.notifier is not None else _ignore
        d = cfg.delivery
        # One HTTP client for the relay: the workers' sends, tracking and the balance share its
        # pool, which stays below the provider's 15 concurrent requests (config checks that).
        self.api = ApiClient(
            lambda: self.cfg.provider, lambda: self.cfg.delivery.timeout, connections=d.concurrency + 2
        )
        self.failover = FailoverState(self.metrics)
        receipts = Receipts(self.spool, metrics=self.metrics, on_undelivered=on_failed)
        self.smpp = SmppLink(self.current, receipts)
        self.transports = transports.Transports(
            self.current, self.api, self.failover, self.hostname, self.smpp
        )
        self.balance = BalanceWatch(
            self.spool, self.metrics, threshold=lambda: self.cfg.provider.low_balance,
            notify=self.notifier.operator if self.notifier is not None else _nobody,
        )  # fmt: skip
        self.deliverer = Deliverer(
            self.spool,
            self.transports.new,
            unmasker(lambda: self.cfg.provider),
            metrics=self.metrics,
            hooks=Hooks(
                dkim_key=lambda: self.cfg.provider.dkim,
                return_path=self._return_path,
                pause_for=lambda rule: pause_length(self.cfg.provider)(rule),
                pause_cause=self._pause_cause,
                track_timeout=lambda via: self.cfg.provider.tracked_for(via),
                on_failed=on_failed,
                on_balance=self.balance.update,
                on_parts=receipts.settle,
            ),
            concurrency=transports.workers(cfg),
            policy=RetryPolicy(d.min_backoff, d.max_backoff, d.max_age),
        )
        self.tracker = Tracker(
            self.spool, self.api, metrics=self.metrics, on_undelivered=on_failed, clock=clock,
            enabled=lambda: self.cfg.provider.tracking,
        )  # fmt: skip
        self.storm_runner = StormRunner(self.spool, self.current, self.hostname, self.deliverer, clock=clock)
        intake = ReplyIntake(
            self.spool, metrics=self.metrics, pause=self.deliverer.pause, on_failed=on_failed,
            dnsfunc=dnsfunc, reply_key=lambda: self.spool.reply_key,
        )  # fmt: skip
        self.accept = AcceptService(
            self.spool, self.deliverer, current=self.current, metrics=self.metrics,
            on_alert_due=self.storm_runner.due,
        )  # fmt: skip
        self.handler = Handler(
            self.current, self.accept, metrics=self.metrics, intake=intake, hostname=self.hostname,
            sessions=Sessions(cfg.listen), clock=clock,
        )  # fmt: skip
        self.health = Health(
            self.spool,
            self.current,
            lambda: self.deliverer.pause_reason,
            lambda: self.deliverer.unwritten,
            lambda: self.smpp.reason,
        )
        self.server: asyncio.Server | None = None
        self.metrics_server: asyncio.Server | None = None
        self.sweeper = Background("sweep", self._sweep, log=log, first=self._sweep_interval())
        self.claims = Background("spool-claims", self._keep_claims, log=log)
        self.heartbeat = Background("sd-heartbeat", self._heartbeat, log=log, first=self._beat())
        self.watcher: asyncio.Task[None] | None = None
        self._last_status = 0.0

    @property
    def cfg(self) -> Config:
        return self.current.config

    def _return_path(self, relay_id: str, address: str) -> str:
        """The reply address tagged for this message (provider.reply_tags), from the spool's key."""
        if not self.cfg.provider.reply_tags:
            return address
        return ids.tagged(address, ids.reply_tag(self.spool.reply_key, relay_id))

    async def start(self) -> None:
        recovered = await self.spool.open()
        if recovered:
            log.warning("event=recovered rows=%d note='left sending by a crash; queued again'", recovered)
            await start.hold_recovered(self.spool, self.cfg)
        await self._pause_still_owed()
        self.storm_runner.start()
        self.server = await asyncio.get_running_loop().create_server(
            self.handler.factory, self.cfg.listen.host, self.cfg.listen.port
        )
        if self.cfg.metrics is not None:
            m = self.cfg.metrics
            self.metrics_server = await http.serve(
                m.host, m.port, self.metrics, self._refresh, self.health.check
            )
        await self.smpp.start()  # bound in the background: a submit waits for it
        self.deliverer.start()
        self.tracker.start()
        if self.cfg.provider.uses_api and self.cfg.provider.outbox is None:
            self.balance.start(self.api)
        self.sweeper.start()
        self.claims.start()
        self.watcher = asyncio.create_task(self.spool.watch(self._news), name="spool-watch")
        mode = transports.mode(self.cfg)
        where = spool.describe(self.cfg.spool, self.spool)
        log.info("event=ready listen=%s:%d spool=%s %s", self.cfg.listen.host, self.port, where, mode)
        self.systemd.ready(await self.status())
        self.heartbeat.start()

    async def _refresh(self) -> None:
        oldest = await self.spool.oldest_waiting()
        counts = await self.spool.counts()  # last: the gauges then match the counters served with them
        for state in State:
            self.metrics.queue.labels(state.value).set(counts.get(state, 0))
        self.metrics.paused.set(1 if self.deliverer.pause_reason else 0)
        self.metrics.smpp_bound.set(self.smpp.bound)
        self.metrics.oldest_waiting.set(0.0 if oldest is None else max(0.0, time.time() - oldest))

    async def status(self) -> str:
        """One line for `systemctl status`: where we listen and what waits."""
        waiting = await self.spool.count_waiting()
        unbound = "" if self.cfg.provider.failover else self.smpp.reason  # failover: mail goes on
        paused = self.deliverer.pause_reason or (f"no SMPP session bound: {unbound}" if unbound else "")
        text = f"listening on {self.cfg.listen.host}:{self.port}, {waiting} queued"
        return text + (f"; DELIVERY PAUSED: {paused}" if paused else "")

    def _beat(self) -> float:
        return min(STATUS_INTERVAL, self.systemd.watchdog_interval or STATUS_INTERVAL)

    async def _heartbeat(self) -> float:
        """STATUS every 10 s; WATCHDOG=1 at half the watchdog period, from the event loop itself,
        so a stuck loop (or spool) stops the keep-alives and systemd restarts the relay."""
        fields = []
        if self.systemd.watchdog_interval:
            fields.append("WATCHDOG=1")
        loop_time = asyncio.get_running_loop().time()
        if loop_time - self._last_status >= STATUS_INTERVAL or not fields:
            try:
                fields.append(f"STATUS={await self.status()}")
            except SpoolError as exc:
                fields.append(f"STATUS=spool unavailable: {exc}")
            self._last_status = loop_time
        self.systemd.notify(*fields)
        return self._beat()

    def _news(self, what: str) -> None:
        """Another relay queued rows anyone may claim, or changed the pause: look now."""
        self.deliverer.wake()

    async def _keep_claims(self) -> float:
        """A shared spool: renew this relay's claims well inside their lease, and give back
        those of a relay that stopped renewing (it died)."""
        try:
            back = await self.spool.keep_claims()
        except SpoolError as exc:
            log.error("event=claims_not_renewed error=%r", str(exc))
        else:
            if back:
                log.warning("event=claims_expired rows=%d note='their relay stopped renewing'", back)
                self.deliverer.wake()
        # Renewed twice before a lease could run out; a dead relay's rows wait a lease at most.
        return self.cfg.spool.lease / 3

    def _sweep_interval(self) -> float:
        return min(SWEEP_INTERVAL, self.cfg.provider.confirm_timeout / 4)

    async def _sweep(self) -> float:
        """Retention: finished messages and replies older than spool.keep_days go. With test=1, a
        message the provider never answered must be visible, not `sent` forever."""
        try:
            pruned = await self.spool.prune(time.time() - self.cfg.spool.keep_days * 86400)
        except SpoolError as exc:
            log.error("event=prune_failed error=%r", str(exc))
        else:
            if any(pruned):
                log.info("event=pruned messages=%d replies=%d", *pruned)
        if not self.cfg.provider.test:
            return self._sweep_interval()
        try:
            count = await self.spool.sweep_unconfirmed(self.cfg.provider.confirm_timeout)
        except SpoolError as exc:
            log.error("event=sweep_failed error=%r", str(exc))
            return self._sweep_interval()
        if count:
            log.warning(
                "event=unconfirmed count=%d note='no provider reply in %.0fs: the SMS may not have gone out'",
                count, self.cfg.provider.confirm_timeout,
            )  # fmt: skip
        return self._sweep_interval()

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
            new = load(self.config_path)
        except ConfigError as exc:
            log.error("event=reload_refused problems=%d detail=%r", len(exc.problems), str(exc))
            return
        old = self.cfg
        fixed = [
            name
            for name, before, after in (
                ("listen.host", old.listen.host, new.listen.host),
                ("listen.port", old.listen.port, new.listen.port),
                ("spool", old.spool, new.spool),
                ("delivery.concurrency", old.delivery.concurrency, new.delivery.concurrency),
                ("metrics", old.metrics, new.metrics),
            )
            if before != after
        ]
        if fixed:
            log.warning(
                "event=reload_partial needs_restart=%s note='they change on restart; the rest applies now'",
                ",".join(fixed),
            )
        try:
            self.handler.reconfigure(new)
        except (OSError, ssl.SSLError) as exc:
            log.error("event=reload_refused detail=%r", f"TLS certificate: {exc}")
            return
        self.current.config = new
        if transports.settings(old) != transports.settings(new):
            # Outbox on or off, provider hosts, port, timeouts, TLS: new connections from now on.
            self.deliverer.renew_transports()
            log.warning("event=transport_changed %s", transports.mode(new))
        asyncio.get_running_loop().create_task(self.smpp.apply(new))  # new sessions if need be
        self.storm_runner.wake()  # storm settings may have changed
        if self.deliverer.pause_reason:
            # SIGHUP is how an operator says "the password / the balance is fixed".
            asyncio.get_running_loop().create_task(self.resume())
        log.info("event=reloaded routes=%d", len(new.routes))

    async def resume(self) -> None:
        """Lift a provider pause, in the spool (for `queue` and a restart) and in delivery."""
        for key in ("paused_until", "pause_reason", spool.PAUSE_CAUSE):
            await self.spool.set_control(key, None)
        self.deliverer.resume()

    def _pause_cause(self) -> str:
        p = self.cfg.provider
        return account_cause(p, p.password.value, self.spool.reply_key)

    async def _pause_still_owed(self) -> None:
        if await start.pause_lifted(self.spool, self._pause_cause()):
            await self.resume()

    async def stop(self) -> None:
        self.systemd.stopping()
        if self.metrics_server is not None:
            self.metrics_server.close()
        await self.heartbeat.stop()
        timeout = self.cfg.delivery.shutdown_timeout
        loop = asyncio.get_running_loop()
        if self.server:
            self.server.close()
        await self.handler.sessions.drain(loop.time() + timeout)
        await self.storm_runner.stop()  # what it holds stays in the spool for the next start
        await self.deliverer.stop(timeout)
        await self.smpp.stop()  # unbound; the receipts it read are written first
        await self.tracker.stop()
        await self.balance.stop()
        await self.api.close()
        await self.sweeper.stop()
        await self.claims.stop()
        if self.watcher is not None:
            self.watcher.cancel()
            await asyncio.gather(self.watcher, return_exceptions=True)
        await self.spool.close()
        self.systemd.close()
        log.info("event=stopped")


def _nobody(subject: str, text: str) -> bool:
    """No `notify:` section: the operator learns from the log and the metrics."""
    return False


def _ignore(relay_id: str) -> None:
    """No `notify:` section: a failure is logged by delivery and visible in `queue`."""


async def amain(config_path: Path) -> int:
    cfg = load(config_path)
    daemon = Daemon(config_path, cfg)
    try:
        await daemon.start()
    except SpoolError as exc:
        log.error("event=start_failed error=%r", str(exc))
        return Exit.TEMPFAIL
    except OSError as exc:
        log.error(
            "event=start_failed error=%r", f"cannot listen on {cfg.listen.host}:{cfg.listen.port}: {exc}"
        )
        await daemon.spool.close()
        return Exit.OSERR
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.stop_event.set)
    loop.add_signal_handler(signal.SIGHUP, daemon.reload)
    await daemon.stop_event.wait()
    log.info("event=stopping")
    await daemon.stop()
    return Exit.OK
