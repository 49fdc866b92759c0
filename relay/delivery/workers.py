"""Delivery workers: claim due rows from the spool, send them, record the outcome.

Transient trouble defers the row with exponential backoff and jitter until `max_age`, then
it expires; a permanent upstream refusal fails it. When the upstream itself is unusable
(refused connection, 421, timeout) all workers pause together for a growing interval, so a
provider outage costs one connection attempt per pause, not one per queued message.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from relay import polling
from relay.config.schema import DkimKey, ProviderConfig
from relay.delivery import dkim
from relay.delivery.outcomes import Effects
from relay.delivery.recording import Outcomes
from relay.delivery.retry import RetryPolicy
from relay.delivery.transport import Accepted, Outgoing, Transport
from relay.errors import DeliveryError, UpstreamDeferred
from relay.formatters import provider as provider_fmt
from relay.metrics import Metrics
from relay.model import ReplyKind, ReplyOutcome, RouteMode, State, TransportKind
from relay.provider_errors import Rule
from relay.spool.interface import Control, Messages, Replies, Row, Tracking

log = logging.getLogger("relay.delivery")
IDLE_POLL = 5.0  # seconds
CLAIM_BATCH = 8  # rows a worker takes at a time: fewer transactions, still spread over workers
READY_LIMIT = 256  # fresh rows held in memory for the workers
FAULT_NAP = 5.0  # a worker's pause after a fault of ours, so a persistent one cannot spin
KEEP_ANSWER_BYTES = 4096  # of an HTTP answer, kept with it (as of a reply mail)


class DeliverySpool(Messages, Replies, Tracking, Control, Protocol):
    """Rows to claim and finish, an HTTP answer kept as a reply, tracking started, the pause."""


@dataclass(frozen=True, slots=True)
class Hooks:
    """What delivery asks of, and tells, the rest of the relay (each read at send time, so a
    SIGHUP applies to the next message); every one defaults to nothing."""

    dkim_key: Callable[[], DkimKey | None] = lambda: None  # the key in force
    return_path: Callable[[str, str], str] = lambda relay_id, address: address  # -> address used
    pause_for: Callable[[Rule], float] = lambda rule: 3600.0  # how long error 2/3/4 holds the queue
    pause_cause: Callable[[], str] = lambda: ""  # the settings in force a pause may be owed to
    # delivery tracking of a request sent by this transport: how long, or off
    track_timeout: Callable[[TransportKind], float | None] = lambda via: None
    on_failed: Callable[[str], None] = lambda relay_id: None  # failed for good: tell its sender
    on_balance: Callable[[str], None] = lambda balance: None  # the balance an HTTP answer reported
    # SMPP: a request's parts are written; receipts that came first can settle it now
    on_parts: Callable[[str], None] = lambda relay_id: None


class Deliverer:
    def __init__(
        self,
        spool: DeliverySpool,
        make_transport: Callable[[], Transport],
        unmask: Callable[[bytes], bytes],
        *,
        metrics: Metrics,
        hooks: Hooks = Hooks(),
        concurrency: int = 2,
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        idle_poll: float = IDLE_POLL,
        batch: int = CLAIM_BATCH,
    ) -> None:
        self.spool = spool
        self.make_transport = make_transport
        self.unmask = unmask
        self.hooks = hooks
        self.metrics = metrics
        self.concurrency = concurrency
        self.policy = policy or RetryPolicy()
        self.clock = clock
        self.idle_poll = idle_poll
        self.batch = batch
        self.outcomes = Outcomes(spool)
        # An HTTP answer is the provider's word at once: applied like a reply mail.
        self.effects = Effects(metrics, pause=self.pause, on_failed=hooks.on_failed)
        self._wake = asyncio.Event()
        self._stopping = False
        self._workers: list[asyncio.Task[None]] = []
        self._paused_until = 0.0
        self._pause = 0.0  # the current upstream pause, grows while the upstream stays down
        self.in_flight: set[str] = set()
        # Fresh rows handed over by the listener (already `sending` in the spool), so that a
        # new message costs no claim transaction. Bounded: beyond it, rows wait in the spool.
        self._ready: collections.deque[Row] = collections.deque()
        self.pause_reason = ""  # set while a provider error holds the whole queue
        self._control_checked = 0.0
        self._generation = 0  # bumped by renew_transports(): workers then make new ones

    @property
    def unwritten(self) -> int:
        """Delivery outcomes waiting for the spool to take them (for /health)."""
        return self.outcomes.unwritten

    @property
    def paused_until(self) -> float:
        """Until when every worker holds off (a provider error or an unusable upstream)."""
        return self._paused_until

    def pause(self, until: float, reason: str) -> None:
        """Hold all delivery until `until` (a provider error that every request would hit)."""
        if until > self._paused_until:
            self._paused_until = until
        self.pause_reason = reason
        log.error(
            "event=delivery_paused until=%s reason=%r",
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(until)),
            reason,
        )

    def resume(self) -> None:
        if self._paused_until > self.clock():
            log.warning("event=delivery_resumed")
        self._paused_until = 0.0
        self._pause = 0.0
        self.pause_reason = ""
        self._wake.set()

    async def _sync_control(self) -> None:
        """Follow the spool's `paused_until` (set by a reply, cleared by `queue resume`)."""
        now = self.clock()
        if now - self._control_checked < 1.0:
            return
        self._control_checked = now
        seen = (self._paused_until, self.pause_reason)
        control = await self.spool.control()
        if (self._paused_until, self.pause_reason) != seen:
            # A reply paused us while the read was out: what it read is older than that pause
            # (seen once in test_ha: the stale row resumed a pause just made, and a held
            # message went out).
            return
        until = float(control.get("paused_until", "0"))
        reason = control.get("pause_reason", "")
        # The reason too: it may have been written after the time we saw first (`queue` tools).
        if until > now and (until > self._paused_until or reason != self.pause_reason):
            self.pause(until, reason)
        elif until <= now and self.pause_reason:
            self.resume()

    def renew_transports(self) -> None:
        """The provider settings changed (SIGHUP): each worker closes its transport before its
        next message and makes a new one from the settings in force."""
        self._generation += 1
        self.wake()

    def can_take(self, count: int) -> bool:
        """Whether new rows may be inserted as claimed and handed over with `take()`."""
        return (
            not self._stopping
            and self.clock() >= self._paused_until
            and len(self._ready) + count <= READY_LIMIT
        )

    def take(self, rows: list[Row]) -> None:
        self._ready.extend(rows)
        self._wake.set()

    def wake(self) -> None:
        """New rows are queued: a sleeping worker should look now (at the control table too)."""
        self._control_checked = 0.0
        self._wake.set()

    def start(self) -> None:
        self._workers = [
            asyncio.create_task(self._worker(i), name=f"delivery-{i}") for i in range(self.concurrency)
        ]

    async def stop(self, timeout: float) -> None:
        """Finish in-flight sends within `timeout`; what is left stays in the spool."""
        self._stopping = True
        self._wake.set()
        _done, pending = (
            await asyncio.wait(self._workers, timeout=timeout) if self._workers else (set(), set())
        )
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        leftover, self._ready = list(self._ready), collections.deque()
        await self._unclaim(leftover)
        if not await self.outcomes.flush():  # what is still unwritten is `sending`: queued at start
            log.error(
                "event=outcomes_unwritten count=%d note='queued again at the next start'", self.unwritten
            )
        if pending:
            log.warning("event=delivery_stop_timeout unfinished=%d", len(pending))

    async def _worker(self, index: int) -> None:
        transport, generation = self.make_transport(), self._generation
        try:
            while not self._stopping:
                if generation != self._generation:
                    with contextlib.suppress(Exception):
                        await transport.close()
                    transport, generation = self.make_transport(), self._generation
                try:
                    await self._work_once(transport)
                except asyncio.CancelledError:
                    raise
                except Exception:  # a worker must outlive any one fault, or delivery stops silently
                    log.exception(
                        "event=delivery_error worker=%d note='retrying in %.0f s'", index, FAULT_NAP
                    )
                    await self._sleep(FAULT_NAP)
        finally:
            with contextlib.suppress(Exception):
                await transport.close()

    async def _work_once(self, transport: Transport) -> None:
        """Take due rows (handed over, or claimed from the spool) and deliver them."""
        # Cleared before looking for work, never after: a take() or wake() that comes while
        # we look (during the claim or next_due awaits) must cut the nap below short.
        self._wake.clear()
        if not await self.outcomes.flush():
            await self._sleep(FAULT_NAP)  # the spool still fails: no new work until it recovers
            return
        await self._sync_control()
        now = self.clock()
        if now < self._paused_until:
            # What was taken before the pause goes back, so that `queue` shows it waiting.
            leftover, self._ready = list(self._ready), collections.deque()
            await self._unclaim(leftover)
            # Short naps, so that `queue resume` from another process is seen promptly.
            await self._sleep(min(self._paused_until - now, 1.0))
            return
        if not self._ready:
            # A claim feeds the shared queue; each worker takes one row at a time from it, so
            # a slow provider session holds its own message only, never the batch behind it.
            self._ready.extend(await self.spool.claim(self.batch, now))
        if not self._ready:
            due = await self.spool.next_due()
            # Another process (`queue retry`) may queue rows without waking us: look again soon.
            poll = self.idle_poll
            await self._sleep(poll if due is None else min(poll, max(0.0, due - self.clock())))
            return
        if len(self._ready) > 1:
            self._wake.set()  # an idle worker may take the next one now
        await self._deliver(transport, self._ready.popleft())

    async def _unclaim(self, rows: list[Row]) -> None:
        """Not attempted: back to the queue as they were, without counting a try."""
        for row in rows:
            await self.outcomes.record(row.id, State.QUEUED, attempts=row.attempts - 1)

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    async def _deliver(self, transport: Transport, row: Row) -> None:
        self.in_flight.add(row.id)
        try:
            try:
                needs_secret = row.masked and transport.needs_credentials
                message = self.unmask(row.message) if needs_secret else row.message
                sender = row.upstream_from
                if transport.carries_mail:
                    sender = self.hooks.return_path(row.id, row.upstream_from)
                    if sender != row.upstream_from:
                        message = provider_fmt.retag_from(message, row.upstream_from, sender)
                    key = self.hooks.dkim_key()
                    if key is not None:  # RSA in Python: off the loop
                        message = await asyncio.to_thread(dkim.sign, key, message)
                outgoing = Outgoing(row.id, sender, row.upstream_to, message, uncertain=row.uncertain)
                accepted = await transport.send(outgoing)
            except DeliveryError as exc:
                await self._failed_attempt(row, exc)
                return
            except Exception as exc:  # a fault of ours: this attempt failed; the message is retried
                log.exception("event=delivery_error id=%s", row.id)
                await self._failed_attempt(row, UpstreamDeferred(f"internal error: {exc!r}"))
                return
            except asyncio.CancelledError:
                # Stopping mid-send: the outcome is unknown, so it goes back to the queue
                # (at-least-once; the relay id makes a duplicate visible).
                await asyncio.shield(self.outcomes.record(row.id, State.QUEUED))
                raise
            self._pause = 0.0
            self.metrics.transport_sends.labels(accepted.via.value).inc()
            # A dry run sent nothing: its line says so, as `queue list` does (`dry-run`).
            log.info(
                "event=%s id=%s route=%s attempts=%d via=%s upstream=%r",
                "dry_run" if accepted.dry_run else "sent", row.id, row.route, row.attempts,
                accepted.via.value, accepted.reply,
            )  # fmt: skip
            if accepted.answer is not None:
                await self._answered(row, accepted)
                return
            # A dry run's mail never reaches the provider: it must not wait for (and be reported
            # `unconfirmed` without) a reply that cannot come.
            done = State.DRY_RUN if accepted.dry_run else State.SENT
            poll, until = self._tracking(row, accepted)
            # Only the columns that change: the hot path's UPDATE stays as small as it was.
            extra: dict[str, Any] = {"uncertain": 0} if row.uncertain else {}
            if poll is not None:
                extra.update(next_poll=poll, track_until=until)
            await self.outcomes.record(
                row.id, done, last_error="", error_code=None, via=accepted.via.value, **extra
            )
            self.metrics.requests.labels(done.value).inc()
            self._count_sent(row)
        finally:
            self.in_flight.discard(row.id)

    def _count_sent(self, row: Row) -> None:
        self.metrics.parts_sent.inc(row.parts * max(1, len(row.phones)))
        self.metrics.accept_to_provider.observe(max(0.0, self.clock() - row.created))

    def _tracking(self, row: Row, accepted: Accepted) -> tuple[float | None, float | None]:
        """(first poll, give up at) when this request's delivery is to be tracked."""
        timeout = self.hooks.track_timeout(accepted.via)
        if timeout is None or accepted.dry_run or row.mode is RouteMode.EMAIL2SMS:
            return None, None
        if not polling.trackable_phones(row.phones):
            return None, None  # groups only: status.php is asked by phone
        now = self.clock()
        # SMPP: receipts settle it; status.php (if at all) only for a phone whose receipt is
        # late. Without polling, tracking's end (status-unknown) is its first "poll".
        first = polling.FIRST_POLL if accepted.poll_after is None else min(accepted.poll_after, timeout)
        return now + first, now + timeout

    async def _answered(self, row: Row, accepted: Accepted) -> None:
        """The provider answered at once (HTTP): its OK or ERROR goes through the same state
        machine as a reply mail, with the pause it may bring."""
        answer = accepted.answer
        assert answer is not None
        source = accepted.via.value
        if answer.balance:
            self.hooks.on_balance(answer.balance)

        async def apply() -> None:
            if answer.kind is ReplyKind.OK:
                # Before the state moves: whoever sees `confirmed` sees how it went too.
                poll, until = self._tracking(row, accepted)
                await self.spool.start_tracking(
                    row.id, via=source, next_poll=poll, until=until, parts=accepted.parts
                )
            applied = await self.spool.record_reply(
                answer, mail_from=f"<{source} answer>", raw=accepted.raw[:KEEP_ANSWER_BYTES],
                pause_for=self.hooks.pause_for, cause=self.hooks.pause_cause,
            )  # fmt: skip
            self.effects(answer, applied, source=source)
            if applied.outcome is ReplyOutcome.CONFIRMED:
                self._count_sent(row)
                if accepted.parts:
                    self.hooks.on_parts(row.id)

        await self.outcomes.keep(row.id, f"{source} answer", apply)

    async def _failed_attempt(self, row: Row, exc: DeliveryError) -> None:
        if exc.connection and self.clock() >= self._paused_until:
            # Only the first worker to find the upstream gone grows the pause: the others' failed
            # attempts of the same moment are the same outage, not a longer one.
            self._pause = self.policy.upstream_pause(self._pause)
            self._paused_until = self.clock() + self._pause
            log.warning("event=upstream_unavailable pause=%.0fs error=%r", self._pause, exc.text)
        if not exc.temporary:
            await self.outcomes.record(row.id, State.FAILED, last_error=exc.text, error_code=exc.code)
            log.error("event=failed id=%s route=%s error=%r", row.id, row.route, exc.text)
            self.metrics.requests.labels(State.FAILED.value).inc()
            self.hooks.on_failed(row.id)
            return
        if self.clock() - row.created > self.policy.max_age:
            await self.outcomes.record(row.id, State.EXPIRED, last_error=exc.text, error_code=exc.code)
            log.error("event=expired id=%s attempts=%d error=%r", row.id, row.attempts, exc.text)
            self.metrics.requests.labels(State.EXPIRED.value).inc()
            self.hooks.on_failed(row.id)
            return
        delay = max(self.policy.delay(row.attempts), exc.retry_after)
        await self.outcomes.record(
            row.id,
            State.DEFERRED,
            next_attempt=self.clock() + delay,
            last_error=exc.text,
            error_code=exc.code,
            uncertain=int(exc.uncertain or row.uncertain),
        )
        log.warning(
            "event=deferred id=%s attempts=%d retry_in=%.0fs error=%r", row.id, row.attempts, delay, exc.text
        )


def unmasker(get_provider: Callable[[], ProviderConfig]) -> Callable[[bytes], bytes]:
    """Unmask with the provider config in force at send time (SIGHUP may have rotated it)."""
    return lambda masked: provider_fmt.unmask(masked, get_provider())
