"""An alert storm against smsc-relay's storm control, in real time.

Run: .venv/bin/python benchmarks/storm.py [--seed 1] [--mails 1000] [--seconds 60] [--template "{subject}"]

1,000 alert mails in 60 s to one on-call route with 5 phones: 20 distinct alerts (Nagios-,
Zabbix- and Alertmanager-style texts), each repeated from its start until it recovers or the
storm ends; 3 recover within seconds (flaps) and 3 later. The relay runs with the defaults of
`storm: true` (plus patterns that tell problems from recoveries), a fake provider that enforces
the provider's duplicate (error 9) and flood (50 messages < 2 min apart) rules answers every
request like the real one, and the run ends when nothing is held and no dedup window has repeats
left to report (the last follow-ups come ~5 min after the storm).

Reported: provider rejections; SMS parts billed (parts x phones) against naive one-mail-one-SMS
forwarding of the same storm, and how many of those naive requests the provider would refuse;
whether every alert that did not flap is in some SMS; the delay from an alert's first mail to
the first SMS that carries it (median and worst).
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
from tests.fakes import ProviderLimits, ReplyingProvider  # noqa: E402
from tests.helpers import serve_fake  # noqa: E402

PHONES = [f"+7999000000{n}" for n in range(1, 6)]
SENDER, RCPT = "monitor@mon.example.com", "oncall@sms.example.com"
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
  - name: oncall
    match: {{recipient: '^oncall@sms\\.example\\.com$'}}
    phones: {phones}
    sender: ALERTS
    {template}
    storm:
      recovery: '^(RECOVERY|Resolved|\\[RESOLVED\\])'
      alert_key: '^(?:PROBLEM|RECOVERY|Problem|Resolved|\\[FIRING:1\\]|\\[RESOLVED\\]) (?P<key>\\S+)'
"""

SERVICES = ["HTTP", "SSH", "Disk /var", "Load", "Ping", "MySQL", "Postgres", "NTP", "DNS", "SMTP"]


@dataclass
class Alert:
    key: str
    problem: str  # subject of its problem mails
    recovery: str
    start: float
    end: float | None  # when its recovery is mailed; None: still firing after the storm
    flap: bool = False


def make_storm(rng: random.Random, seconds: float, mails: int) -> tuple[list[Alert], list[tuple[float, str]]]:
    alerts = []
    for n in range(20):
        host, svc = f"{['web', 'db', 'app', 'cache'][n % 4]}{n:02}", SERVICES[n % len(SERVICES)]
        style = n % 3
        if style == 0:
            problem, recovery = f"PROBLEM {host}/{svc} is CRITICAL", f"RECOVERY {host}/{svc} is OK"
        elif style == 1:
            problem, recovery = f"Problem {host}:{svc} unavailable", f"Resolved {host}:{svc} unavailable"
        else:
            problem, recovery = (
                f"[FIRING:1] {host}-{svc.replace(' ', '')}Down",
                f"[RESOLVED] {host}-{svc.replace(' ', '')}Down",
            )
        start = rng.uniform(0, seconds * 0.6)
        alerts.append(Alert(f"{host}/{svc}", problem, recovery, start, None))
    for a in alerts[:3]:  # flaps: recover a few seconds after they start
        a.end, a.flap = a.start + rng.uniform(2, 8), True
    for a in alerts[3:6]:  # recover later in the storm
        a.end = min(seconds - 1, a.start + rng.uniform(20, 40))
    timeline = [(a.start, a.problem) for a in alerts] + [
        (a.end, a.recovery) for a in alerts if a.end is not None
    ]
    while len(timeline) < mails:  # repeats of whatever is firing at a random moment
        t = rng.uniform(0, seconds)
        firing = [a for a in alerts if a.start <= t and (a.end is None or t < a.end)]
        if firing:
            timeline.append((t, rng.choice(firing).problem))
    timeline.sort()
    return alerts, timeline


def body(subject: str) -> str:
    return f"{subject}\nChecked by monitoring at the usual interval."


