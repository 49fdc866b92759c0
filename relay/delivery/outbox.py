"""Dry run: each provider mail becomes <id>.eml (exact, password masked) and <id>.txt (readable)
in the outbox directory, written atomically, instead of going to the provider."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from relay.delivery.transport import Accepted, Outgoing
from relay.errors import UpstreamUnavailable
from relay.formatters import mime


class OutboxTransport:
    """Dry run: each provider mail becomes <id>.eml (exact, password masked) and <id>.txt
    (readable) in the outbox directory, written atomically."""

    needs_credentials = False
    carries_mail = True

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, mail: Outgoing) -> Accepted:
        try:
            await asyncio.to_thread(self._write, mail.relay_id, mail.mail_from, mail.rcpt_to, mail.message)
        except OSError as exc:
            raise UpstreamUnavailable(f"outbox {self.directory}: {exc.strerror}") from exc
        return Accepted(f"2.0.0 written to outbox as {mail.relay_id}.eml", dry_run=True)

    def _write(self, relay_id: str, mail_from: str, rcpt_to: str, message: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        readable = f"X-Envelope-From: {mail_from}\nX-Envelope-To: {rcpt_to}\n" + mime.readable(message)
        # The .eml last: whoever watches for it (a script, a test) finds the .txt beside it.
        for name, data in ((f"{relay_id}.txt", readable.encode("utf-8")), (f"{relay_id}.eml", message)):
            tmp = self.directory / f".{name}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(self.directory / name)

    async def close(self) -> None:
        return None
