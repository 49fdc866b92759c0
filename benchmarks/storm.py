"""An alert storm of real-shaped monitoring mail against smsc-relay, in real time.

Run: .venv/bin/python benchmarks/storm.py [--seed 1] [--mails 300] [--seconds 60] [--json FILE]

A quiet relay, then a storm: `--mails` mails in `--seconds` s about 16 distinct problems from
Nagios, Zabbix, cron and a UPS (their default formats, as in tests/corpus), every repeat with a
new time, measured value and event id; several hosts share a trigger. 3 problems recover within
seconds (flaps), 2 recover late. Every mail goes to two routes: `oncall` with `storm: true` (the
defaults: no patterns, identity from the recognisers) and `plain` with no storm section, each to
2 phones of its own. A fake provider that enforces the duplicate (error 9) and flood (50 messages
< 2 min apart) rules answers every request like the real one; the run ends when nothing is held,
waiting or counting repeats.

Reported, per route: provider refusals (goal 0 on both); for the storm route, every distinct
alert named and the delay from its first mail to the first SMS naming it (goal: all within
120 s), late recoveries named, the first SMS's delay after the quiet period (goal <= 5 s), and SMS
parts billed against naive one-mail-one-SMS forwarding of the same storm (goal <= 10 %).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosmtplib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from relay import pipeline  # noqa: E402
from relay.config import load as config_mod  # noqa: E402
from relay.daemon.main import Daemon  # noqa: E402
from relay.formatters import segments  # noqa: E402
from relay.spool.sqlite import SqliteSpool  # noqa: E402
from tests.fakes import ProviderLimits, ReplyingProvider  # noqa: E402
from tests.helpers import serve_fake  # noqa: E402

STORM_PHONES = ["+79990000001", "+79990000002"]
PLAIN_PHONES = ["+79990000011", "+79990000012"]
SENDER = "monitor@mon.example.com"
STORM_RCPT, PLAIN_RCPT = "oncall@sms.example.com", "plain@sms.example.com"
CONFIG = """
listen: {{host: 127.0.0.1, port: 0, networks: [127.0.0.0/8], max_connections: 200}}
provider:
  host: 127.0.0.1
  port: {provider_port}
  login: bench
  password: bench-password
  reply_address: replies@relay.example.com
  test: true
spool: {{path: {spool}}}
delivery: {{concurrency: 2, min_backoff: 5, max_backoff: 60}}
routes:
  - name: plain
    match: {{recipient: '^plain@sms\\.example\\.com$'}}
    phones: {plain}
  - name: oncall
    match: {{recipient: '^oncall@sms\\.example\\.com$'}}
    phones: {storm}
    storm: true
"""


@dataclass
class Alert:
    key: str  # what names it in an SMS: "host" or "host/service"
    kind: str  # nagios, zabbix, cron, ups
    host: str
    what: str
    start: float
    end: float | None  # when its recovery is mailed; None: still firing after the storm
    flap: bool = False


def mail(a: Alert, rng: random.Random, at: float, recovery: bool = False) -> tuple[str, str]:
    """(subject, body) of one mail about `a`, with this repeat's own time, value and id."""
    when = time.strftime("%H:%M:%S", time.gmtime(1_795_348_800 + at))
    event = rng.randrange(100_000, 999_999)
    if a.kind == "nagios":
        kind, state = ("RECOVERY", "OK") if recovery else ("PROBLEM", "CRITICAL")
        info = (
            "HTTP OK: 200 in 0.01 s"
            if recovery
            else f"CRITICAL - Socket timeout after {rng.randint(10, 30)} s"
        )
        return (f"** {kind} Service Alert: {a.host}/{a.what} is {state} **",
                f"***** Nagios *****\n\nNotification Type: {kind}\n\nService: {a.what}\nHost: {a.host}\n"
                f"Address: 10.0.0.{rng.randint(2, 250)}\nState: {state}\n\nDate/Time: Sun Nov 22 {when} MSK 2026\n\n"
                f"Additional Info:\n\n{info}\n")  # fmt: skip
    if a.kind == "zabbix":
        if recovery:
            return (f"Resolved in {rng.randint(1, 9)}m: {a.what}",
                    f"Problem has been resolved at {when} on 2026.11.22\nProblem name: {a.what}\n"
                    f"Problem duration: {rng.randint(1, 9)}m\nHost: {a.host}\nSeverity: High\n"
                    f"Original problem ID: {event}\n")  # fmt: skip
        return (f"Problem: {a.what}",
                f"Problem started at {when} on 2026.11.22\nProblem name: {a.what}\nHost: {a.host}\n"
                f"Severity: High\nOperational data: {rng.uniform(80, 99):.1f} %\nOriginal problem ID: {event}\n")  # fmt: skip
    if a.kind == "cron":
        return (f"Cron <root@{a.host}> {a.what}",
                f"{when} rsync: connection to backup01 failed (code {rng.randint(10, 40)})\nbackup FAILED\n")  # fmt: skip
    return (f"{a.host} UPS {a.what} Power Failure !!!",
            f"Sun Nov 22 {when} MSK 2026 Power failure on UPS {a.what}. Running on batteries.\n\n"
            f"APC      : 001,036,0879\nSTATUS   : ONBATT\nBCHARGE  : {rng.uniform(50, 100):.1f} Percent\n"
            f"TIMELEFT : {rng.uniform(10, 40):.1f} Minutes\n")  # fmt: skip


