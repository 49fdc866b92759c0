"""`smsc-relay render`: the pure core on one mail, printed as the daemon would send it."""

from __future__ import annotations

import argparse
import json
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from relay import pipeline
from relay.cli.helptext import examples
from relay.config.load import load
from relay.config.schema import Config
from relay.errors import Exit, RelayError
from relay.formatters import mime
from relay.ids import new_id
from relay.model import Encoding, ProviderMail


def add_command(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("render", parents=[common], help="show what one mail becomes, without sending",
                       **examples("""
  smsc-relay render alert.eml                          to the mail's own To and Cc
  smsc-relay render --to oncall@sms.example.com --from nagios@mon1.example.com < alert.eml
  smsc-relay render --json alert.eml | jq '.[0].text'  the SMS text only"""))  # fmt: skip
    p.add_argument("file", nargs="?", default="-", help="the mail (RFC 5322); - or nothing for stdin")
    p.add_argument("--from", dest="mail_from", default="", help="envelope sender")
    p.add_argument(
        "--to",
        dest="rcpt",
        action="append",
        default=[],
        help="envelope recipient (repeatable; default: the mail's To and Cc)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=cmd_render)


def cmd_render(args: argparse.Namespace) -> int:
    cfg = load(args.config)
    try:
        raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        print(f"smsc-relay: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return Exit.NOINPUT
    rcpt = args.rcpt or pipeline.header_recipients(raw)
    try:
        result = pipeline.render(
            raw,
            mail_from=args.mail_from,
            rcpt_tos=rcpt,
            config=cfg,
            new_id=new_id,
            now=datetime.now(UTC),
            hostname=cfg.listen.hostname or socket.getfqdn(),
        )
    except RelayError as exc:
        # The same reply the SMTP listener gives for this mail.
        if args.json:
            reply = exc.reply
            print(json.dumps({"error": {"code": reply.code, "enhanced": reply.enhanced, "text": reply.text}}))
        print(f"smsc-relay: rejected: {exc.reply}", file=sys.stderr)
        return Exit.DATAERR
    host = cfg.listen.hostname or socket.getfqdn()
    held = pipeline.preview_alerts(result, config=cfg, now=datetime.now(UTC), hostname=host)
    if args.json:
        out = [_as_json(result, m) for m in result.provider_mails]
        out += [_as_json(result, m) | {"held": _held(cfg, m.route)} for m in held]
        print(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        _print_text(result, held, cfg)
    return Exit.OK


def _held(cfg: Config, route_name: str) -> str:
    """How storm control holds a route's alerts, in words."""
    s = next(r.storm for r in cfg.routes if r.name == route_name)
    assert s is not None
    hold = (
        "no hold (urgent)"
        if s.urgent
        else f"held {min(s.first_hold, s.hold):.0f} s after a quiet spell, {s.hold:.0f} s in a storm to merge"
        " with other alerts"
    )
    gap = f"at least {s.min_gap:.0f} s between SMS to a phone"
    return f"{hold}; repeats counted for {s.dedup_window:.0f} s; {gap}"


def _as_json(result: pipeline.Rendered, m: ProviderMail) -> dict[str, Any]:
    return {
        "id": m.relay_id,
        "mode": m.mode.value,
        "route": m.route,
        "mail_from": result.mail.mail_from,
        "rcpt": list(m.rcpt_tos),
        "phones": list(m.phones),
        "text": m.texts[0] if len(m.texts) == 1 else list(m.texts),
        "parts": m.segments.parts,
        "encoding": m.segments.encoding.value,
        "units": m.segments.units,
        "upstream": {"mail_from": m.mail_from, "rcpt_to": m.rcpt_to},
        "command": mime.readable(m.masked.encode("ascii")).split("\n\n", 1)[1].rstrip("\n"),
        "message": m.masked,
        "body_source": result.mail.body_source.value,
        "warnings": [*result.mail.warnings, *result.warnings],
        "notes": list(result.notes),
    }


def _print_text(
    result: pipeline.Rendered, held: tuple[ProviderMail, ...] = (), cfg: Config | None = None
) -> None:
    mail = result.mail
    print(f"mail:     from <{mail.mail_from}> to {', '.join('<' + r + '>' for r in mail.rcpt_tos)}")
    print(f"subject:  {mail.subject!r}")
    print(f"body:     {mail.body_source.value}" + (f" ({mail.charset})" if mail.charset else ""))
    for warning in mail.warnings:
        print(f"warning:  {warning}")
    for warning in result.warnings:
        print(f"warning:  {warning}")
    for note in result.notes:
        print(f"note:     {note}")
    for m in (*result.provider_mails, *held):
        print()
        print(f"== request {m.relay_id}: route {m.route!r} ({m.mode.value}) -> {m.rcpt_to}")
        if m in held and cfg is not None:
            print(f"storm:    {_held(cfg, m.route)}; shown as if it went alone")
        if m.phones:
            print(f"phones:   {', '.join(m.phones)}")
        for text in m.texts:
            print("text:     " + text.replace("\n", "\n          "))
        seg = m.segments
        unit = "septets" if seg.encoding is Encoding.GSM7 else "UCS-2 units"
        print(f"parts:    {seg.parts} ({seg.encoding.value}, {seg.units} {unit})")
        print("provider mail (password shown as ***):")
        readable = mime.readable(m.masked.encode("ascii"))
        print("  " + readable.rstrip("\n").replace("\n", "\n  "))
