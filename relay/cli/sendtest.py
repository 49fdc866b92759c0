"""`smsc-relay send-test PHONE TEXT`: one SMS through the normal spool and delivery, and its outcome.

The request goes into the spool as any accepted mail's does (the provider's per-phone limits
included); the running relay claims it within seconds, sends it, and records what the provider
said. This command waits for that and prints each state it sees.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from relay import fields
from relay.cli.helptext import examples
from relay.cli.queue import open_admin
from relay.config.load import load
from relay.errors import Exit, RelayError
from relay.formatters import provider
from relay.ids import new_id
from relay.model import Entry, RouteMode, SmsRequest, State
from relay.spool import interface as spools

if TYPE_CHECKING:
    from relay.spool.admin import SpoolAdmin  # psycopg: not for `serve` (relay/cli/queue.py)

DONE_OK = (State.CONFIRMED, State.DRY_RUN, State.DELIVERED)
DONE_BAD = (
    State.FAILED, State.EXPIRED, State.DUPLICATE, State.REPEAT, State.UNCONFIRMED, State.UNDELIVERED,
    State.STATUS_UNKNOWN,
)  # fmt: skip


def add_command(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "send-test", parents=[common], help="send one SMS through the running relay; print the outcome",
        **examples("""
  smsc-relay send-test +79991234567 "smsc-relay works"          waits up to 120 s for the outcome
  smsc-relay send-test --wait 30 --keep +79991234567 "test"     leave it queued if no relay runs"""),
    )  # fmt: skip
    p.add_argument("phone", help="international format, e.g. +79991234567")
    p.add_argument("text", help="the SMS text")
    p.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the outcome (default 120)")
    p.add_argument("--keep", action="store_true",
                   help="leave it queued if no relay takes it within --wait (else it goes)")  # fmt: skip
    p.set_defaults(func=cmd_send_test)


def cmd_send_test(args: argparse.Namespace) -> int:
    cfg = load(args.config, secrets=False)  # it only writes to the spool: the relay holds the password
    try:
        phone = fields.phone(args.phone)
    except ValueError as exc:
        print(f"smsc-relay: {exc}", file=sys.stderr)
        return Exit.USAGE
    request = SmsRequest(
        relay_id=new_id(), mode=RouteMode.COMMAND, route="send-test", rcpt_tos=(),
        entries=(Entry((phone,), args.text),),
    )  # fmt: skip
    try:
        mail = provider.build(
            request, cfg.provider, hostname=cfg.listen.hostname or socket.getfqdn(), now=datetime.now(UTC),
            with_secret=False,
        )  # fmt: skip
    except RelayError as exc:
        print(f"smsc-relay: {exc.reason}", file=sys.stderr)
        return Exit.DATAERR
    with contextlib.closing(open_admin(cfg.spool)) as spool:
        rows = spools.new_rows(
            [mail], mail_from="", inbound_id="", state=State.QUEUED, attempts=0, now=time.time(),
            config=cfg.digest,
        )  # fmt: skip
        spool.enqueue(rows, [mail], protect=cfg.provider.phone_limits)
        print(f"{request.relay_id}: queued for {phone} (the running relay sends it within seconds)")
        # With test=1 the provider's reply says whether it went out; with test=0, `sent` is the end.
        waits_for_reply = cfg.provider.test and cfg.provider.outbox is None
        code = _wait(spool, request.relay_id, args.wait, sent_is_final=not waits_for_reply)
        if code == Exit.TEMPFAIL and not args.keep and spool.drop(request.relay_id, (State.QUEUED,)):
            # Never claimed: no relay is running (or none reads this spool). Left queued, it would go
            # out whenever a relay next starts, long after the test.
            print(f"{request.relay_id}: no relay took it within {args.wait:.0f} s: removed "
                  "(--keep leaves it queued)", file=sys.stderr)  # fmt: skip
        return code


def _wait(spool: SpoolAdmin, relay_id: str, seconds: float, *, sent_is_final: bool) -> int:
    deadline, seen = time.monotonic() + seconds, None
    while True:
        row = spool.get(relay_id)
        if row is None:
            print(f"{relay_id}: dropped from the spool", file=sys.stderr)
            return Exit.FAILURE
        if row.state != seen:
            seen = row.state
            detail = f" ({row.last_error})" if row.last_error else ""
            count = f", {row.sms_count} SMS" if row.sms_count is not None else ""
            print(f"{relay_id}: {row.state.value}{count}{detail}", flush=True)
        if row.state in DONE_OK or (sent_is_final and row.state is State.SENT):
            return Exit.OK
        if row.state in DONE_BAD:
            return Exit.FAILURE
        if time.monotonic() > deadline:
            print(
                f"{relay_id}: still {row.state.value} after {seconds:.0f} s: is the relay running?",
                file=sys.stderr,
            )
            return Exit.TEMPFAIL
        time.sleep(0.5)
