"""Durable accept throughput, CPU per accepted mail, accept->provider latency and RSS of smsc-relay.

Run: .venv/bin/python benchmarks/accept.py [--runs 5] [--messages 2000] [--sessions 1,10,50]
         [--reuse no|yes|both] [--texts distinct|same] [--json FILE]

Every figure is the median of repeated runs, and every relay figure is set against a bare
aiosmtpd server (answers 250, stores nothing) measured in the same run on the same machine,
alternating with it; the ratio is the median of the ratios of neighbouring runs. A second
baseline, the same bare server on the relay's LeanSMTP (with the relay's command call limits),
shows what the relay costs on top of an equally lean aiosmtpd session.

Load comes from Postfix's smtp-source (C), so the client is never the bottleneck, in two modes
(--reuse, default both):
- new connection: one connection per mail, as cron and monitoring systems send;
- reuse: smtp-source -d, all the mails of a session over one connection, as an MTA in front of
  the relay sends.

What the mails are (--texts):
- distinct (the default): no mail repeats an earlier one, so the relay stores and delivers every
  mail under its default phone limits, as with real alerts. smtp-source cannot vary the body
  (-l, -F and -S are the same for every mail), so it is the phone that differs: smtp-source -N
  prepends a sequence number to the recipient, 17999000@, 27999000@, ..., a phone of its own
  per mail. The phone limits still run for every mail, on a short history per phone.
- same: smtp-source's one text to one phone; under the default phone limits every mail after
  the first is stored as a `repeat` and never delivered (the accept path without delivery).
Delivery (to Postfix's smtp-sink) runs while the mails come in, as in a real relay: its CPU
until the last mail is accepted counts; the spool's states at that moment are in the JSON.

CPU per accepted mail is the server process's utime + stime (all threads, /proc/PID/stat) over
the timed blast, divided by the mails. /proc counts 10 ms ticks: 2000 mails at the relay's
~1 ms are 200 ticks, at lean bare's ~0.15 ms with reuse only 30. The relay's render process,
which only mail over 64 KiB starts, is not counted (these mails are 300 bytes). Each server
gets 20 mails of warm-up first (imports at first use, caches), not timed. RSS at start is VmHWM
as soon as the server listens.

Before/after a change: `--against TREE` times this checkout's relay (A) against the relay of
another checkout (B; say `git worktree add /tmp/before HEAD~1`), both with this venv's Python
and PYTHONPATH=TREE, alternating A B A B, and prints the A/B ratios of neighbouring runs of
msgs/s and of CPU per mail in each mode and at each session count, and both RSS at start;
nothing else is measured then. The relay picks its event loop itself (this checkout: uvloop when
installed, unless SMSC_RELAY_LOOP=asyncio is in the environment; a relay that predates that runs
on asyncio's); the bare baselines run on asyncio's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import aiosmtplib

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    ROOT,
    cpu_seconds,
    free_port,
    peak_rss_kib,
    postfix_tool,
    relay_config,
    start_bare,
    start_relay,
    start_smtp_sink,
    stop,
)

RCPT = "79991234567@sms.example.com"  # --texts same: every mail to this phone
SEQ_RCPT = "7999000@sms.example.com"  # --texts distinct: smtp-source -N makes it 17999000@, 27999000@...
WARM_RCPT = "7998000@sms.example.com"  # the warm-up's phones (-N), none of them the blast's
WARM_UP = 20
MODES = {"no": (False,), "yes": (True,), "both": (False, True)}
TEXTS = {
    "distinct": "distinct: smtp-source -N, each mail to a phone of its own (the body cannot vary), "
    "so none is a repeat and every mail is delivered",
    "same": "same: one text to one phone, so every mail is a repeat under the phone limits "
    "(nothing delivered)",
}
KINDS = ("bare", "relay", "lean")


@dataclass(frozen=True)
class Load:
    sessions: int
    messages: int
    reuse: bool
    texts: str
    phone_limits: bool | None = None  # provider.phone_limits of this checkout's relay; None: its default


@dataclass
class Run:
    msgs_per_s: float
    cpu_ms_per_mail: float
    rss_start_kib: int
    spool: dict[str, int] | None = None  # the relay's messages by state when the last mail was accepted


def mode_name(reuse: bool) -> str:
    return "reuse" if reuse else "new_connection"


def smtp_source(port: int, sessions: int, messages: int, reuse: bool, texts: str, seq_rcpt: str) -> None:
    rcpt = ["-N", "-t", seq_rcpt] if texts == "distinct" else ["-t", RCPT]
    cmd = [*postfix_tool("smtp-source"), *(["-d"] if reuse else []), "-s", str(sessions),
           "-m", str(messages), "-l", "300", "-f", "bench@example.com", *rcpt,
           f"127.0.0.1:{port}"]  # fmt: skip
    done = subprocess.run(cmd, timeout=600, capture_output=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd[2:])}: exit {done.returncode}: {done.stderr.decode()[-500:]}")


def spool_states(db: Path) -> dict[str, int] | None:
    """The relay's messages by state, read beside the running relay (None if it cannot be read)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return dict(conn.execute("SELECT state, count(*) FROM messages GROUP BY state").fetchall())
    except sqlite3.Error:
        return None


