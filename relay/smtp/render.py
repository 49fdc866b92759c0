"""The pure core's render, run where it cannot hold the event loop.

Mail that may take long to render renders in the render process, not on the event loop: over
64 KiB, or with many MIME parts (the parser builds an object per part: 25 ms for 1,000 parts of
52 KB) or many RFC 2047 words (the stdlib decodes them in quadratic time). Counting is C speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import multiprocessing
import os
import signal
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime

from relay import pipeline
from relay.accept.service import Arrival
from relay.config.schema import Config
from relay.ids import new_id

OFFLOAD_BYTES = 64 * 1024
OFFLOAD_DELIMITERS = 50  # lines starting "--"
OFFLOAD_WORDS = 100  # "=?"


class Renderer:
    def __init__(self, hostname: str, pool: Executor | None = None) -> None:
        self.hostname = hostname
        self.pool = pool  # None: the render process (render_process()); tests pass their own

    async def render(self, arrival: Arrival, cfg: Config) -> pipeline.Rendered:
        """The provider mails of a mail (raises the core's RelayError for what it refuses)."""
        render = functools.partial(
            pipeline.render,
            arrival.raw,
            mail_from=arrival.mail_from,
            rcpt_tos=list(arrival.rcpt_tos),
            config=cfg,
            new_id=new_id,
            now=datetime.fromtimestamp(arrival.at, UTC),
            hostname=self.hostname,
            with_secret=False,  # the spool keeps the masked mail; delivery unmasks it
        )
        if not heavy(arrival.raw):
            return render()
        pool = self.pool or render_process()
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, render)
        except BrokenProcessPool:  # the process died (killed, out of memory): a new one next time
            _discard_render_process(pool)
            raise


def heavy(raw: bytes) -> bool:
    """Whether rendering this mail may take long (see OFFLOAD_BYTES)."""
    return (
        len(raw) > OFFLOAD_BYTES
        or raw.count(b"\n--") > OFFLOAD_DELIMITERS
        or raw.count(b"=?") > OFFLOAD_WORDS
    )


# Heavy mail renders in a process of its own, one mail at a time. In a thread it held the GIL
# from the event loop, which needs it back after every socket call: ten 2 MB mails rendering in
# 6 threads held a trusted client's NOOP 2.6 s, in 1 thread still 0.3 s (p50), in a process 1 ms.
# One process for the handlers of the daemon (tests: of pytest), started at the first such mail.
_render_process: ProcessPoolExecutor | None = None
PR_SET_PDEATHSIG = 1  # prctl(2)


def render_process() -> ProcessPoolExecutor:
    global _render_process
    if _render_process is None:
        spawn = multiprocessing.get_context("spawn")  # never fork a process with threads
        _render_process = ProcessPoolExecutor(
            1, mp_context=spawn, initializer=_render_process_init, initargs=(os.getpid(),)
        )
    return _render_process


def _discard_render_process(pool: Executor) -> None:
    global _render_process
    if pool is _render_process:
        _render_process = None
        pool.shutdown(wait=False)


def _render_process_init(parent: int) -> None:
    """In the render process: SIGTERM, SIGINT and SIGHUP reach the whole process group but are the
    daemon's to act on (it drains, then ends this process); if the daemon dies without that, the
    kernel ends this process too (Linux), or it would wait for work forever."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before that
        os._exit(os.EX_OK)
