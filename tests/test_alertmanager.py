"""A real Prometheus Alertmanager (Debian's prometheus-alertmanager, installed by .ci/run) on
loopback, with an e-mail receiver pointed at the relay: alerts posted to its API become SMS at
the fake provider, merged by the relay's storm control, and resolved alerts follow."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import ProviderLimits, ReplyingProvider, wait_for
from tests.helpers import ROUTES, free_port, wait_settled

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")

AM_ROUTES = (
    ROUTES
    + r"""  - name: alertmanager
    match: {recipient: '^oncall-am@sms\.example\.com$'}
    phones: ["+79990000001", "+79990000002"]
    template: "{subject}"
    storm:
      hold: 3
      dedup_window: 60
      min_gap: 5
      recovery: '^\[RESOLVED\]'
      alert_key: '\] (?P<key>\S+)'
"""
)

AM_CONFIG = """
global:
  smtp_smarthost: '127.0.0.1:{relay_port}'
  smtp_from: 'alertmanager@mon.example.com'
  smtp_hello: 'alertmanager.test'
  smtp_require_tls: false
route:
  receiver: sms
  group_by: ['alertname']
  group_wait: 3s  # every alert of the storm is in before the first notification
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: sms
    email_configs:
      - to: '{rcpt}'
        send_resolved: true
"""


@pytest.fixture
async def alertmanager(tmp_path: Path) -> AsyncIterator[Any]:
    assert BINARY, (
        "prometheus-alertmanager is not installed: `apt-get install prometheus-alertmanager` (.ci/run does)"
    )
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Any] = []

    async def start(relay_port: int, rcpt: str = "oncall-am@sms.example.com") -> str:
        (tmp_path / "am.yml").write_text(AM_CONFIG.format(relay_port=relay_port, rcpt=rcpt))
        # A free port can be taken between our probe and Alertmanager's bind (another suite beside
        # this one): a process that exits at start is tried again on another port.
        for _attempt in range(5):
            port = free_port()
            log = open(tmp_path / f"alertmanager-{port}.log", "wb")  # noqa: SIM115
            logs.append(log)
            args = [BINARY, f"--config.file={tmp_path / 'am.yml'}", f"--storage.path={tmp_path / 'am-data'}",
                    f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]  # fmt: skip
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
            procs.append(proc)
            url = f"http://127.0.0.1:{port}"
            await wait_for(lambda p=proc, u=url: p.poll() is not None or _ready(u), timeout=60, interval=0.2)
            if proc.poll() is None:
                return url
        raise AssertionError(f"Alertmanager did not start: see {tmp_path}/alertmanager-*.log")

    yield start
    for p in procs:
        p.terminate()
        p.wait(timeout=10)
    for f in logs:
        f.close()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def post_alerts(url: str, alerts: list[dict[str, Any]]) -> None:
    req = urllib.request.Request(
        f"{url}/api/v2/alerts", data=json.dumps(alerts).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200


def alert(name: str, instance: str, resolved: bool = False) -> dict[str, Any]:
    now = datetime.now(UTC)
    a: dict[str, Any] = {
        "labels": {"alertname": name, "instance": instance, "severity": "critical"},
        "annotations": {"summary": f"{name} on {instance}"},
        "startsAt": (now - timedelta(minutes=5)).isoformat(),
    }
    if resolved:
        a["endsAt"] = (now - timedelta(seconds=1)).isoformat()
    return a


async def test_alertmanager_storm_becomes_few_sms(replying_relay: Any, alertmanager: Any) -> None:
    limits = ProviderLimits()
    fake, relay = await replying_relay(ReplyingProvider(answer=limits.answer), routes=AM_ROUTES)
    url = await alertmanager(relay.port)
    names = ["HostDown", "DiskFull", "HighLatency", "NodeNotReady"]
    # a storm: every exporter re-posts its alerts; Alertmanager groups by alertname
    for _ in range(5):
        await asyncio.to_thread(
            post_alerts, url, [alert(n, f"node{i}:9100") for n in names for i in range(10)]
        )
    # One notification mail per alertname group; then the relay plans and sends what it holds.
    received = relay.metrics.registry
    await wait_for(lambda: received.get_sample_value("smsc_relay_mails_received_total") == 4, timeout=30)
    await wait_settled(relay, timeout=30)
    first = [e.text for r in fake.received if r.command for e in r.command.entries]
    assert len(fake.received) == 1, first  # four notification mails, one SMS
    (text,) = first
    # Every group named; how many alerts Alertmanager had in a group at its first notification
    # is its own timing ([FIRING:5], then [FIRING:10] is a repeat of the same alert: counted).
    assert text.startswith("4 alerts:\n") and all(re.search(rf"\[FIRING:\d+\] {n} ", text) for n in names), (
        text
    )

    await asyncio.to_thread(
        post_alerts, url, [alert("DiskFull", f"node{i}:9100", resolved=True) for i in range(10)]
    )
    await wait_for(lambda: len(fake.received) >= 2, timeout=30, interval=0.1)
    resolved = fake.received[1].command
    assert resolved is not None and resolved.entries[0].text.startswith("[RESOLVED] DiskFull")
    assert limits.rejections == []
    held = received.get_sample_value("smsc_relay_storm_alerts_total", {"state": "held"})
    assert held is not None and held >= 5


SUMMARY_ROUTES = (
    ROUTES
    + r"""  - name: summary
    match: {recipient: '^summary-am@sms\.example\.com$'}
    phones: ["+79990000005"]
"""
)


async def test_alertmanagers_own_default_mail_is_summarised(replying_relay: Any, alertmanager: Any) -> None:
    """The real Alertmanager's default e-mail (HTML) through the recogniser, on a plain route."""
    fake, relay = await replying_relay(ReplyingProvider(), routes=SUMMARY_ROUTES)
    url = await alertmanager(relay.port, rcpt="summary-am@sms.example.com")
    await asyncio.to_thread(post_alerts, url, [alert("DiskFull", f"node{i}:9100") for i in range(3)])
    await wait_for(lambda: len(fake.received) >= 1, timeout=30, interval=0.1)
    text = fake.received[0].sms.entries[0].text
    # state, alert name, the summaries; no "View in Alertmanager", no label dump, no links
    m = re.match(r"FIRING(?::(?P<n>\d+))? DiskFull(?P<hosts>.*?): DiskFull on node\d:9100$", text)
    assert m, text
    # a grouped mail names each of its instances; a single alert's host is in its summary already
    named = set(re.findall(r"node\d:9100", m["hosts"]))
    assert len(named) == (int(m["n"]) if m["n"] else 0), text
    assert "View in Alertmanager" not in text and "alertname" not in text and "http" not in text
