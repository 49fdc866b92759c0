"""Delivery throughput and time to delivered: SMTP, the HTTP API and SMPP, to fakes of the provider.

Run: .venv/bin/python benchmarks/transports.py [--runs 5] [--messages 400] [--latency 0.02]

The fakes answer after the same simulated provider latency (--latency seconds per request: per
DATA for SMTP, per send.php for HTTP, per submit_sm for SMPP) and are the tests' own:
tests/fakes.py's aiosmtpd provider, tests/fake_api.py's aiohttp API (ERROR 9 to a 15th
concurrent request, as the provider), tests/fake_smsc.py's SMSC (smpplib's codec; it pushes a
DELIVRD receipt --receipt-delay seconds after each submit_sm_resp). For each
delivery.concurrency, runs alternate SMTP, HTTP, SMPP (provider.smpp.window --window, 10; one session)
and, at the largest concurrency, SMPP at window 1 (--window1-messages requests) and SMPP with
--paced requests; each burst run spools --messages requests at once and times until none waits.

Reported: the median messages/s of each, the median ratios of neighbouring runs (HTTP/SMTP,
SMPP/HTTP, SMPP window 10 / window 1), the CPU this process used per message (relay and fakes),
the most requests the fakes saw at once, and for SMPP the time to `delivered`: from each row's
creation (in a burst that includes its wait in the queue; the paced requests go one by one
through the accept service, as from the listener, below the transport's capacity) and from
the moment the fake wrote its receipt; median and p95 over the messages of a run, then the
median over runs. HTTP has no receipts: `delivered` comes from status.php polling (asked
FIRST_POLL after the provider took it, one list request of at most MAX_PAIRS a minute), so
its figure is the earliest that schedule allows for the same burst, computed from when each
request was confirmed rather than waited for (minutes).
Everything runs in this one process on loopback (smpp34's Rust runtime has threads of its own).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from relay import pipeline  # noqa: E402
from relay.accept.service import Arrival  # noqa: E402
from relay.config import load as config_mod  # noqa: E402
from relay.config.schema import Config  # noqa: E402
from relay.daemon.main import Daemon  # noqa: E402
from relay.delivery.tracker import LIST_INTERVAL, MAX_PAIRS  # noqa: E402
from relay.ids import new_id  # noqa: E402
from relay.model import ProviderMail, State  # noqa: E402
from relay.polling import FIRST_POLL  # noqa: E402
from tests.fake_api import PASSWORD, FakeApi  # noqa: E402
from tests.fake_smsc import FakeSmsc  # noqa: E402
from tests.fakes import FakeProvider  # noqa: E402

SMPP_PASSWORD = "s3cr-t8!"  # SMPP 3.4: a bind's password has 8 characters at most
CONFIG = """
listen: {{host: 127.0.0.1, port: 0}}
provider:
  host: 127.0.0.1
  port: {smtp_port}
  login: mylogin
  password: "{password}"
  reply_address: replies@relay.example.com
  test: false
  phone_limits: false
  transport: {transport}
  api_url: {api_url}
{smpp}spool: {{path: {spool}}}
delivery: {{concurrency: {concurrency}, timeout: 30}}
routes:
  - name: number
    match: {{recipient: '^(?P<phones>\\+?[0-9]{{10,15}})@sms\\.example\\.com$'}}