def one_run(kind: str, load: Load, tree: Path | None = None) -> Run:
    """One server started afresh, warmed up, then timed under smtp-source."""
    with tempfile.TemporaryDirectory() as tmp:
        port, upstream = free_port(), free_port()
        procs = []
        if kind in ("bare", "lean"):
            procs.append(start_bare(port, lean=kind == "lean"))
        else:
            procs.append(start_smtp_sink(upstream))  # the provider: delivery runs meanwhile
            limits = load.phone_limits if tree is None else None  # B may predate the key
            cfg = relay_config(Path(tmp), port, upstream, phone_limits=limits)
            procs.append(start_relay(cfg, port, tree or ROOT))
        server = procs[-1].pid
        try:
            rss = peak_rss_kib(server)
            smtp_source(port, 2, WARM_UP, load.reuse, load.texts, WARM_RCPT)
            cpu, start = cpu_seconds(server), time.perf_counter()
            smtp_source(port, load.sessions, load.messages, load.reuse, load.texts, SEQ_RCPT)
            elapsed, cpu = time.perf_counter() - start, cpu_seconds(server) - cpu
            spool = spool_states(Path(tmp) / "spool.db") if kind == "relay" else None
            return Run(load.messages / elapsed, cpu * 1000 / load.messages, rss, spool)
        finally:
            for p in reversed(procs):
                stop(p)


def med(values: Sequence[float]) -> float:
    return statistics.median(values)


def ratios(a: list[Run], b: list[Run], field: str) -> list[float]:
    return [getattr(x, field) / getattr(y, field) for x, y in zip(a, b, strict=True)]


def spread(values: list[float]) -> str:
    return " ".join(f"{x:.2f}" for x in values)


def raw(runs: dict[str, list[Run]]) -> dict[str, list[dict[str, object]]]:
    return {
        k: [{**asdict(r), "msgs_per_s": round(r.msgs_per_s), "cpu_ms_per_mail": round(r.cpu_ms_per_mail, 3)}
            for r in v]
        for k, v in runs.items()
    }  # fmt: skip


def compare(sessions: list[int], modes: tuple[bool, ...], base: Load, runs: int) -> dict[str, object]:
    """Bare, relay and lean-bare runs alternate, so that all see the same machine: on a shared VM
    the CPU speed drifts by tens of percent over minutes, and each ratio compares neighbours.
    The modes alternate too: one round is every kind in every mode."""
    report: dict[str, dict[str, object]] = {mode_name(m): {} for m in modes}
    print(
        f"msgs/s and CPU ms per accepted mail, median of {runs} runs of {base.messages} messages; "
        f"ratios relay/bare (r/bare) and relay/lean bare (r/lean):"
    )
    print(
        f"{'mode':>14} {'sessions':>8} {'bare/s':>7} {'relay/s':>7} {'lean/s':>7} {'r/bare':>6} "
        f"{'r/lean':>6}  {'ms bare':>7} {'relay':>6} {'lean':>6} {'r/bare':>6}  r/bare of neighbours"
    )
    got_all: dict[bool, dict[str, list[Run]]] = {m: {k: [] for k in KINDS} for m in modes}
    for n in sessions:
        got: dict[bool, dict[str, list[Run]]] = {m: {k: [] for k in KINDS} for m in modes}
        for _ in range(runs):
            for m in modes:
                load = Load(n, base.messages, m, base.texts, base.phone_limits)
                for k in KINDS:
                    got[m][k].append(one_run(k, load))
        for m in modes:
            r = got[m]
            for k in KINDS:
                got_all[m][k] += r[k]
            tput = ratios(r["relay"], r["bare"], "msgs_per_s")
            lean = ratios(r["relay"], r["lean"], "msgs_per_s")
            cpu = ratios(r["relay"], r["bare"], "cpu_ms_per_mail")
            speed = {k: med([x.msgs_per_s for x in r[k]]) for k in KINDS}
            ms = {k: med([x.cpu_ms_per_mail for x in r[k]]) for k in KINDS}
            report[mode_name(m)][f"sessions_{n}"] = {
                "msgs_per_s": {k: round(v) for k, v in speed.items()},
                "cpu_ms_per_mail": {k: round(v, 3) for k, v in ms.items()},
                "ratio": round(med(tput), 2),
                "ratios": [round(x, 2) for x in tput],
                "ratio_to_lean_bare": round(med(lean), 2),
                "ratios_to_lean_bare": [round(x, 2) for x in lean],
                "cpu_ratio": round(med(cpu), 2),
                "cpu_ratios": [round(x, 2) for x in cpu],
                "runs": raw(r),
            }
            print(
                f"{mode_name(m):>14} {n:>8} {speed['bare']:>7.0f} {speed['relay']:>7.0f} "
                f"{speed['lean']:>7.0f} {med(tput):>6.2f} {med(lean):>6.2f}  "
                f"{ms['bare']:>7.3f} {ms['relay']:>6.3f} {ms['lean']:>6.3f} {med(cpu):>6.2f}  {spread(tput)}",
                flush=True,
            )
    goal(report)
    starts = {k: [r.rss_start_kib for m in modes for r in got_all[m][k]] for k in KINDS}
    return {**report, "rss_start_kib": {**{k: round(med(v)) for k, v in starts.items()},
                                        **{f"{k}_all": v for k, v in starts.items()}}}  # fmt: skip


