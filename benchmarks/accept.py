"""Durable accept throughput, accept->provider latency and peak RSS of smsc-relay.

Run: .venv/bin/python benchmarks/accept.py [--runs 5] [--messages 2000]

Every figure is the median of repeated runs, and every relay figure is set against a bare
aiosmtpd server (answers 250, stores nothing) measured in the same run on the same machine,
alternating with it; the ratio is the median of the ratios of neighbouring runs. A second
baseline, the same bare server on the relay's LeanSMTP, shows what the relay costs on top of an
equally lean aiosmtpd session.
Load comes from Postfix's smtp-source (C), one new connection per message, as cron and
monitoring systems send, so the client is never the bottleneck.

Before/after a change: `--against TREE` times this checkout's relay against the relay of another
checkout (say `git worktree add /tmp/before HEAD~1`), alternating A B A B, and prints the ratio
of neighbouring runs at each session count; nothing else is measured then.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiosmtplib

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    free_port,
    peak_rss_kib,
    postfix_tool,
    relay_config,
    start_bare,
    start_relay,
    start_smtp_sink,
    stop,
)

RCPT = "79991234567@sms.example.com"


def blast(port: int, sessions: int, messages: int) -> float:
    """Messages per second that smtp-source got accepted."""
    cmd = [*postfix_tool("smtp-source"), "-s", str(sessions), "-m", str(messages), "-l", "300",
           "-f", "bench@example.com", "-t", RCPT, f"127.0.0.1:{port}"]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, check=True, timeout=600, capture_output=True)
    return messages / (time.perf_counter() - start)


PHONE_LIMITS: bool | None = None  # --phone-limits: on, off, or the relay's default (key left out)


def one_run(kind: str, sessions: int, messages: int, tree: Path | None = None) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        port, upstream = free_port(), free_port()
        procs = []
        if kind in ("bare", "lean"):
            procs.append(start_bare(port, lean=kind == "lean"))
        else:
            procs.append(start_smtp_sink(upstream))  # the provider: delivery runs meanwhile
            if tree is None:
                procs.append(
                    start_relay(relay_config(Path(tmp), port, upstream, phone_limits=PHONE_LIMITS), port)
                )
            else:
                procs.append(start_relay(relay_config(Path(tmp), port, upstream), port, tree))
        try:
            return blast(port, sessions, messages)
        finally:
            for p in reversed(procs):
                stop(p)


def throughput(sessions: int, messages: int, runs: int) -> dict[str, list[float]]:
    """Bare, relay and lean-bare runs alternate, so that all see the same machine: on a shared VM
    the CPU speed drifts by tens of percent over minutes, and each ratio compares neighbours."""
    results: dict[str, list[float]] = {"bare": [], "relay": [], "lean": []}
    for _ in range(runs):
        for kind, values in results.items():
            values.append(one_run(kind, sessions, messages))
    return results


async def latency(rate: float, count: int) -> list[float]:
    """Accept (250 received) -> arrival at the provider, at a moderate steady rate."""
    with tempfile.TemporaryDirectory() as tmp:
        port, upstream = free_port(), free_port()
        record = Path(tmp) / "arrivals.txt"
        sink = start_bare(upstream, record)
        relay = start_relay(relay_config(Path(tmp), port, upstream), port)
        accepted: dict[str, float] = {}
        try:
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port) as smtp:
                start = time.perf_counter()
                for n in range(count):
                    await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
                    _, reply = await smtp.sendmail(
                        "bench@example.com", [RCPT], f"Subject: lat\r\n\r\nmessage {n}\r\n"
                    )
                    accepted[reply.rsplit(" ", 1)[1]] = time.time()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                lines = record.read_text().split("\n") if record.exists() else []
                arrivals = dict(line.split() for line in lines if line)
                if len(arrivals) >= count:
                    break
                await asyncio.sleep(0.1)
        finally:
            stop(relay)
            stop(sink)
        return sorted(float(arrivals[i]) - t for i, t in accepted.items() if i in arrivals)


def peak_rss(queued: int) -> tuple[int, int]:
    """(KiB right after start, KiB peak) with `queued` messages accepted while the provider is down."""
    with tempfile.TemporaryDirectory() as tmp:
        port, dead = free_port(), free_port()
        relay = start_relay(relay_config(Path(tmp), port, dead), port)
        try:
            idle = peak_rss_kib(relay.pid)
            subprocess.run([*postfix_tool("smtp-source"), "-s", "10", "-m", str(queued), "-l", "300",
                            "-f", "bench@example.com", "-t", RCPT, f"127.0.0.1:{port}"],
                           check=True, timeout=600, capture_output=True)  # fmt: skip
            return idle, peak_rss_kib(relay.pid)
        finally:
            stop(relay)


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def against(tree: Path, sessions: list[int], messages: int, runs: int) -> dict[str, object]:
    """This checkout's relay (A) and `tree`'s (B), alternating; the ratio A/B of neighbours."""
    report: dict[str, object] = {"against": str(tree), "runs": runs, "messages": messages}
    print(f"this checkout (A) vs {tree} (B), msgs/s, median of {runs} alternating runs of {messages}:")
    print(f"{'sessions':>8} {'A':>8} {'B':>8} {'A/B':>6}  ratios of neighbours")
    for n in sessions:
        a, b = [], []
        for _ in range(runs):
            a.append(one_run("relay", n, messages))
            b.append(one_run("relay", n, messages, tree))
        ratios = [x / y for x, y in zip(a, b, strict=True)]
        med = statistics.median
        report[f"sessions_{n}"] = {"a": round(med(a)), "b": round(med(b)), "ratio": round(med(ratios), 2),
                                   "ratios": [round(x, 2) for x in ratios]}  # fmt: skip
        spread = " ".join(f"{x:.2f}" for x in ratios)
        print(f"{n:>8} {med(a):>8.0f} {med(b):>8.0f} {med(ratios):>6.2f}  {spread}", flush=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--against", type=Path, help="another checkout's relay to compare with (A/B)")
    parser.add_argument("--sessions", type=int, action="append", help="with --against (default 1, 10)")
    parser.add_argument(
        "--phone-limits",
        choices=["on", "off"],
        help="this checkout's provider.phone_limits (default: its default)",
    )
    args = parser.parse_args()
    global PHONE_LIMITS
    PHONE_LIMITS = None if args.phone_limits is None else args.phone_limits == "on"
    if args.against:
        result = against(args.against, args.sessions or [1, 10], args.messages, args.runs)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return
    report: dict[str, object] = {"runs": args.runs, "messages": args.messages}
    print(f"accept throughput, msgs/s, median of {args.runs} runs of {args.messages} messages (smtp-source):")
    head = f"{'sessions':>8} {'bare aiosmtpd':>14} {'smsc-relay':>11} {'ratio':>6}  ratios of neighbours"
    print(f"{head}   | {'lean bare':>9} {'relay/lean':>10}")
    for sessions in (1, 10, 50):
        runs = throughput(sessions, args.messages, args.runs)
        ratios = [r / b for r, b in zip(runs["relay"], runs["bare"], strict=True)]
        lean_ratios = [r / b for r, b in zip(runs["relay"], runs["lean"], strict=True)]
        bare, relay, lean, ratio, lean_ratio = (
            statistics.median(x) for x in (runs["bare"], runs["relay"], runs["lean"], ratios, lean_ratios)
        )
        report[f"sessions_{sessions}"] = {
            "bare": round(bare),
            "relay": round(relay),
            "ratio": round(ratio, 2),
            "ratios": [round(x, 2) for x in ratios],
            "lean_bare": round(lean),
            "ratio_to_lean_bare": round(lean_ratio, 2),
            "ratios_to_lean_bare": [round(x, 2) for x in lean_ratios],
        }
        spread = " ".join(f"{x:.2f}" for x in ratios)
        row = f"{sessions:>8} {bare:>14.0f} {relay:>11.0f} {ratio:>6.2f}  {spread}"
        print(f"{row}   | {lean:>9.0f} {lean_ratio:>10.2f}", flush=True)
    lat = asyncio.run(latency(rate=50, count=500))
    report["latency_ms"] = {
        "p50": round(pct(lat, 50) * 1000, 1),
        "p99": round(pct(lat, 99) * 1000, 1),
        "n": len(lat),
    }
    p50, p99 = pct(lat, 50) * 1000, pct(lat, 99) * 1000
    print(f"accept->provider latency at 50 msgs/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms (n={len(lat)})")
    idle, peak = peak_rss(10_000)
    report["rss_kib"] = {"idle": idle, "peak_10000_queued": peak}
    print(f"RSS: {idle / 1024:.1f} MiB idle, peak {peak / 1024:.1f} MiB with 10,000 queued (provider down)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
