"""GET /metrics and GET /health on the operator's (loopback) address: a few lines of asyncio,
nothing else is served."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from prometheus_client.exposition import CONTENT_TYPE_LATEST

from relay.metrics import Metrics

log = logging.getLogger("relay.daemon")
Refresh = Callable[[], Awaitable[None]]
Health = Callable[[], Awaitable[str]]  # "" when healthy, else the reason


REFRESH_BUDGET = 0.5  # seconds the spool gets to answer a scrape; then the figures from memory


async def _refreshed(refresh: Refresh, metrics: Metrics) -> None:
    """The spool's figures if it answers within the budget; else a scrape all the same, with
    the counters from memory and the spool's gauges marked: monitoring needs the figures most
    when the database is down."""
    try:
        await asyncio.wait_for(refresh(), REFRESH_BUDGET)
    except Exception as exc:  # a spool outage in any form (SpoolError, a timeout, the driver's own)
        log.warning("event=metrics_stale reason=%r", f"{type(exc).__name__}: {exc}"[:200])
        metrics.queue.clear()
        metrics.oldest_waiting.set(float("nan"))
        metrics.spool_readable.set(0)
    else:
        metrics.spool_readable.set(1)


async def serve(host: str, port: int, metrics: Metrics, refresh: Refresh, health: Health) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            method, path, *_ = request.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            if method != "GET":
                status, ctype, body = "405 Method Not Allowed", "text/plain", b"GET only\n"
            elif path.split("?")[0] == "/metrics":
                await _refreshed(refresh, metrics)
                status, ctype, body = "200 OK", CONTENT_TYPE_LATEST, metrics.exposition()
            elif path.split("?")[0] == "/health":
                problem = await health()
                status = "503 Service Unavailable" if problem else "200 OK"
                ctype, body = "text/plain; charset=utf-8", ((problem or "ok") + "\n").encode()
            else:
                status, ctype, body = "404 Not Found", "text/plain", b"try /metrics or /health\n"
            head = f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError, OSError):
            pass  # a broken or slow scraper gets nothing; it will try again
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
