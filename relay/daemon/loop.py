"""The event loop `serve` runs on: uvloop when it is installed (the `fast` extra), else asyncio's.

uvloop (libuv) accepts and moves bytes faster than asyncio's selector loop with the same code,
but it is a compiled extension with no wheel on some platforms: the relay never needs it.
SMSC_RELAY_LOOP=asyncio keeps asyncio's loop where uvloop is installed (the tests prove the
relay on both; an operator can rule out uvloop when chasing a bug); =uvloop refuses to start
without it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from relay.errors import ConfigError, Problem

LOOP_ENV = "SMSC_RELAY_LOOP"
CHOICES = ("auto", "asyncio", "uvloop")
T = TypeVar("T")
log = logging.getLogger("relay.daemon")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def choose(env: Mapping[str, str] = os.environ) -> tuple[str, LoopFactory]:
    """(name for the log, loop factory) as SMSC_RELAY_LOOP asks: auto (unset), asyncio, uvloop."""
    wanted = env.get(LOOP_ENV, "").strip().lower() or "auto"
    if wanted not in CHOICES:
        raise _problem(f"is one of {', '.join(CHOICES)}, not {wanted!r}")
    if wanted != "asyncio":
        try:
            import uvloop
        except ImportError:
            if wanted == "uvloop":
                raise _problem("is uvloop, which is not installed (pip install 'smsc-relay[fast]')") from None
        else:
            return f"uvloop-{getattr(uvloop, '__version__', '?')}", uvloop.new_event_loop
    return "asyncio", asyncio.new_event_loop


def _problem(message: str) -> ConfigError:
    return ConfigError([Problem(LOOP_ENV, None, message)], "environment")


def run(main: Coroutine[Any, Any, T], env: Mapping[str, str] = os.environ) -> T:
    """asyncio.run on the chosen loop, said in one log line first."""
    try:
        name, factory = choose(env)
    except ConfigError:
        main.close()  # never awaited: no "coroutine was never awaited" warning
        raise
    log.info("event=event_loop loop=%s", name)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
