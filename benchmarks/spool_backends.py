"""Durable accept throughput on the PostgreSQL spool against SQLite, and two relays against one.

Run: .venv/bin/python benchmarks/spool_backends.py [--runs 5] [--messages 2000] [--json F]
 or: ... --against /tmp/before [--sessions 10]: this checkout against another (before a change)

Load is Postfix's smtp-source (C), one new connection per message, as in benchmarks/accept.py;
delivery runs meanwhile to Postfix's smtp-sink. Both spools are durable as in production: SQLite
with synchronous=FULL, PostgreSQL (a cluster of the benchmark's own, tests/pg.py, on a Unix
socket) with fsync on and synchronous_commit on for new mail. Each figure is the median of
`--runs` runs; the kinds alternate (A B A B) and each ratio is the median of the ratios of
neighbouring runs, so drift of a shared machine's speed cancels.

- `sqlite` / `postgresql`: one relay, at 10 and 50 sessions.
- `one` / `two`: relays on one PostgreSQL database at 50 sessions; `two` splits the sessions
  and the messages between two relays (as MX records of equal priority would).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from common import ROOT, free_port, postfix_tool, relay_config, start_relay, start_smtp_sink, stop  # noqa: E402

from tests.pg import Cluster, new_database  # noqa: E402

RCPT = "79991234567@sms.example.com"


failures: list[str] = []


def source(port: int, sessions: int, messages: int) -> None:
    cmd = [*postfix_tool("smtp-source"), "-s", str(sessions), "-m", str(messages), "-l", "300",
           "-f", "bench@example.com", "-t", RCPT, f"127.0.0.1:{port}"]  # fmt: skip
    done = subprocess.run(cmd, timeout=600, capture_output=True, text=True)
    if done.returncode:
        failures.append(done.stderr.strip())


def one_run(kind: str, sessions: int, messages: int, cluster: Cluster, tree: Path = ROOT) -> float:
    """Messages per second accepted (durably) by the relay(s) of `kind`."""
    relays = 2 if kind == "two" else 1
    with tempfile.TemporaryDirectory() as tmp:
        upstream = free_port()
        procs = [start_smtp_sink(upstream)]
        dsn = new_database(cluster.dsn) if kind != "sqlite" else ""
        ports = []
        try:
            for n in range(relays):
                port = free_port()
                pg = f'{{backend: postgresql, dsn: "{dsn}", relay_name: r{n}}}'
                spool = None if kind == "sqlite" else pg
                cfg = relay_config(Path(tmp), port, upstream, spool=spool, name=f"relay{n}")
                procs.append(start_relay(cfg, port, tree))
                ports.append(port)
            share = (sessions // relays, messages // relays)
            loads = [threading.Thread(target=source, args=(p, *share)) for p in ports]
            start = time.perf_counter()
            for t in loads:
                t.start()
            for t in loads:
                t.join()
            elapsed = time.perf_counter() - start
            if failures:  # a run that did not deliver its load measures nothing
                raise SystemExit(f"smtp-source failed: {failures[0]}")
            return messages / elapsed
        finally:
            for p in reversed(procs):
                stop(p)


def compare(
    kinds: tuple[str, str], sessions: int, messages: int, runs: int, cluster: Cluster
) -> dict[str, object]:
    values: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(runs):
        for kind in kinds:
            values[kind].append(one_run(kind, sessions, messages, cluster))
    a, b = kinds
    ratios = [y / x for x, y in zip(values[a], values[b], strict=True)]
    return {
        "sessions": sessions,
        **{f"{k}_msgs_per_s": round(statistics.median(v), 1) for k, v in values.items()},
        f"{b}_over_{a}": round(statistics.median(ratios), 2),
        "runs": {k: [round(x, 1) for x in v] for k, v in values.items()},
    }


def against(
    tree: Path, kind: str, sessions: int, messages: int, runs: int, cluster: Cluster
) -> dict[str, object]:
    """Before/after a change: the relay of `tree` (before) and of this checkout (after), A B A B."""
    before, after = [], []
    for _ in range(runs):
        before.append(one_run(kind, sessions, messages, cluster, tree))
        after.append(one_run(kind, sessions, messages, cluster))
    ratios = [b / a for a, b in zip(before, after, strict=True)]
    return {
        "spool": kind, "sessions": sessions, "before": [round(x) for x in before],
        "after": [round(x) for x in after], "after_over_before": round(statistics.median(ratios), 2),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--against", type=Path, help="A/B: another checkout's relay, alternating with this one"
    )
    parser.add_argument("--sessions", type=int, action="append", help="with --against (default 10, 50)")
    args = parser.parse_args()
    cluster = Cluster(durable=True)
    cluster.start()
    try:
        if args.against:
            for kind in ("sqlite", "postgresql"):
                for sessions in args.sessions or [10, 50]:
                    print(
                        json.dumps(against(args.against, kind, sessions, args.messages, args.runs, cluster))
                    )
            return
        backends, relays = [], []
        for sessions in (10, 50):
            backends.append(compare(("sqlite", "postgresql"), sessions, args.messages, args.runs, cluster))
            print(json.dumps(backends[-1]), flush=True)
        relays.append(compare(("one", "two"), 50, args.messages, args.runs, cluster))
        print(json.dumps(relays[-1]), flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(cluster.base, ignore_errors=True)
    report = {"runs": args.runs, "messages": args.messages, "backends": backends, "relays": relays}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
