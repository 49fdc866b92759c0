"""Delivery throughput: the HTTP API transport against the SMTP one, to fakes of the provider.

Run: .venv/bin/python benchmarks/transports.py [--runs 5] [--messages 400] [--latency 0.02]

Both fakes answer after the same simulated provider latency (--latency seconds per request:
per DATA for SMTP, per send.php for HTTP) and are the tests' own: tests/fakes.py's aiosmtpd
provider and tests/fake_api.py's aiohttp API, which answers ERROR 9 to a 15th concurrent
request as the provider does. For each delivery.concurrency, runs alternate SMTP, HTTP, SMTP,
HTTP...; each run spools --messages requests at once and times until none waits. Reported:
the median messages/s of each transport and the median ratio HTTP/SMTP of neighbouring runs,
and the most requests the fake API saw at once. Everything runs in this one process on
loopback (fakes and relay share the CPU alike for both transports).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from relay import pipeline  # noqa: E402
from relay.config import load as config_mod  # noqa: E402
from relay.daemon.main import Daemon  # noqa: E402
from relay.ids import new_id  # noqa: E402
from relay.model import ProviderMail, State  # noqa: E402
from tests.fake_api import PASSWORD, FakeApi  # noqa: E402
from tests.fakes import FakeProvider  # noqa: E402

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
spool: {{path: {spool}}}
delivery: {{concurrency: {concurrency}, timeout: 30}}
routes:
  - name: number
    match: {{recipient: '^(?P<phones>\\+?[0-9]{{10,15}})@sms\\.example\\.com$'}}
"""
WAITING = (State.QUEUED, State.DEFERRED, State.SENDING)


async def one_run(transport: str, concurrency: int, messages: int, latency: float) -> tuple[float, int]:
    smtp_fake = FakeProvider(delay=latency)
    smtp_server = await asyncio.get_running_loop().create_server(smtp_fake.factory, "127.0.0.1", 0)
    api_fake = FakeApi(service_delay=latency, balance=Decimal(10**9))
    runner, api_url = await api_fake.start()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "relay.yaml"
        path.write_text(
            CONFIG.format(
                smtp_port=smtp_server.sockets[0].getsockname()[1], password=PASSWORD, transport=transport,
                api_url=api_url, spool=Path(tmp) / "spool.db", concurrency=concurrency,
            )
        )  # fmt: skip
        cfg = config_mod.load(path, env={})
        relay = Daemon(path, cfg)
        await relay.start()
        await relay.balance.stop()  # one balance.php at start: not part of what is timed
        mails: list[ProviderMail] = []
        for i in range(messages):
            rendered = pipeline.render(
                b"Subject: load\r\n\r\nmessage %d\r\n" % i, mail_from="bench@example.com",
                rcpt_tos=[f"+7999{i:07d}@sms.example.com"], config=cfg, new_id=new_id,
                now=datetime.now(UTC), hostname="bench", with_secret=False,
            )  # fmt: skip
            mails.extend(rendered.provider_mails)
        start = time.perf_counter()
        for i in range(0, len(mails), 50):
            await relay.spool.enqueue(mails[i : i + 50], mail_from="bench@example.com", inbound_id="<b@x>")
        relay.deliverer.wake()
        deadline = time.monotonic() + 600
        while True:
            counts = await relay.spool.counts()
            if not any(counts.get(s, 0) for s in WAITING):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"not delivered in time: {counts}")
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - start
        done = State.SENT if transport == "smtp" else State.CONFIRMED
        counts = await relay.spool.counts()
        assert counts.get(done, 0) == messages, counts
        await relay.stop()
    await runner.cleanup()
    smtp_server.close()
    return messages / elapsed, api_fake.most_inflight


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--concurrency", type=int, nargs="*", default=[2, 12])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the relay's per-message log lines are not the point
    results = {}
    for concurrency in args.concurrency:
        smtp, http, ratios, inflight = [], [], [], []
        for _ in range(args.runs):
            s, _ = await one_run("smtp", concurrency, args.messages, args.latency)
            h, most = await one_run("http", concurrency, args.messages, args.latency)
            smtp.append(s)
            http.append(h)
            ratios.append(h / s)
            inflight.append(most)
        results[concurrency] = {
            "smtp_msgs_per_s": round(statistics.median(smtp), 1),
            "http_msgs_per_s": round(statistics.median(http), 1),
            "http_over_smtp": round(statistics.median(ratios), 2),
            "most_concurrent_api_requests": max(inflight),
        }
        print(f"concurrency {concurrency}: {json.dumps(results[concurrency])}", flush=True)
    report = {"runs": args.runs, "messages": args.messages, "latency_s": args.latency, "results": results}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
