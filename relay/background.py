"""One way to run a background loop: start, stop, wake (the storm runner, tracking, the balance,
the spool writer and the daemon's own loops all run on it).

`step` runs, then the loop waits the seconds it returned (None: until woken) or until `wake()`;
a wake that comes while a step runs is not lost (the next wait returns at once). A fault of a
step is logged and the loop goes on after `retry`: a background part must outlive any one
fault, or it stops silently. `stop()` (cancellation) is the only way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable


class Background:
    def __init__(
        self,
        name: str,
        step: Callable[[], Awaitable[float | None]],
        *,
        log: logging.Logger,
        retry: float = 5.0,
        first: float = 0.0,  # wait this long before the first step
    ) -> None:
        self.name = name
        self.step = step
        self.log = log
        self.retry = retry
        self.first = first
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        delay: float | None = self.first
        while True:
            if delay is None:
                await self._wake.wait()
            elif delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            try:
                delay = await self.step()
            except Exception:
                self.log.exception("event=background_failed loop=%s retry_in=%.0fs", self.name, self.retry)
                delay = self.retry