def make_storm(
    rng: random.Random, seconds: float, mails: int
) -> tuple[list[Alert], list[tuple[float, Alert, bool]]]:
    alerts = []
    for n in range(8):  # Nagios: two services on four hosts
        host = f"web{n // 2 + 1:02}"
        what = ["HTTP", "SSH"][n % 2]
        alerts.append(Alert(f"{host}/{what}", "nagios", host, what, 0, None))
    for n, what in enumerate(
        ["High CPU utilization", "High CPU utilization", "Disk space is low", "MySQL is down"]
    ):
        host = f"db{n + 1:02}"  # two hosts share the CPU trigger: two alerts
        alerts.append(Alert(host, "zabbix", host, what, 0, None))
    alerts += [Alert("app01", "cron", "app01", "/usr/local/bin/backup.sh", 0, None),
               Alert("app02", "cron", "app02", "/usr/local/bin/backup.sh", 0, None),
               Alert("ups1", "ups", "nas", "ups1", 0, None),
               Alert("ups2", "ups", "nas", "ups2", 0, None)]  # fmt: skip
    for a in alerts:
        a.start = rng.uniform(0, seconds * 0.6)
    flapping = [a for a in alerts if a.kind in ("nagios", "zabbix")]
    for a in flapping[:3]:  # flaps: recover a few seconds after they start
        a.end, a.flap = a.start + rng.uniform(1, 2), True
    for a in flapping[3:5]:  # recover late: after their problem went out
        a.end = a.start + rng.uniform(40, 60)
    timeline = [(a.start, a, False) for a in alerts] + [(a.end, a, True) for a in alerts if a.end is not None]
    while len(timeline) < mails:  # repeats of whatever is firing at a random moment
        t = rng.uniform(0, seconds)
        firing = [a for a in alerts if a.start <= t and (a.end is None or t < a.end)]
        if firing:
            timeline.append((t, rng.choice(firing), False))
    timeline.sort(key=lambda x: x[0])
    return alerts, timeline


def lines_of(texts: list[str]) -> list[str]:
    return [line for t in texts for line in t.split("\n")]


def is_recovery(line: str) -> bool:
    return line.startswith(("RECOVERY", "RESOLVED"))


