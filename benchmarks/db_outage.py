"""The 451 during a PostgreSQL outage, and the way back after it (issue 22, item 4).

Run: .venv/bin/python benchmarks/db_outage.py [--runs 5] [--outage 30] [--clients 2] [--json F]
 or: ... --against /tmp/before [--tree /tmp/after]: that checkout's relays (before a change) and
     this one's (or --tree's), alternating A B A B

Each run: two relay processes (`smsc-relay serve`, delivery to Postfix's smtp-sink) on one
database of a cluster of the benchmark's own (tests/pg.py: Unix socket, fsync on); `--clients`
SMTP clients per relay send mail back to back, a new connection each, throughout. The cluster
is stopped as a crash stops it (`pg_ctl -m immediate`) for `--outage` seconds, then started.

- The 451 latency: from the end of DATA (the final dot sent) to the reply, for every mail whose
  DATA ended after the stop began and was answered before the start; median and max.
- Back: from the moment `pg_ctl start -w` returns (the server takes connections) to the first
  250 of each relay, whichever client gets it (a mail whose DATA ended before the restart
  counts too: it was still waiting for the database).

A 250 during the outage, or any reply but 250 and 451, is counted and reported: it is a bug.
"""

from __future__ import annotations

import argparse
import json
import shutil
import smtplib
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from common import ROOT, free_port, relay_config, start_relay, start_smtp_sink, stop  # noqa: E402

from tests.pg import Cluster, new_database  # noqa: E402

BACK_TIMEOUT = 60.0  # seconds a relay may take to answer 250 after the restart before the run fails


@dataclass
class Attempt:
    relay: int
    sent: float  # monotonic time the final dot was sent
    answered: float
    code: int


@dataclass
class Clients:
    """The SMTP clients of one run; each stops once told to and its relay has said 250 since."""

    ports: list[int]
    attempts: list[Attempt] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    up_at: list[float] = field(default_factory=list)  # when the database was back
    lock: threading.Lock = field(default_factory=threading.Lock)

    def back(self, relay: int) -> bool:
        if not self.up_at:
            return False
        with self.lock:
            return any(
                a.relay == relay and a.code == 250 and a.answered >= self.up_at[0] for a in self.attempts
            )

    def run(self, relay: int, k: int) -> None:
        port = self.ports[relay]
        for n in range(100_000):  # bounded: a run is minutes, an attempt at least milliseconds
            if self.stopping.is_set() and (
                self.back(relay) or time.monotonic() > self.up_at[0] + BACK_TIMEOUT
            ):
                return
            attempt = self.send(
                relay, port, f"7999{3_000_000 + relay * 100_000 + k * 10_000 + n % 10_000:07d}"
            )
            with self.lock:
                self.attempts.append(attempt)
            if attempt.code != 250:
                time.sleep(0.05)  # an MTA would wait minutes; this only keeps a fast refusal from spinning

    def send(self, relay: int, port: int, phone: str) -> Attempt:
        """One mail; code 0: no answer (the connection failed or was closed, or 120 s passed)."""
        start = time.monotonic()
        try:
            return self._send(relay, port, phone)
        except (smtplib.SMTPException, OSError):
            return Attempt(relay, start, time.monotonic(), 0)

    def _send(self, relay: int, port: int, phone: str) -> Attempt:
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as smtp:
            smtp.ehlo("bench.example.com")
            smtp.mail("bench@example.com")
            smtp.rcpt(f"{phone}@sms.example.com")
            code, _ = smtp.docmd("DATA")
            if code != 354:
                return Attempt(relay, time.monotonic(), time.monotonic(), code)
            smtp.send(b"Subject: outage\r\n\r\nduring the outage\r\n.\r\n")
            sent = time.monotonic()
            code, _ = smtp.getreply()
            answered = time.monotonic()
            return Attempt(relay, sent, answered, code)


@dataclass
class Run:
    latencies: list[float]  # seconds from DATA end to the 451, during the outage
    back: list[float | None]  # seconds from the restart to each relay's first 250
    accepted_during: int  # must be 0
    other_codes: list[int]  # must be empty
    restart: float  # seconds `pg_ctl start` took

    def line(self) -> dict[str, object]:
        lat = self.latencies
        return {
            "refused": len(lat), "reply_median_s": round(statistics.median(lat), 2) if lat else None,
            "reply_max_s": round(max(lat), 2) if lat else None, "accepted_during": self.accepted_during,
            "other_codes": self.other_codes, "back_s": self.back, "restart_s": self.restart,
        }  # fmt: skip


