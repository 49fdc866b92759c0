"""The provider balance: a gauge from every HTTP send (cost=3) and from balance.php on a slow
timer, and one warning (log, metric, operator notice) when it falls below provider.low_balance.

"One" across restarts too: that the operator was told is kept in the spool's control table
until the balance is back above the threshold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from decimal import Decimal

from relay.background import Background
from relay.delivery.http import ApiClient
from relay.errors import DeliveryError, SpoolError
from relay.metrics import Metrics
from relay.parsers.api import StatusError
from relay.spool.interface import Control

log = logging.getLogger("relay.balance")
LOW_KEY = "balance_low_since"
CHECK_INTERVAL = 1800.0  # seconds between balance.php requests (sends report it for free)


class BalanceWatch:
    def __init__(
        self,
        spool: Control,
        metrics: Metrics,
        *,
        threshold: Callable[[], float],
        notify: Callable[[str, str], bool] = lambda subject, text: False,
        interval: float = CHECK_INTERVAL,
    ) -> None:
        self.spool = spool
        self.metrics = metrics
        self.threshold = threshold  # provider.low_balance in force; 0: never warn
        self.notify = notify  # (subject, text) to the operator; False when there is no one to tell
        self.interval = interval
        self.balance: Decimal | None = None
        self._low: bool | None = None  # None: not read from the spool yet
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: Background | None = None

    def update(self, balance: str) -> None:
        """The balance an answer reported (called on the event loop, never blocks)."""
        value = Decimal(balance)
        self.balance = value
        self.metrics.balance.set(float(value))
        task = asyncio.create_task(self._check(value))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _check(self, value: Decimal) -> None:
        threshold = Decimal(str(self.threshold()))
        low = threshold > 0 and value < threshold
        self.metrics.balance_low.set(1 if low else 0)
        try:
            if self._low is None:
                self._low = LOW_KEY in await self.spool.control()
            if low and not self._low:
                self._low = True
                # Of relays sharing the spool that see the fall at once, one tells the operator.
                if not await self.spool.add_control(LOW_KEY, str(value)):
                    return
                log.warning("event=balance_low balance=%s threshold=%s", value, threshold)
                self.notify(
                    f"SMS relay: provider balance {value} is below {threshold}",
                    f"The SMS Centre account balance is {value}, below provider.low_balance ({threshold}).\n"
                    "Top it up: at 0 the provider refuses every request (ERROR 3) and delivery pauses.\n"
                    "You get this notice once; another after the balance was above the threshold again.\n",
                )
            elif not low and self._low:
                self._low = False
                await self.spool.set_control(LOW_KEY, None)
                log.info("event=balance_ok balance=%s threshold=%s", value, threshold)
        except SpoolError as exc:
            log.error("event=balance_check_failed error=%r", str(exc))

    async def refresh(self, client: ApiClient) -> None:
        try:
            balance = await client.balance()
        except (DeliveryError, StatusError) as exc:
            log.warning("event=balance_unavailable error=%r", str(exc))
            return
        self.update(balance)

    def start(self, client: ApiClient) -> None:
        async def step() -> float:
            await self.refresh(client)
            return self.interval

        self._timer = Background("balance", step, log=log, retry=self.interval)
        self._timer.start()

    async def stop(self) -> None:
        if self._timer is not None:
            await self._timer.stop()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)
