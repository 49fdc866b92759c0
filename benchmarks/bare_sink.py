"""The baseline: a bare aiosmtpd server that answers 250 to everything and keeps nothing.

Optionally records "<X-Smsc-Relay-Id> <arrival time>" lines, to serve as the upstream in
latency runs: python bare_sink.py PORT [RECORD_FILE]

With BARE_LEAN=1 in the environment it uses the relay's LeanSMTP (aiosmtpd without its
per-connection introspection) instead of stock aiosmtpd: a second baseline that shows how much of
the relay's lead over stock aiosmtpd comes from that fix alone. It gets the relay's command call
limits (relay/smtp/handler.py Handler.session_options: 100 of each command, MAIL, RCPT, DATA,
RSET and QUIT without a practical limit), not aiosmtpd's default of 20 per command, which would
end a session that reuses its connection (smtp-source -d) with "421 MAIL sent too many times".
Stock aiosmtpd has no call limit at all (command_call_limit=None).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time

from aiosmtpd.smtp import SMTP, Envelope, Session

RELAY_ID = re.compile(rb"^X-Smsc-Relay-Id: (\S+)", re.MULTILINE)
# As the relay's sessions have them (ListenConfig.command_call_limit, handler.TRANSACTION_CALLS).
CALL_LIMITS = {"*": 100, **dict.fromkeys(("MAIL", "RCPT", "DATA", "RSET", "QUIT"), 1 << 30)}


class Sink:
    def __init__(self, record: str | None) -> None:
        self.out = open(record, "a", buffering=1) if record else None  # noqa: SIM115

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.out is not None:
            m = RELAY_ID.search(envelope.original_content or b"")
            if m:
                self.out.write(f"{m.group(1).decode()} {time.time():.6f}\n")
        return "250 2.0.0 Ok"


async def main() -> None:
    port = int(sys.argv[1])
    sink = Sink(sys.argv[2] if len(sys.argv) > 2 else None)
    loop = asyncio.get_running_loop()
    if os.environ.get("BARE_LEAN") == "1":
        from relay.smtp.lean import LeanSMTP

        def factory() -> SMTP:
            return LeanSMTP(sink, data_size_limit=33554432, enable_SMTPUTF8=False, decode_data=False,
                            hostname="sink", ident="sink", tls_context=None, require_starttls=False,
                            timeout=300, auth_require_tls=True, authenticator=None,
                            command_call_limit=CALL_LIMITS)  # fmt: skip
    else:

        def factory() -> SMTP:
            return SMTP(sink, hostname="sink")

    server = await loop.create_server(factory, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
