"""Render time per mail (the pure core `smsc-relay render` and the listener run), before and after.

Run: .venv/bin/python benchmarks/summaries.py [--runs 7] [--against TREE] [--json FILE]

Three mails, each rendered on the example config's `oncall` route: a plain 1 KB mail from an
application (no alert structure), a large HTML alert (Grafana's unified alerting mail, about
60 KB with its inline styles) and the whole alert corpus (tests/corpus/alerts/, per mail). Each
figure is the median over `--runs` processes of the median time of one render inside the
process. `--against TREE` measures another checkout (say `git worktree add /tmp/before REV`)
in turn with this one, A B A B, and prints the ratio this/that of neighbouring runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
PLAIN = (
    b"From: app@erp.example.com\r\nTo: oncall@sms.example.com\r\nSubject: Nightly export finished\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    + b"The nightly export of orders to the warehouse finished; 1 204 orders, 3 files, no rejects.\r\n"
    * 11
)
HTML = HERE / "tests" / "corpus" / "alerts" / "dev" / "grafana_11.1_firing_html.eml"


def measure(tree: Path) -> dict[str, float]:
    """In this process, with `tree` first on sys.path: median microseconds per render."""
    sys.path.insert(0, str(tree))
    from relay.config import load
    from relay.pipeline import render

    cfg = load.load(tree / "config" / "relay.example.yaml", env={})
    corpus = sorted((HERE / "tests" / "corpus" / "alerts").glob("*/*.eml"))
    mails = {"plain 1 KB": [PLAIN], "large HTML alert": [HTML.read_bytes()],
             "alert corpus (per mail)": [p.read_bytes() for p in corpus]}  # fmt: skip
    now = datetime(2026, 12, 1, tzinfo=UTC)
    out: dict[str, float] = {}
    for name, raws in mails.items():
        times: list[float] = []
        for _ in range(max(3, 300 // len(raws))):
            start = time.perf_counter()
            for raw in raws:
                render(raw, mail_from="m@example.com", rcpt_tos=["oncall@sms.example.com"], config=cfg,
                       new_id=lambda: "bench1", now=now, hostname="relay")  # fmt: skip
            times.append((time.perf_counter() - start) / len(raws))
        out[name] = statistics.median(times) * 1e6
    return out


def run(tree: Path) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--measure", str(tree)], check=True, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--against", type=Path, help="another checkout to compare with (A/B)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    a_runs: list[dict[str, float]] = []
    b_runs: list[dict[str, float]] = []
    for _ in range(args.runs):
        a_runs.append(run(HERE))
        if args.against:
            b_runs.append(run(args.against))
    report: dict[str, object] = {"runs": args.runs, "against": str(args.against or "")}
    for name in a_runs[0]:
        row: dict[str, float] = {"this_us": statistics.median(r[name] for r in a_runs)}
        line = f"{name:26} this {row['this_us']:8.1f} us"
        if b_runs:
            row["that_us"] = statistics.median(r[name] for r in b_runs)
            row["ratio"] = statistics.median(a[name] / b[name] for a, b in zip(a_runs, b_runs, strict=True))
            line += f"   that {row['that_us']:8.1f} us   this/that {row['ratio']:.2f}"
        report[name] = row
        print(line)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
