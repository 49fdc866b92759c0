"""Prometheus metrics and a health check, served on a (loopback) address of the operator's choice.

One registry per daemon. Counters move where things happen (listener, delivery, replies); queue
depth is read from the spool when scraped. The HTTP side is a few lines of asyncio: GET /metrics
and GET /health, nothing else.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger("relay.metrics")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter("smsc_relay_mails_received", "Mails accepted (250) for SMS", registry=r)
        self.rejected = Counter(
            "smsc_relay_mails_rejected", "Mails or recipients refused, by reason", ["reason"], registry=r
        )
        self.requests = Counter(
            "smsc_relay_requests", "Provider requests reaching a state", ["state"], registry=r
        )
        self.provider_errors = Counter(
            "smsc_relay_provider_errors", "Provider ERROR replies by code", ["code"], registry=r
        )
        self.parts_sent = Counter("smsc_relay_sms_parts_sent", "SMS parts sent (parts x phones)", registry=r)
        self.alerts = Counter(
            "smsc_relay_storm_alerts", "Alerts of storm-controlled routes by what became of them at intake"
            " (held, repeat, cancelled)", ["state"], registry=r,
        )  # fmt: skip
        self.queue = Gauge("smsc_relay_queue", "Spooled provider requests by state", ["state"], registry=r)
        self.paused = Gauge(
            "smsc_relay_delivery_paused", "1 while a provider error pauses delivery", registry=r
        )
        self.accept_to_provider = Histogram(
            "smsc_relay_accept_to_provider_seconds", "From the client's 250 to the provider's 250",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.provider_to_confirmation = Histogram(
            "smsc_relay_provider_to_confirmation_seconds", "From the provider's 250 to its OK reply",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip

    def exposition(self) -> bytes:
        return bytes(generate_latest(self.registry))


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