async def run(args: argparse.Namespace) -> dict[str, object]:
    rng = random.Random(args.seed)
    alerts, timeline = make_storm(rng, args.seconds, args.mails)
    mails = [(at, a, rec, *mail(a, rng, at, rec)) for at, a, rec in timeline]
    limits = ProviderLimits()
    fake = ReplyingProvider(answer=limits.answer)
    server, provider_port = await serve_fake(fake)
    tmp = Path(tempfile.mkdtemp(prefix="storm-"))
    cfg_path = tmp / "relay.yaml"
    config_text = CONFIG.format(
        provider_port=provider_port, spool=tmp / "spool.db", storm=json.dumps(STORM_PHONES),
        plain=json.dumps(PLAIN_PHONES),
    )  # fmt: skip
    cfg_path.write_text(config_text)
    relay = Daemon(cfg_path, config_mod.load(cfg_path, env={}))
    spool = relay.spool  # the benchmark reads the SQLite file's tables
    assert isinstance(spool, SqliteSpool)
    await relay.start()
    fake.relay_port = relay.port
    arrivals: dict[str, list[tuple[float, list[str]]]] = {"storm": [], "plain": []}
    seen = 0

    async def watch() -> None:
        nonlocal seen
        while True:
            while seen < len(fake.received):
                got = fake.received[seen]
                if got.command:
                    route = "storm" if set(got.command.entries[0].phones) <= set(STORM_PHONES) else "plain"
                    arrivals[route].append((time.monotonic(), [e.text for e in got.command.entries]))
                seen += 1
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    start = time.monotonic()
    first_mail: dict[str, float] = {}
    sem = asyncio.Semaphore(20)

    async def send(at: float, a: Alert, recovery: bool, subject: str, text: str) -> None:
        await asyncio.sleep(max(0.0, start + at - time.monotonic()))
        async with sem:
            msg = f"From: {SENDER}\r\nSubject: {subject}\r\n\r\n{text}".replace("\n", "\r\n")
            await aiosmtplib.send(
                msg, sender=SENDER, recipients=[STORM_RCPT, PLAIN_RCPT], hostname="127.0.0.1", port=relay.port
            )
        first_mail.setdefault(a.key + (" recovery" if recovery else ""), time.monotonic())

    await asyncio.gather(*(send(*m) for m in mails))
    storm_seconds = time.monotonic() - start

    def count(conn: Any) -> tuple[int, int, int]:
        held = conn.execute("SELECT COUNT(*) FROM alerts WHERE state = 'held'").fetchone()[0]
        windows = conn.execute("SELECT COUNT(*) FROM dedup_windows WHERE repeats > 0").fetchone()[0]
        waiting = conn.execute(
            "SELECT COUNT(*) FROM messages WHERE route = 'oncall' AND state IN ('queued', 'deferred', 'sending')"
        ).fetchone()[0]
        return held, windows, waiting

    async def pending() -> tuple[int, int, int]:
        return await spool.write(count, durable=False)

    # Until the storm route is done; the plain route's held mail waits minutes more (the flood
    # rule lets a phone have 49 SMS per run): what it did by then is reported.
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and await pending() != (0, 0, 0):
        await asyncio.sleep(1)
    for _ in range(100):  # the provider's last replies: bounded, then on
        if not fake.tasks:
            break
        await asyncio.sleep(0.05)
    watcher.cancel()
    plain_states = await spool.write(
        lambda c: dict(
            c.execute("SELECT state, COUNT(*) FROM messages WHERE route = 'plain' GROUP BY state")
        ),
        durable=False,
    )
    await relay.stop()
    server.close()

    # naive: every mail becomes its own SMS the moment it arrives, whole (no summary, no storm,
    # no limits), rendered by the same pipeline and checked against the same provider rules
    naive_cfg = config_mod.parse(
        config_text.replace("    storm: true\n", "    summary: off\n").replace(
            "  test: true\n", "  test: true\n  phone_limits: false\n"
        ),
        env={},
    )
    clock = [0.0]
    naive_limits = ProviderLimits(clock=lambda: clock[0])
    naive_parts = 0
    for at, _a, _rec, subject, text in mails:
        clock[0] = at
        raw = f"From: {SENDER}\r\nSubject: {subject}\r\n\r\n{text}".replace("\n", "\r\n").encode()
        (pm,) = pipeline.render(
            raw, mail_from=SENDER, rcpt_tos=[STORM_RCPT], config=naive_cfg, new_id=lambda: "naive",
            now=datetime.now(UTC), hostname="relay.test",
        ).provider_mails  # fmt: skip
        naive_parts += pm.segments.parts * len(pm.phones)
        naive_limits.check([(pm.phones, t) for t in pm.texts])
    storm_sms = arrivals["storm"]
    parts = sum(segments.count(t).parts * len(STORM_PHONES) for _, texts in storm_sms for t in texts)
    delays, missing = {}, []
    for a in alerts:
        got = [
            at for at, texts in storm_sms if any(a.key in x and not is_recovery(x) for x in lines_of(texts))
        ]
        if a.flap:
            continue
        if not got:
            missing.append(a.key)
            continue
        delays[a.key] = round(min(got) - first_mail[a.key], 1)
    late = [a for a in alerts if a.end is not None and not a.flap]
    late_named = [
        a.key for a in late if any(a.key in x and is_recovery(x) for _, t in storm_sms for x in lines_of(t))
    ]
    flaps_sent = [
        a.key for a in alerts if a.flap and any(a.key in x for _, t in storm_sms for x in lines_of(t))
    ]
    rejected = {r: [x for x in limits.rejections if any(p in x for p in phones)]
                for r, phones in (("storm", STORM_PHONES), ("plain", PLAIN_PHONES))}  # fmt: skip
    return {
        "mails": len(mails),
        "storm_seconds": round(storm_seconds, 1),
        "distinct_alerts": len(alerts),
        "storm_route": {
            "provider_requests": len(storm_sms),
            "provider_refusals": len(rejected["storm"]),
            "sms_parts_billed": parts,
            "naive_sms_parts": naive_parts,
            "parts_vs_naive": round(parts / naive_parts, 3),
            "naive_refusals": len(naive_limits.rejections),
            "alerts_missing": missing,
            "named_within_s": {"median": statistics.median(delays.values()), "max": max(delays.values())},
            "named_after_s": delays,
            "late_recoveries": len(late),
            "late_recoveries_named": len(late_named),
            "flaps_sent_anyway": flaps_sent,
            "first_sms_after_quiet_s": round(min(at for at, _ in storm_sms) - min(first_mail.values()), 1),
        },
        "plain_route": {
            "provider_requests": len(arrivals["plain"]),
            "provider_refusals": len(rejected["plain"]),
            "message_states": plain_states,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mails", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