"""
SMPP = "  smpp: {{host: 127.0.0.1, port: {port}, backup_host: '', window: {window}, bind_timeout: 2}}\n"
WAITING = (State.QUEUED, State.DEFERRED, State.SENDING)
DONE = {"smtp": State.SENT, "http": State.CONFIRMED, "smpp": State.DELIVERED}
DEADLINE = 120.0  # seconds any one wait may take: a stuck relay fails the run, never hangs it
Rows = list[tuple[str, str, float, float, str | None]]  # id, state, created, updated, message id


class TimedSmsc(FakeSmsc):
    """The fake SMSC, noting when it wrote each receipt (time.time, as the spool's clock)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.receipt_at: dict[str, float] = {}
        self.port = 0

    async def push_receipt(self, message_id: str, stat: str = "DELIVRD", *, phone: str | None = None) -> bool:
        written = await super().push_receipt(message_id, stat, phone=phone)
        if written:
            self.receipt_at.setdefault(message_id, time.time())
        return written


@dataclass
class Bench:
    relay: Daemon
    cfg: Config
    transport: str
    api: FakeApi
    smsc: TimedSmsc | None


@contextlib.asynccontextmanager
async def relay_for(
    transport: str, concurrency: int, latency: float, window: int, receipt_delay: float
) -> AsyncIterator[Bench]:
    """A relay on `transport` and the three fakes, each stopped on the way out (smpp34 can crash
    at interpreter exit if a session is left running)."""
    loop = asyncio.get_running_loop()
    smtp_fake = FakeProvider(delay=latency)
    smtp_server = await loop.create_server(smtp_fake.factory, "127.0.0.1", 0)
    api_fake = FakeApi(service_delay=latency, balance=Decimal(10**9))
    runner, api_url = await api_fake.start()
    smsc, smpp = None, ""
    try:
        if transport == "smpp":
            smsc = TimedSmsc(
                system_id="mylogin", password=SMPP_PASSWORD, window=window, answer_delay=latency,
                receipts=lambda pdu: "DELIVRD", receipt_delay=receipt_delay,
            )  # fmt: skip
            smsc.port = await smsc.start()
            smpp = SMPP.format(port=smsc.port, window=window)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "relay.yaml"
            path.write_text(
                CONFIG.format(
                    smtp_port=smtp_server.sockets[0].getsockname()[1], transport=transport, smpp=smpp,
                    password=SMPP_PASSWORD if transport == "smpp" else PASSWORD, api_url=api_url,
                    spool=Path(tmp) / "spool.db", concurrency=concurrency,
                )
            )  # fmt: skip
            cfg = config_mod.load(path, env={})
            relay = Daemon(path, cfg)
            try:  # stopped even if start fails halfway: its SMPP sessions may be running
                await relay.start()
                await relay.balance.stop()  # one balance.php at start: not part of what is timed
                if smsc is not None:
                    await until(lambda: relay.smpp.bound == cfg.provider.smpp.sessions, "SMPP bind")
                yield Bench(relay, cfg, transport, api_fake, smsc)
            finally:
                await relay.stop()
    finally:
        if smsc is not None:
            await smsc.stop()
        await runner.cleanup()
        smtp_server.close()


async def until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        await asyncio.sleep(0.01)


def render(cfg: Config, i: int) -> list[ProviderMail]:
    rendered = pipeline.render(
        b"Subject: load\r\n\r\nmessage %d\r\n" % i, mail_from="bench@example.com",
        rcpt_tos=[f"+7999{i:07d}@sms.example.com"], config=cfg, new_id=new_id,
        now=datetime.now(UTC), hostname="bench", with_secret=False,
    )  # fmt: skip
    return list(rendered.provider_mails)


async def burst(b: Bench, messages: int) -> dict[str, Any]:
    """--messages requests spooled at once: msgs/s until none waits, then (SMPP) until every one
    is delivered."""
    relay = b.relay
    mails = [m for i in range(messages) for m in render(b.cfg, i)]
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(mails), 50):
        await relay.spool.enqueue(mails[i : i + 50], mail_from="bench@example.com", inbound_id="<b@x>")
    relay.deliverer.wake()
    deadline = time.monotonic() + DEADLINE
    while True:
        counts = await relay.spool.counts()
        if not any(counts.get(s, 0) for s in WAITING):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"still waiting after {DEADLINE:.0f} s: {counts}")
        await asyncio.sleep(0.01)
    result: dict[str, Any] = {
        "msgs_per_s": messages / (time.perf_counter() - start),
        "cpu_ms_per_msg": (time.process_time() - cpu) * 1000 / messages,  # this process: relay and fakes
    }
    await settled(b, messages)
    rows = await rows_of(b)
    if b.smsc is not None:
        result.update(delivered_times(rows, b.smsc))
        result["most_outstanding"] = max(s.max_outstanding for s in b.smsc.sessions)
        result["over_window"] = sum(s.over_window for s in b.smsc.sessions)
    if b.transport == "http":
        result["most_inflight"] = b.api.most_inflight
        result.update(polling_bound(rows))
    return result


