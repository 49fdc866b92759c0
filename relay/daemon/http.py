"""GET /metrics and GET /health on the operator's (loopback) address: a few lines of asyncio,
nothing else is served."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from prometheus_client.exposition import CONTENT_TYPE_LATEST

from relay.metrics import Metrics

Refresh = Callable[[], Awaitable[None]]
Health = Callable[[], Awaitable[str]]  # "" when healthy, else the reason


async def serve(host: str, port: int, metrics: Metrics, refresh: Refresh, health: Health) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            method, path, *_ = request.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            if method != "GET":
                status, ctype, body = "405 Method Not Allowed", "text/plain", b"GET only\n"
            elif path.split("?")[0] == "/metrics":
                await refresh()
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