def one_run(cluster: Cluster, args: argparse.Namespace, tree: Path = ROOT) -> Run:
    extra = f", outage_reply: {args.outage_reply}" if args.outage_reply else ""
    with tempfile.TemporaryDirectory() as tmp:
        upstream = free_port()
        procs = [start_smtp_sink(upstream)]
        dsn = new_database(cluster.dsn)
        try:
            ports = []
            for n in range(2):
                port = free_port()
                spool = f'{{backend: postgresql, dsn: "{dsn}", relay_name: r{n}{extra}}}'
                cfg = relay_config(Path(tmp), port, upstream, spool=spool, name=f"r{n}")
                procs.append(start_relay(cfg, port, tree))
                ports.append(port)
            clients = Clients(ports)
            for relay, port in enumerate(ports):  # both take mail before the outage
                warm = clients.send(relay, port, "79990000001")
                assert warm.code == 250, f"relay {relay} refused mail before the outage: {warm.code}"
            threads = [
                threading.Thread(target=clients.run, args=(relay, k), daemon=True)
                for relay in range(2)
                for k in range(args.clients)
            ]
            for t in threads:
                t.start()
            time.sleep(1.0)  # the clients are in full swing when the database goes
            down = time.monotonic()
            cluster.stop()
            stopped = time.monotonic()
            time.sleep(args.outage)  # the outage itself
            starting = time.monotonic()
            cluster.start()
            up = time.monotonic()
            clients.up_at.append(up)
            clients.stopping.set()
            for t in threads:
                t.join(timeout=BACK_TIMEOUT + 130)
        finally:
            for p in reversed(procs):
                stop(p)
    during = [a for a in clients.attempts if a.sent >= down and a.answered < starting]
    back: list[float | None] = []
    for relay in range(2):
        first = [
            a.answered for a in clients.attempts if a.relay == relay and a.code == 250 and a.answered >= up
        ]
        back.append(round(min(first) - up, 2) if first else None)
    return Run(
        latencies=[a.answered - a.sent for a in during if a.code == 451],
        back=back,
        # Not before the server is gone: a commit may still make it while pg_ctl stops it.
        accepted_during=sum(1 for a in during if a.code == 250 and a.sent >= stopped),
        other_codes=sorted({a.code for a in clients.attempts if a.code not in (250, 451)}),
        restart=round(up - starting, 2),
    )


def summary(runs: list[Run]) -> dict[str, object]:
    """The 451's median and max over every refused mail of the runs; each relay's time back:
    the median and the max over the runs."""
    latencies = [x for r in runs for x in r.latencies]
    backs = [[x for r in runs if (x := r.back[n]) is not None] for n in range(2)]
    return {
        "refused": len(latencies),
        "reply_median_s": round(statistics.median(latencies), 2) if latencies else None,
        "reply_max_s": round(max(latencies), 2) if latencies else None,
        "back_median_s": [round(statistics.median(b), 2) if b else None for b in backs],
        "back_max_s": [max(b) if b else None for b in backs],
        "never_back": sum(1 for r in runs for x in r.back if x is None),  # must be 0
        "accepted_during": sum(r.accepted_during for r in runs),
        "other_codes": sorted({c for r in runs for c in r.other_codes}),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--outage", type=float, default=30.0, help="seconds the database is down")
    parser.add_argument("--clients", type=int, default=2, help="SMTP clients per relay")
    parser.add_argument("--outage-reply", type=int, help="spool.outage_reply (default: left out)")
    parser.add_argument("--against", type=Path, help="A/B: another checkout's relays, alternating")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout measured (default: this one)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    cluster = Cluster(durable=True)
    cluster.start()
    trees = {"before": args.against, "after": args.tree} if args.against else {"this": args.tree}
    results: dict[str, list[Run]] = {name: [] for name in trees}
    try:
        for n in range(args.runs):
            for name, tree in trees.items():  # alternating, so drift of the machine's load cancels
                results[name].append(one_run(cluster, args, tree))
                print(json.dumps({"run": n, "tree": name, **results[name][-1].line()}), flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(cluster.base, ignore_errors=True)
    report: dict[str, object] = {
        "runs": args.runs, "outage_s": args.outage, "clients_per_relay": args.clients,
        "outage_reply": args.outage_reply, **{name: summary(runs) for name, runs in results.items()},
    }  # fmt: skip
    print(json.dumps(report))
    if args.json:
        per_run = {name: [r.line() for r in runs] for name, runs in results.items()}
        args.json.write_text(json.dumps({**report, "per_run": per_run}, indent=2) + "\n")


if __name__ == "__main__":
    main()
