"""Make tests/data/spool-v0.db: a spool as smsc-relay wrote it before schema versions existed.

It must be run with that code, the tree of commit cb08ba7 (the last before the layout change):

    git worktree add /tmp/v0 cb08ba7
    PYTHONPATH=/tmp/v0 .venv/bin/python tests/data/make_spool_v0.py tests/data/spool-v0.db

tests/test_spool_schema.py opens the file with today's code and reads every message in it. The
file is committed; this script is how it was made and how to make it again.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from relay import config, pipeline, stormstore  # type: ignore[attr-defined]  # the old layout
from relay.model import ProviderReply, ReplyKind, State
from relay.spool import Spool  # type: ignore[attr-defined]

CONFIG = r"""
provider:
  login: mylogin
  password: "T0p-s3cret,pw"
  reply_address: replies@relay.example.com
routes:
  - name: number
    match: {recipient: '^(?P<phones>\+?[0-9]{10,15})@sms\.example\.com$'}
  - name: zabbix
    match: {recipient: '^zabbix@sms\.example\.com$'}
    phones: ["+79990000001"]
    storm: true
"""
NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


async def main(path: Path) -> None:
    path.unlink(missing_ok=True)
    cfg = config.parse(CONFIG, env={})
    ids = iter(f"r0-{n:04d}" for n in range(1000))
    spool = Spool(path)
    await spool.open()
    for n, (rcpt, text) in enumerate(
        [("79991234567@sms.example.com", "Disk /var is full"),  # n=0: claimed right away
         ("79991234568@sms.example.com", "Привет, мир"),
         ("79991234569@sms.example.com", "backup done"),
         ("79991234570@sms.example.com", "load high")]  # n=3: stays queued
    ):  # fmt: skip
        raw = f"From: cron@db1.example.com\r\nSubject: alert {n}\r\n\r\n{text}\r\n".encode()
        rendered = pipeline.render(
            raw, mail_from="cron@db1.example.com", rcpt_tos=[rcpt], config=cfg, new_id=lambda: next(ids),
            now=NOW, hostname="relay.test", with_secret=False,
        )  # fmt: skip
        await spool.enqueue(rendered.provider_mails, mail_from="cron@db1.example.com", inbound_id="<i>")
        if n == 0:  # one left `sending`, as a crash leaves it
            await spool.claim(10, 2e9)
        if n == 1:  # one confirmed by a provider reply
            (claimed,) = await spool.claim(10, 2e9)
            await spool.finish(claimed.id, State.SENT)
            ok = ProviderReply(ReplyKind.OK, relay_id=claimed.id, sms_count=1, line="OK - 1 SMS")
            await spool.record_reply(ok, mail_from="noreply@smsc.ru", raw=b"OK - 1 SMS")
        if n == 2:  # one failed for good
            (claimed,) = await spool.claim(10, 2e9)
            await spool.finish(claimed.id, State.FAILED, last_error="554 5.7.1 rejected", error_code=554)
    raw = b"From: zabbix@mon.example.com\r\nSubject: Problem: CPU high\r\n\r\nHost: app-01\r\n"
    rendered = pipeline.render(
        raw, mail_from="zabbix@mon.example.com", rcpt_tos=["zabbix@sms.example.com"], config=cfg,
        new_id=lambda: next(ids), now=NOW, hostname="relay.test", with_secret=False,
    )  # fmt: skip
    settings = stormstore.settings_for(cfg)
    await spool.write(
        lambda conn: stormstore.admit(
            conn, rendered.alerts, settings=settings, now=NOW.timestamp(), mail_from="zabbix@mon.example.com",
            inbound_id="<z>",
        )
    )  # fmt: skip
    await spool.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
