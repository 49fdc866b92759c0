"""Does heavy mail hold the event loop? A trusted client's round trips while 10 heavy mails arrive.

Run: .venv/bin/python benchmarks/heavy_mail.py [--runs 3] [--kinds parts,reply,subject,plain]

The relay runs as `smsc-relay serve` in its own process, its provider a bare aiosmtpd sink. A
trusted client on one connection sends NOOP every 10 ms; each round trip is timed from when the
NOOP was due, not from when it went out, so a stalled loop counts for every NOOP it delayed
(without that, one 1-second stall would be a single sample among a hundred a second). Meanwhile
10 heavy mails of one kind arrive in parallel from another process, each on its own connection,
their DATA started together:

- parts: a multipart/mixed mail at the part limit (parsing.max_mime_parts, 1,000 parts) to an SMS
  recipient, from a trusted address;
- reply: 2 MB mails to provider.reply_address from 10 untrusted addresses (127.0.0.11...), as
  anyone on the internet may send them (the relay answers 552: replies are small);
- subject: a Subject of 50,000 RFC 2047 encoded words (about 1 MB) to an SMS recipient;
- plain: a 2 MB plain mail to an SMS recipient.

Reported per kind: p50/p99/max of the trusted client's round trips from the first heavy DATA to
the last heavy reply, and the same with no heavy mail (baseline), measured in the same relay
process just before; the heavy mails' own replies and time. Each run is one relay process going
through the baseline and every kind; the figures are the medians of the runs.

Before/after a change: `--against TREE` runs the relay of another checkout (say
`git worktree add /tmp/before HEAD`) alternating with this one, A B A B, and prints the ratio
A/B of neighbouring runs' p99 per kind.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import socket
import statistics
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import free_port, start_bare, start_relay, stop

KINDS = ("parts", "reply", "subject", "plain")
HEAVY = 10  # heavy mails in parallel
PROBE_EVERY = 0.010  # s between the trusted client's NOOPs
BASELINE_SECONDS = 2.0
SETTLE_SECONDS = 1.0  # after a kind: the relay delivers what it took
SMS_RCPT = "79991234567@sms.example.com"
REPLY_RCPT = "replies@relay.example.com"
DEADLINE = 300.0  # s: one kind's heavy mails, all together


def config(tmp: Path, port: int, upstream: int) -> Path:
    """Only 127.0.0.1 is trusted, so the reply senders (127.0.0.11...) are the internet; the probe
    may say NOOP as often as it likes (command_call_limit)."""
    cfg = tmp / "relay.yaml"
    cfg.write_text(f"""
listen:
  host: 127.0.0.1
  port: {port}
  networks: [127.0.0.1/32]
  max_connections: 1000
  max_connections_per_address: 1000
  command_call_limit: 1000000
provider:
  host: 127.0.0.1
  port: {upstream}
  login: bench
  password: bench-password
  reply_address: {REPLY_RCPT}
  phone_limits: false
spool: {{path: {tmp / "spool.db"}}}
delivery: {{concurrency: 2, min_backoff: 60, max_backoff: 600}}
routes:
  - match: {{recipient: '^(?P<phones>[0-9]{{11}})@sms\\.example\\.com$'}}
""")
    return cfg


def heavy_mail(kind: str) -> bytes:
    """The DATA of one heavy mail, dot-stuffed and with its final dot line."""
    head = "From: monitor@example.com\r\nTo: someone@example.com\r\n"
    if kind == "parts":
        b = "part-boundary-0042"
        body = "".join(f"--{b}\r\nContent-Type: text/plain\r\n\r\nline {i}\r\n" for i in range(1000))
        text = (
            f"{head}Subject: parts\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: multipart/mixed; boundary="{b}"\r\n\r\n{body}--{b}--\r\n'
        )
    elif kind == "subject":
        words = "\r\n ".join(f"=?utf-8?q?w{i}?=" for i in range(50_000))
        text = f"{head}Subject: {words}\r\n\r\nbody\r\n"
    elif kind in ("reply", "plain"):
        line = "x" * 76 + "\r\n"
        text = f"{head}Subject: {kind}\r\n\r\n" + line * (2_000_000 // len(line))
    else:
        raise ValueError(kind)
    return text.encode() + b".\r\n"


class Lines:
    """SMTP replies from a blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.file = sock.makefile("rb")

    def reply(self) -> str:
        while True:
            line = self.file.readline(4096)
            if not line:
                raise ConnectionError("connection closed")
            if line[3:4] != b"-":
                return line.decode(errors="replace").rstrip()


