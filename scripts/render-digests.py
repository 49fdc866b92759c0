"""A digest of what every test mail becomes, to show a change leaves renders byte-identical.

Run it on two trees and compare (each tree's `relay` first on the path):
    PYTHONPATH=/tmp/before .venv/bin/python scripts/render-digests.py > before.json
    PYTHONPATH=. .venv/bin/python scripts/render-digests.py > after.json
    diff before.json after.json && echo same

Each mail of tests/ goes to each recipient below, through the example config's routes, with fixed
ids, clock and hostname; the digest covers the provider mails' bytes, storm alerts, notes,
warnings, or the SMTP reply of a refusal.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from relay import pipeline
from relay.config.load import load
from relay.errors import RelayError

ROOT = Path(__file__).resolve().parent.parent
RECIPIENTS = ("79991234567@sms.example.com", "oncall@sms.example.com", "alerts@sms.example.com",
              "ops@sms.example.com", "send@send.smscentre.com")  # fmt: skip


def main() -> int:
    cfg = load(ROOT / "config" / "relay.example.yaml", env={}, secrets=False)
    out = {}
    for path in sorted((ROOT / "tests").rglob("*.eml")):
        raw = path.read_bytes()
        for rcpt in RECIPIENTS:
            ids = itertools.count()
            try:
                r = pipeline.render(
                    raw, mail_from="mon@example.com", rcpt_tos=[rcpt], config=cfg,
                    new_id=lambda ids=ids: f"id{next(ids)}", now=datetime(2026, 12, 4, 12, 0, tzinfo=UTC),
                    hostname="relay.test", with_secret=False,
                )  # fmt: skip
                got = [m.message.hex() for m in r.provider_mails]
                got += [repr((a.route, a.phones, a.text, a.kind)) for a in r.alerts]
                got += [*r.notes, *r.warnings]
            except RelayError as exc:
                got = ["refused", str(exc.reply)]
            out[f"{path.relative_to(ROOT)} {rcpt}"] = hashlib.sha256(json.dumps(got).encode()).hexdigest()
    json.dump(out, sys.stdout, indent=0, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