async def run(args: argparse.Namespace) -> dict[str, object]:
    rng = random.Random(args.seed)
    alerts, timeline = make_storm(rng, args.seconds, args.mails)
    limits = ProviderLimits()
    fake = ReplyingProvider(answer=limits.answer)
    server, provider_port = await serve_fake(fake)
    tmp = Path(tempfile.mkdtemp(prefix="storm-"))
    cfg_path = tmp / "relay.yaml"
    template = f"template: {json.dumps(args.template)}" if args.template else ""
    config_text = CONFIG.format(
        provider_port=provider_port, spool=tmp / "spool.db", phones=json.dumps(PHONES), template=template
    )
    cfg_path.write_text(config_text)
    relay = Daemon(cfg_path, config_mod.load(cfg_path, env={}))
    await relay.start()
    fake.relay_port = relay.port
    arrivals: list[tuple[float, list[str]]] = []  # (time, texts) of each provider request
    seen = 0

    async def watch() -> None:
        nonlocal seen
        while True:
            while seen < len(fake.received):
                got = fake.received[seen]
                if got.command:
                    arrivals.append((time.monotonic(), [e.text for e in got.command.entries]))
                seen += 1
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    start = time.monotonic()
    sent_at: dict[str, float] = {}
    sem = asyncio.Semaphore(20)

    async def send(at: float, subject: str) -> None:
        await asyncio.sleep(max(0.0, start + at - time.monotonic()))
        async with sem:
            head = f"From: {SENDER}\r\nTo: {RCPT}\r\nSubject: {subject}\r\n\r\n"
            msg = head + body(subject) + "\r\n"
            await aiosmtplib.send(
                msg, sender=SENDER, recipients=[RCPT], hostname="127.0.0.1", port=relay.port
            )
        sent_at.setdefault(subject, time.monotonic())

    await asyncio.gather(*(send(at, subject) for at, subject in timeline))
    storm_seconds = time.monotonic() - start

    def count(conn: Any) -> tuple[int, int]:
        held = conn.execute("SELECT COUNT(*) FROM alerts WHERE state = 'held'").fetchone()[0]
        windows = conn.execute("SELECT COUNT(*) FROM dedup_windows WHERE repeats > 0").fetchone()[0]
        return held, windows

    async def pending() -> tuple[int, int]:
        return await relay.spool.write(count, durable=False)

    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and (await pending() != (0, 0) or await relay.spool.count_waiting()):
        await asyncio.sleep(1)
    await asyncio.sleep(3)  # the last replies
    watcher.cancel()
    states = {s.value: n for s, n in (await relay.spool.counts()).items()}
    await relay.stop()
    server.close()

    # naive: every mail becomes its own SMS the moment it arrives (the same route without
    # `storm:`, rendered by the same pipeline), checked against the same provider rules
    naive_cfg = config_mod.parse(config_text.split("    storm:")[0], env={})
    clock = [0.0]
    naive_limits = ProviderLimits(clock=lambda: clock[0])
    naive_parts = 0
    for at, subject in timeline:
        clock[0] = at
        raw = f"From: {SENDER}\r\nTo: {RCPT}\r\nSubject: {subject}\r\n\r\n{body(subject)}\r\n".encode()
        (mail,) = pipeline.render(
            raw, mail_from=SENDER, rcpt_tos=[RCPT], config=naive_cfg, new_id=lambda: "naive",
            now=datetime.now(UTC), hostname="relay.test",
        ).provider_mails  # fmt: skip
        naive_parts += mail.segments.parts * len(mail.phones)
        naive_limits.check([(mail.phones, t) for t in mail.texts])
    parts = sum(segments.count(t).parts * len(PHONES) for _, texts in arrivals for t in texts)
    delays, missing = [], []
    for a in alerts:
        got = [at for at, texts in arrivals if any(a.problem in t for t in texts)]
        if a.flap:
            continue
        if not got:
            missing.append(a.key)
            continue
        delays.append(min(got) - sent_at[a.problem])
    flaps_sent = [a.key for a in alerts if a.flap and any(a.problem in t for _, ts in arrivals for t in ts)]
    return {
        "mails": len(timeline),
        "storm_seconds": round(storm_seconds, 1),
        "distinct_alerts": len(alerts),
        "phones": len(PHONES),
        "provider_requests": len(arrivals),
        "provider_rejections": len(limits.rejections),
        "rejections": limits.rejections,
        "sms_parts_billed": parts,
        "naive_sms_parts": naive_parts,
        "naive_rejections": len(naive_limits.rejections),
        "alerts_missing": missing,
        "flaps_sent_anyway": flaps_sent,
        "first_sms_of_storm_s": round(min(at for at, _ in arrivals) - start - timeline[0][0], 1),
        "first_sms_delay_s": {"median": round(statistics.median(delays), 1), "max": round(max(delays), 1)},
        "message_states": states,
        "last_request_after_storm_s": round(max(at for at, _ in arrivals) - start - storm_seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mails", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--template", help='the SMS template, e.g. "{subject}" (default: subject, then text)')
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