def _session(
    kind: str, port: int, n: int, data: bytes, gates: list[threading.Barrier], out: list[Any]
) -> None:
    source = f"127.0.0.{11 + n}" if kind == "reply" else "127.0.0.1"
    rcpt = REPLY_RCPT if kind == "reply" else SMS_RCPT
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE, source_address=(source, 0)) as s:
        lines = Lines(s)
        lines.reply()
        for cmd in (b"EHLO heavy.example\r\n", b"MAIL FROM:<heavy@example.com>\r\n",
                    f"RCPT TO:<{rcpt}>\r\n".encode(), b"DATA\r\n"):  # fmt: skip
            s.sendall(cmd)
            answer = lines.reply()
        if not answer.startswith("354"):
            raise RuntimeError(f"DATA answered {answer!r}")
        for gate in gates:  # every session at 354; then "go"
            gate.wait(DEADLINE)
        start = time.perf_counter()
        s.sendall(data)
        answer = lines.reply()
        # The code and the gist: "250 queued", "552 5.3.4 provider replies are small".
        out[n] = (answer[:3] + " queued" if "queued" in answer else answer[:40], time.perf_counter() - start)
        s.sendall(b"QUIT\r\n")


def senders(kind: str, port: int, pipe: Connection) -> None:
    """The heavy clients (a process of their own, so that they never slow the probe): connect and
    say DATA, then "ready"; on "go" all send their mail together; then their replies back."""
    data = heavy_mail(kind)
    out: list[Any] = [None] * HEAVY
    ready, go = threading.Barrier(HEAVY + 1), threading.Barrier(HEAVY + 1)
    threads = [
        threading.Thread(target=_session, args=(kind, port, n, data, [ready, go], out)) for n in range(HEAVY)
    ]
    for t in threads:
        t.start()
    ready.wait(DEADLINE)
    pipe.send("ready")
    pipe.recv()
    go.wait(DEADLINE)
    for t in threads:
        t.join(DEADLINE)
    pipe.send(out)


class Probe:
    """The trusted client: NOOP on a schedule, each round trip timed from when it was due."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.lines = Lines(self.sock)
        self.lines.reply()
        self.sock.sendall(b"EHLO probe.example\r\n")
        self.lines.reply()

    def run(self, until: Any, limit: float) -> list[float]:
        """Round trips (s) until `until()` is true or `limit` seconds pass."""
        rtts: list[float] = []
        start = time.perf_counter()
        for k in range(int(limit / PROBE_EVERY) + 1):
            due = start + k * PROBE_EVERY
            time.sleep(max(0.0, due - time.perf_counter()))
            self.sock.sendall(b"NOOP\r\n")
            if not self.lines.reply().startswith("250"):
                raise RuntimeError("NOOP refused")
            rtts.append(time.perf_counter() - due)
            if until():
                break
        return rtts

    def close(self) -> None:
        self.sock.close()


def heavy_round(kind: str, port: int, probe: Probe) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    child = ctx.Process(target=senders, args=(kind, port, theirs), daemon=True)
    child.start()
    try:
        if not ours.poll(60) or ours.recv() != "ready":
            raise RuntimeError("heavy senders not ready")
        ours.send("go")
        started = time.perf_counter()
        rtts = probe.run(lambda: ours.poll(0), DEADLINE)
        took = time.perf_counter() - started
        if not ours.poll(DEADLINE):
            raise RuntimeError("heavy senders did not finish")
        replies: list[tuple[str, float]] = ours.recv()
    finally:
        child.join(30)
        if child.is_alive():
            child.kill()
    return {"rtts": rtts, "replies": sorted({r for r, _ in replies}), "mail_s": max(s for _, s in replies),
            "window_s": took}  # fmt: skip


def one_run(kinds: list[str], tree: Path | None) -> dict[str, Any]:
    """One relay process: the baseline, then each kind's 10 heavy mails."""
    with tempfile.TemporaryDirectory() as tmp:
        port, upstream = free_port(), free_port()
        sink = start_bare(upstream)
        cfg = config(Path(tmp), port, upstream)
        relay = start_relay(cfg, port) if tree is None else start_relay(cfg, port, tree)
        try:
            probe = Probe(port)
            result: dict[str, Any] = {"baseline": {"rtts": probe.run(lambda: False, BASELINE_SECONDS)}}
            for kind in kinds:
                result[kind] = heavy_round(kind, port, probe)
                probe.run(lambda: False, SETTLE_SECONDS)
            probe.close()
            return result
        finally:
            stop(relay)
            stop(sink)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def stats(rtts: list[float]) -> dict[str, float]:
    return {"p50": pct(rtts, 50) * 1000, "p99": pct(rtts, 99) * 1000, "max": max(rtts) * 1000}


