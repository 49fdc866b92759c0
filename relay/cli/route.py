"""`smsc-relay route ADDRESS [--from SENDER] [--subject S]`: which route a recipient gets, its
phones, mode and options, without writing a mail (the routing the listener does at RCPT/DATA)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from relay.config.load import load
from relay.config.schema import Route
from relay.errors import Exit, RelayError
from relay.routing import find_route, phones_for

EXAMPLES = """examples:
  smsc-relay route oncall@sms.example.com
  smsc-relay route 79991234567@sms.example.com --from cron@db1.example.com
  smsc-relay route alerts@sms.example.com --subject '[FIRING:1] InstanceDown' --json"""


def add_command(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("route", parents=[common], help="which route, phones and options a recipient gets",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("address", help="the envelope recipient")
    p.add_argument("--from", dest="mail_from", default="", help="envelope sender (or the mail's From:)")
    p.add_argument("--subject", default=None, help="the subject, for routes that match on it")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_route)


def cmd_route(args: argparse.Namespace) -> int:
    cfg = load(args.config, secrets=False)  # routing needs no password
    route = find_route(cfg.routes, args.address, args.mail_from, args.subject, args.mail_from)
    if route is None:
        print(
            f"smsc-relay: 550 5.1.1 no route for <{args.address}>: no route's patterns all match",
            file=sys.stderr,
        )
        return Exit.FAILURE
    try:
        phones = phones_for(route, cfg.aliases, args.address)
    except RelayError as exc:
        print(f"smsc-relay: {exc.reply}", file=sys.stderr)
        return Exit.FAILURE
    data = describe(route, phones)
    if args.subject is None:
        earlier = cfg.routes[: cfg.routes.index(route) + 1]
        if any(r.subject_match and r.recipient.search(args.address) for r in earlier):
            data["note"] = "a route that matches on the subject was taken as matching: give --subject"
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        for key, value in data.items():
            shown = ", ".join(value) if isinstance(value, list) else value
            print(f"{key + ':':<15}{'-' if shown in ('', None) else shown}")
    return Exit.OK


def describe(route: Route, phones: tuple[str, ...]) -> dict[str, Any]:
    o = route.options
    data: dict[str, Any] = {
        "route": route.name,
        "mode": route.mode.value,
        "matched": route.recipient.pattern,
        "phones": list(phones),
        "sender": o.sender,
        "type": route.message_type,
        "translit": o.translit or "0",
        "format": o.format,
        "time": f"{o.time} (tz {o.tz})" if o.time else "",
        "max_parts": route.max_parts or "the provider's 1000 characters",
        "summary": "auto" if route.summary else "off",
        "template": route.template or "",
        "storm": "on" if route.storm else "off",
        "comment": route.comment,
    }
    if route.sender_match is not None:
        data["sender_match"] = route.sender_match.pattern
    if route.subject_match is not None:
        data["subject_match"] = route.subject_match.pattern
    return data