def goal(report: dict[str, dict[str, object]]) -> None:
    """Issue 23's goal at 10 sessions: relay/bare >= 0.5 with reuse, >= 0.6 with a new connection."""
    parts = []
    for mode, want in (("reuse", 0.5), ("new_connection", 0.6)):
        row = report.get(mode, {}).get("sessions_10")
        if isinstance(row, dict):
            got = row["ratio"]
            parts.append(f"{mode} {got:.2f} (goal >= {want}: {'met' if got >= want else 'not met'})")
    if parts:
        print("relay/bare at 10 sessions: " + ", ".join(parts))


async def latency(rate: float, count: int) -> list[float]:
    """Accept (250 received) -> arrival at the provider, at a moderate steady rate, each mail to a
    phone of its own (one phone would reach the phone limits' flood limit after 49)."""
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
                        "bench@example.com", [f"{n + 1}{SEQ_RCPT}"], f"Subject: lat\r\n\r\nmessage {n}\r\n"
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
    """(KiB right after start, KiB peak) with `queued` mails (to distinct phones, so all of them
    queued, none a repeat) accepted while the provider is down."""
    with tempfile.TemporaryDirectory() as tmp:
        port, dead = free_port(), free_port()
        relay = start_relay(relay_config(Path(tmp), port, dead), port)
        try:
            idle = peak_rss_kib(relay.pid)
            smtp_source(port, 10, queued, False, "distinct", SEQ_RCPT)
            return idle, peak_rss_kib(relay.pid)
        finally:
            stop(relay)


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def against(
    tree: Path, sessions: list[int], modes: tuple[bool, ...], base: Load, runs: int
) -> dict[str, object]:
    """This checkout's relay (A) and `tree`'s (B), alternating; the ratios A/B of neighbours."""
    report: dict[str, object] = {"against": str(tree)}
    print(
        f"this checkout (A) vs {tree} (B), median of {runs} alternating runs of {base.messages} messages; "
        f"msgs/s, CPU ms per accepted mail, and the A/B ratios:"
    )
    print(
        f"{'mode':>14} {'sessions':>8} {'A/s':>7} {'B/s':>7} {'A/B':>5}  {'ms A':>6} {'ms B':>6} "
        f"{'A/B':>5}  A/B of neighbours: msgs/s | CPU"
    )
    starts: dict[str, list[int]] = {"a": [], "b": []}
    for m in modes:
        report[mode_name(m)] = {}
    for n in sessions:
        got: dict[bool, tuple[list[Run], list[Run]]] = {m: ([], []) for m in modes}
        for _ in range(runs):
            for m in modes:  # A B, A B, ...: each pair neighbours, the modes in turn
                load = Load(n, base.messages, m, base.texts, base.phone_limits)
                got[m][0].append(one_run("relay", load))
                got[m][1].append(one_run("relay", load, tree))
        for m, (a, b) in got.items():
            starts["a"] += [r.rss_start_kib for r in a]
            starts["b"] += [r.rss_start_kib for r in b]
            tput, cpu = ratios(a, b, "msgs_per_s"), ratios(a, b, "cpu_ms_per_mail")
            speed_a, speed_b = med([r.msgs_per_s for r in a]), med([r.msgs_per_s for r in b])
            ms_a, ms_b = med([r.cpu_ms_per_mail for r in a]), med([r.cpu_ms_per_mail for r in b])
            rows = report[mode_name(m)]
            assert isinstance(rows, dict)
            rows[f"sessions_{n}"] = {
                "a": round(speed_a), "b": round(speed_b),
                "ratio": round(med(tput), 2), "ratios": [round(x, 2) for x in tput],
                "cpu_ms_per_mail_a": round(ms_a, 3), "cpu_ms_per_mail_b": round(ms_b, 3),
                "cpu_ratio": round(med(cpu), 2), "cpu_ratios": [round(x, 2) for x in cpu],
                "runs": raw({"a": a, "b": b}),
            }  # fmt: skip
            print(
                f"{mode_name(m):>14} {n:>8} {speed_a:>7.0f} {speed_b:>7.0f} {med(tput):>5.2f}  "
                f"{ms_a:>6.3f} {ms_b:>6.3f} {med(cpu):>5.2f}  {spread(tput)} | {spread(cpu)}",
                flush=True,
            )
    rss_a, rss_b = med(starts["a"]), med(starts["b"])
    report["rss_start_kib"] = {
        "a": round(rss_a),
        "b": round(rss_b),
        "a_all": starts["a"],
        "b_all": starts["b"],
    }
    print(
        f"RSS at start: A {rss_a / 1024:.1f} MiB, B {rss_b / 1024:.1f} MiB "
        f"(median of {len(starts['a'])} starts each)"
    )
    return report