def summary(runs: list[dict[str, Any]], kinds: list[str]) -> dict[str, Any]:
    """Per kind, the median over runs of each figure (ms)."""
    out: dict[str, Any] = {}
    for kind in ["baseline", *kinds]:
        each = [stats(r[kind]["rtts"]) for r in runs]
        row: dict[str, Any] = {
            k: round(statistics.median(e[k] for e in each), 1) for k in ("p50", "p99", "max")
        }
        row["p99_runs"] = [round(e["p99"], 1) for e in each]
        if kind != "baseline":
            row["replies"] = sorted({x for r in runs for x in r[kind]["replies"]})
            row["mail_s"] = round(statistics.median(r[kind]["mail_s"] for r in runs), 2)
        out[kind] = row
    return out


def print_table(name: str, table: dict[str, Any]) -> None:
    print(f"{name}: trusted client's NOOP round trips, ms (median of runs)")
    print(f"{'kind':>9} {'p50':>7} {'p99':>7} {'max':>7} {'mail s':>7}  heavy replies")
    for kind, row in table.items():
        said = "; ".join(row.get("replies", []))
        mail = f"{row['mail_s']:>7.2f}" if "mail_s" in row else " " * 7
        print(f"{kind:>9} {row['p50']:>7.1f} {row['p99']:>7.1f} {row['max']:>7.1f} {mail}  {said}")


def progress(label: str, run: dict[str, Any], kinds: list[str]) -> str:
    return f"{label} p99 ms " + " ".join(
        f"{k}={stats(run[k]['rtts'])['p99']:.1f}" for k in ["baseline", *kinds]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--against", type=Path, help="another checkout's relay to compare with (A/B)")
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"unknown kinds: {', '.join(sorted(unknown))}")
    a: list[dict[str, Any]] = []
    b: list[dict[str, Any]] = []
    for n in range(args.runs):
        a.append(one_run(kinds, None))
        print(progress(f"run {n + 1}/{args.runs}: A", a[-1], kinds), flush=True)
        if args.against:
            b.append(one_run(kinds, args.against))
            print(progress(f"run {n + 1}/{args.runs}: B", b[-1], kinds), flush=True)
    report: dict[str, Any] = {"runs": args.runs, "heavy": HEAVY, "probe_every_ms": PROBE_EVERY * 1000}
    report["a"] = summary(a, kinds)
    print_table("this checkout (A)", report["a"])
    if args.against:
        report["against"] = str(args.against)
        report["b"] = summary(b, kinds)
        print_table(f"{args.against} (B)", report["b"])
        print("p99 A/B of neighbouring runs:")
        for kind in ["baseline", *kinds]:
            ratios = [
                stats(x[kind]["rtts"])["p99"] / stats(y[kind]["rtts"])["p99"]
                for x, y in zip(a, b, strict=True)
            ]
            report["a"][kind]["p99_ratio"] = round(statistics.median(ratios), 2)
            print(f"{kind:>9} {statistics.median(ratios):>6.2f}  " + " ".join(f"{r:.2f}" for r in ratios))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