async def paced(b: Bench, messages: int, rate: float) -> dict[str, Any]:
    """Requests one by one through the accept service (the listener's hand-off to delivery), at
    `rate` a second: the time to delivered without a queue in front."""
    start = time.monotonic()
    for i in range(messages):
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        rendered = pipeline.render(
            b"Subject: paced\r\n\r\npaced %d\r\n" % i, mail_from="bench@example.com",
            rcpt_tos=[f"+7998{i:07d}@sms.example.com"], config=b.cfg, new_id=new_id,
            now=datetime.now(UTC), hostname="bench", with_secret=False,
        )  # fmt: skip
        arrival = Arrival("bench@example.com", (), b"", "bench", time.time())
        await b.relay.accept.accept(rendered, arrival)
    await settled(b, messages)
    assert b.smsc is not None
    return delivered_times(await rows_of(b), b.smsc)


async def settled(b: Bench, messages: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while True:
        counts = await b.relay.spool.counts()
        if counts.get(DONE[b.transport], 0) == messages:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"not {DONE[b.transport].value} in time: {counts}")
        await asyncio.sleep(0.02)


async def rows_of(b: Bench) -> Rows:
    """(id, state, created, updated, provider message id) of every row, read from the SQLite file
    (a reader beside the relay's writer, WAL): `updated` of a delivered row is the clock the
    receipts' write took, just before its commit."""

    def read() -> Rows:
        with contextlib.closing(sqlite3.connect(f"file:{b.cfg.spool.path}?mode=ro", uri=True)) as conn:
            cur = conn.execute(
                "SELECT m.id, m.state, m.created, m.updated, p.message_id FROM messages m"
                " LEFT JOIN smpp_parts p ON p.relay_id = m.id"
            )
            return [(r[0], r[1], float(r[2]), float(r[3]), r[4]) for r in cur.fetchall()]

    return await asyncio.to_thread(read)


def delivered_times(rows: Rows, smsc: TimedSmsc) -> dict[str, Any]:
    created, receipt = [], []
    for _id, state, made, updated, message_id in rows:
        assert state == State.DELIVERED.value, state
        assert message_id is not None and message_id in smsc.receipt_at, message_id
        created.append(updated - made)
        receipt.append(updated - smsc.receipt_at[message_id])
    return {
        "created_to_delivered_p50": statistics.median(created), "created_to_delivered_p95": p95(created),
        "receipt_to_delivered_p50": statistics.median(receipt), "receipt_to_delivered_p95": p95(receipt),
        "receipt_to_delivered_max": max(receipt),
    }  # fmt: skip