def session_counts(values: list[str] | None) -> list[int]:
    """--sessions 1,10,50 or --sessions 1 --sessions 10 (default 1, 10, 50)."""
    return [int(x) for v in values or ["1,10,50"] for x in v.split(",") if x.strip()]


def relay_loop() -> str:
    wanted = os.environ.get("SMSC_RELAY_LOOP", "").strip().lower() or "auto"
    if wanted == "asyncio":
        return "asyncio (SMSC_RELAY_LOOP=asyncio)"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio (no uvloop installed)"
    return f"uvloop (installed; SMSC_RELAY_LOOP={wanted})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--messages", type=int, default=2000, help="mails per timed run")
    parser.add_argument("--sessions", action="append", metavar="N[,N...]", help="parallel sessions (1,10,50)")
    parser.add_argument(
        "--reuse",
        choices=MODES,
        default="both",
        help="no: a new connection per mail; yes: smtp-source -d; both (default)",
    )
    parser.add_argument(
        "--texts",
        choices=TEXTS,
        default="distinct",
        help="distinct (default): no mail a repeat, all delivered; same: all repeats",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--against", type=Path, help="another checkout's relay to compare with (A/B)")
    parser.add_argument(
        "--phone-limits",
        choices=["on", "off"],
        help="this checkout's provider.phone_limits (default: its default; B: always its default)",
    )
    args = parser.parse_args()
    limits = None if args.phone_limits is None else args.phone_limits == "on"
    base = Load(0, args.messages, False, args.texts, limits)
    sessions, modes = session_counts(args.sessions), MODES[args.reuse]
    phone_limits = args.phone_limits or "default"
    print(f"texts={TEXTS[args.texts]}; phone_limits {phone_limits}; relay loop (A): {relay_loop()}")
    report: dict[str, object] = {
        "runs": args.runs, "messages": args.messages, "sessions": sessions,
        "modes": [mode_name(m) for m in modes], "texts": args.texts, "phone_limits": phone_limits,
        "relay_loop": relay_loop(), "warm_up": WARM_UP,
    }  # fmt: skip
    if args.against:
        report.update(against(args.against, sessions, modes, base, args.runs))
    else:
        report.update(compare(sessions, modes, base, args.runs))
        lat = asyncio.run(latency(rate=50, count=500))
        p50, p99 = pct(lat, 50) * 1000, pct(lat, 99) * 1000
        report["latency_ms"] = {"p50": round(p50, 1), "p99": round(p99, 1), "n": len(lat)}
        print(f"accept->provider latency at 50 msgs/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms (n={len(lat)})")
        idle, peak = peak_rss(10_000)
        report["rss_kib"] = {"idle": idle, "peak_10000_queued": peak}
        rss = report["rss_start_kib"]
        assert isinstance(rss, dict)
        starts = len(rss["relay_all"])
        print(
            f"RSS at start: relay {rss['relay'] / 1024:.1f} MiB, bare {rss['bare'] / 1024:.1f}, "
            f"lean bare {rss['lean'] / 1024:.1f} (median of {starts} starts each); "
            f"relay peak {peak / 1024:.1f} MiB with 10,000 queued (provider down)"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