def polling_bound(rows: Rows) -> dict[str, Any]:
    """The earliest each HTTP request of the burst can be `delivered` by status.php polling, if
    the provider's first answer about it is final: asked FIRST_POLL after it was confirmed at the
    soonest, and in at most one list request of MAX_PAIRS pairs (oldest due first) every
    LIST_INTERVAL, so the k-th due no sooner than LIST_INTERVAL * (k // MAX_PAIRS) after the first.
    The tracker looks every LIST_INTERVAL / 4: each can come up to 15 s later, and a look that
    finds only part of a burst due leaves the rest for the next minute."""
    due = sorted((updated + FIRST_POLL, made) for _id, _state, made, updated, _m in rows)
    first = due[0][0]
    times = [max(when, first + LIST_INTERVAL * (k // MAX_PAIRS)) - made for k, (when, made) in enumerate(due)]
    return {
        "poll_bound_p50": statistics.median(times),
        "poll_bound_p95": p95(times),
        "poll_bound_max": max(times),
    }


def p95(xs: list[float]) -> float:
    ordered = sorted(xs)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


async def one(
    transport: str, args: argparse.Namespace, concurrency: int, window: int = 10, messages: int = 0
) -> dict[str, Any]:
    async with relay_for(transport, concurrency, args.latency, window, args.receipt_delay) as b:
        return await burst(b, messages or args.messages)


def med(runs: list[dict[str, Any]], key: str, digits: int = 3) -> float:
    return round(float(statistics.median(r[key] for r in runs)), digits)


def pairs(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[float]:
    return [round(x["msgs_per_s"] / y["msgs_per_s"], 2) for x, y in zip(a, b, strict=True)]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--concurrency", type=int, nargs="*", default=[2, 12])
    parser.add_argument("--receipt-delay", type=float, default=0.0, help="fake SMSC: receipt after resp")
    parser.add_argument("--paced", type=int, default=100, help="SMPP requests one by one (0: none)")
    parser.add_argument("--rate", type=float, default=50.0, help="of the paced requests, a second")
    parser.add_argument("--window1-messages", type=int, default=100, help="SMPP window 1 runs (0: none)")
    parser.add_argument("--window", type=int, default=10, help="provider.smpp.window of the SMPP runs")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the relay's per-message log lines are not the point
    results: dict[int, dict[str, Any]] = {}
    paced_runs: list[dict[str, Any]] = []
    for concurrency in args.concurrency:
        top = concurrency == max(args.concurrency)
        smtp, http, smpp, smpp1 = [], [], [], []
        for _ in range(args.runs):
            smtp.append(await one("smtp", args, concurrency))
            http.append(await one("http", args, concurrency))
            smpp.append(await one("smpp", args, concurrency, window=args.window))
            if top and args.window1_messages:
                smpp1.append(await one("smpp", args, concurrency, window=1, messages=args.window1_messages))
            if top and args.paced:
                async with relay_for("smpp", concurrency, args.latency, args.window, args.receipt_delay) as b:
                    paced_runs.append(await paced(b, args.paced, args.rate))
        r: dict[str, Any] = {
            "smtp_msgs_per_s": med(smtp, "msgs_per_s", 1),
            "http_msgs_per_s": med(http, "msgs_per_s", 1),
            "smpp_msgs_per_s": med(smpp, "msgs_per_s", 1),
            "cpu_ms_per_msg": {
                k: med(v, "cpu_ms_per_msg", 2) for k, v in (("smtp", smtp), ("http", http), ("smpp", smpp))
            },
            "http_over_smtp": statistics.median(pairs(http, smtp)),
            "smpp_over_http": statistics.median(pairs(smpp, http)),
            "smpp_over_http_pairs": pairs(smpp, http),
            "most_concurrent_api_requests": max(h["most_inflight"] for h in http),
            "most_outstanding_submits": max(s["most_outstanding"] for s in smpp),
            "submits_over_window": sum(s["over_window"] for s in smpp),
            "http_delivered_poll_bound_s": {
                k: med(http, f"poll_bound_{k}", 1) for k in ("p50", "p95", "max")
            },
        }
        for k in ("created_to_delivered_p50", "created_to_delivered_p95", "receipt_to_delivered_p50"):
            r[f"smpp_{k}_s"] = med(smpp, k)
        r["smpp_receipt_to_delivered_p95_s"] = med(smpp, "receipt_to_delivered_p95")
        r["smpp_receipt_to_delivered_max_s"] = round(max(s["receipt_to_delivered_max"] for s in smpp), 3)
        if smpp1:
            r["smpp_w1_msgs_per_s"] = med(smpp1, "msgs_per_s", 1)
            r["smpp_over_window1"] = statistics.median(pairs(smpp, smpp1))
            r["smpp_over_window1_pairs"] = pairs(smpp, smpp1)
            r["smpp_w1_most_outstanding"] = max(s["most_outstanding"] for s in smpp1)
        results[concurrency] = r
        print(f"concurrency {concurrency}: {json.dumps(r)}", flush=True)
    report: dict[str, Any] = {
        "runs": args.runs, "messages": args.messages, "latency_s": args.latency,
        "receipt_delay_s": args.receipt_delay, "window1_messages": args.window1_messages,
        "window": args.window, "results": results,
    }  # fmt: skip
    if paced_runs:
        keys: tuple[str, ...] = ("created_to_delivered_p50", "created_to_delivered_p95")
        keys += ("receipt_to_delivered_p50", "receipt_to_delivered_p95")
        report["smpp_paced"] = {
            "messages": args.paced,
            "rate": args.rate,
            "concurrency": max(args.concurrency),
        }
        report["smpp_paced"].update({f"{k}_s": med(paced_runs, k) for k in keys})
        report["smpp_paced"]["receipt_to_delivered_max_s"] = round(
            max(p["receipt_to_delivered_max"] for p in paced_runs), 3
        )
        print(f"smpp paced: {json.dumps(report['smpp_paced'])}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
