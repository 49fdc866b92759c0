"""`queue list|show|retry|drop|alerts|resume` and `stats`: read the spool safely while it runs."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from relay import ids, provider_errors
from relay.cli.helptext import examples
from relay.config.load import load
from relay.config.schema import Config, SpoolConfig
from relay.errors import Exit, SpoolError
from relay.formatters import mime
from relay.formatters.provider import retag_from
from relay.model import AlertState, SpoolBackend, State
from relay.spool.interface import Row

if TYPE_CHECKING:
    # At run time in open_admin: relay.spool.admin imports psycopg, and `serve` imports this
    # module for its argument parser (a SQLite relay needs no libpq).
    from relay.spool.admin import SpoolAdmin

T = TypeVar("T")


def add_commands(sub: Any, common: argparse.ArgumentParser) -> Any:
    """`queue ...` and `stats`; returns the queue's subcommands, for queue_change's retry and drop."""
    q = sub.add_parser("queue", parents=[common], help="list, show, retry, drop, hold, release messages")
    qs = q.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = qs.add_parser("list", parents=[common], help="messages, newest first", **examples("""
  smsc-relay queue list                     the newest 100
  smsc-relay queue list --state deferred    what waits for another attempt, and why
  smsc-relay queue list --json --limit 1000 for scripts"""))  # fmt: skip
    p.add_argument("--state", choices=[s.value for s in State], help="only this state")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_queue_list)
    p = qs.add_parser("show", parents=[common], help="one message in full (password masked)", **examples("""
  smsc-relay queue show r1a2b3c4d5e6-0f1e2d3c     state, text, the provider's replies, the mail sent
  smsc-relay queue show --json r1a2b3c4d5e6-0f1e2d3c"""))  # fmt: skip
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_queue_one)

    p = qs.add_parser("alerts", parents=[common], help="storm routes' alerts: held, sent, repeats, flaps",
                      **examples("""
  smsc-relay queue alerts                   the newest 100 alerts of storm routes
  smsc-relay queue alerts --state held      what waits to be merged into a digest"""))  # fmt: skip
    p.add_argument("--state", choices=[s.value for s in AlertState], help="only this state")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_queue_alerts)

    p = qs.add_parser("resume", parents=[common], help="resume delivery paused by a provider error",
                      **examples("""
  smsc-relay queue resume                   after topping up the account (ERROR 3)
`stats` shows whether delivery is paused and why; SIGHUP to the relay resumes it too."""))  # fmt: skip
    p.set_defaults(func=cmd_queue_resume)

    p = sub.add_parser("stats", parents=[common], help="message counts by state", **examples("""
  smsc-relay stats                          counts by state, the oldest waiting, a pause
  smsc-relay stats --json                   for monitoring scripts"""))  # fmt: skip
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stats)
    return qs


def _open(args: argparse.Namespace) -> SpoolAdmin:
    # Reading the queue needs no provider password: the service user (or a group member who
    # may read relay.yaml but not the credential) can run these.
    return open_admin(load(args.config, secrets=False).spool)


def _using(args: argparse.Namespace, use: Callable[[SpoolAdmin], T]) -> T:
    with contextlib.closing(_open(args)) as spool:
        return use(spool)


def open_admin(cfg: SpoolConfig) -> SpoolAdmin:
    """The spool of the config, or exit with why not: no SQLite file yet, no database."""
    if cfg.backend is SpoolBackend.SQLITE:
        if not cfg.path.exists():
            print(f"smsc-relay: no spool at {cfg.path} (has the relay run yet?)", file=sys.stderr)
            raise SystemExit(Exit.FAILURE)
        become_owner(cfg.path)
    from relay.spool.admin import SpoolAdmin

    try:
        return SpoolAdmin.for_config(cfg)
    except SpoolError as exc:
        print(f"smsc-relay: {exc}", file=sys.stderr)
        raise SystemExit(Exit.TEMPFAIL) from None


def become_owner(path: Path) -> None:
    """Run as root, act as the spool's owner: otherwise SQLite would create the -wal/-shm files
    as root when the daemon is stopped, and the service user could no longer write its spool."""
    if os.geteuid() != 0:
        return
    st = path.stat()
    if st.st_uid == 0:
        return
    os.setgroups([])
    os.setgid(st.st_gid)
    os.setuid(st.st_uid)


def as_json(row: Row, full: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": row.id,
        "state": row.state.value,
        "mode": row.mode.value,
        "route": row.route,
        "phones": row.phones,
        "text": row.texts[0] if len(row.texts) == 1 else row.texts,
        "parts": row.parts,
        "attempts": row.attempts,
        "created": _iso(row.created),
        "updated": _iso(row.updated),
        "mail_from": row.mail_from,
        "rcpt": row.rcpt_tos,
    }
    if row.state is State.DEFERRED:
        data["next_attempt"] = _iso(row.next_attempt)
    if row.last_error or row.error_code is not None:
        data["error_code"] = row.error_code
        data["error"] = row.last_error
    if row.sms_count is not None:
        data["sms_count"] = row.sms_count
    if row.via:
        data["via"] = row.via
    if row.cost:
        data["cost"] = row.cost
    if row.balance:
        data["balance"] = row.balance
    if row.next_poll is not None:
        data["tracking_next_poll"] = _iso(row.next_poll)
    if full:
        data["message"] = row.message.decode("ascii") if row.masked else "(kept credentials: not shown)"
    return data


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def cmd_queue_list(args: argparse.Namespace) -> int:
    rows = _using(args, lambda s: s.newest(args.limit, State(args.state) if args.state else None))
    if args.json:
        print(json.dumps([as_json(r) for r in rows], ensure_ascii=False, indent=2))
        return Exit.OK
    width = max([len("STATE")] + [len(s.value) for s in State])  # `unconfirmed` fits
    print(f"{'ID':<24} {'STATE':<{width}} {'ATT':>3} {'CREATED':<20} {'ROUTE':<12} PHONES / LAST ERROR")
    for r in rows:
        tail = ",".join(r.phones) or r.mode.value
        print(
            f"{r.id:<24} {r.state.value:<{width}} {r.attempts:>3} {_iso(r.created):<20} {r.route:<12} {tail}"
        )
        if r.last_error:
            print(f"{'':<24} {r.last_error}")
    return Exit.OK


def cmd_queue_alerts(args: argparse.Namespace) -> int:
    alerts = _using(args, lambda s: s.alerts(args.limit, AlertState(args.state) if args.state else None))
    for a in alerts:
        for key in ("received", "due", "updated"):
            a[key] = _iso(float(a[key]))  # type: ignore[arg-type]
    if args.json:
        print(json.dumps(alerts, ensure_ascii=False, indent=2))
        return Exit.OK
    print(f"{'ID':<24} {'STATE':<9} {'KIND':<8} {'RECEIVED':<20} {'ROUTE':<12} SMS / TEXT")
    for a in alerts:
        text = " ".join(str(a["text"]).split())
        held = a["state"] == AlertState.HELD.value
        sms = a["message_id"] or (f"due {a['due']}" if held else a["note"])
        print(f"{a['id']:<24} {a['state']:<9} {a['kind']:<8} {a['received']:<20} {a['route']:<12} {sms}")
        print(f"{'':<24} {text[:100]}")
    return Exit.OK


def cmd_queue_one(args: argparse.Namespace) -> int:
    cfg = load(args.config, secrets=False)
    with contextlib.closing(open_admin(cfg.spool)) as spool:
        return _one(args, spool, cfg)


def _one(args: argparse.Namespace, spool: SpoolAdmin, cfg: Config) -> int:
    row = spool.get(args.id)
    if row is None:
        print(f"smsc-relay: no message {args.id}", file=sys.stderr)
        return Exit.FAILURE
    data = as_json(row, full=True)
    data["rendered_with"] = rendered_with(row, cfg)
    data["mail_kept"] = f"{len(row.inbound)} bytes" if row.inbound is not None else "no"
    sender = _envelope_sender(row, spool, cfg)
    data["envelope_from"] = sender
    if sender != row.upstream_from and row.masked:
        data["message"] = retag_from(row.message, row.upstream_from, sender).decode("ascii")
        row = dataclasses.replace(row, message=data["message"].encode("ascii"))
    data["provider_replies"] = [
        {"received": _iso(float(r["received"])), "line": r["line"], "outcome": r["outcome"]}  # type: ignore[arg-type]
        for r in spool.replies(args.id)
    ]
    data["delivery"] = [_phone_status(s) for s in spool.phone_statuses(args.id)]
    data["smpp_parts"] = [_part(p) for p in spool.smpp_parts(args.id)]
    print(json.dumps(data, ensure_ascii=False, indent=2) if args.json else _show(row, data))
    return Exit.OK


def rendered_with(row: Row, cfg: Config) -> str:
    """Which config made this request, against the one in force (digests: `sha256sum`)."""
    if not row.config:
        return "unknown (queued by an older relay)"
    if row.config == cfg.digest:
        return f"config {row.config} (the config in force)"
    again = (
        "`queue retry` renders it again from the kept mail"
        if row.inbound is not None
        else "no mail kept: `queue retry` sends it as stored"
    )
    return f"config {row.config}; the config in force is {cfg.digest}: {again}"


def _envelope_sender(row: Row, spool: SpoolAdmin, cfg: Config) -> str:
    """The return path the relay sends (or sent) this message with: the reply address tagged
    for it (provider.reply_tags), as delivery tags it; the HTTP API carries no mail."""
    key = spool.reply_key() if cfg.provider.reply_tags and row.via != "http" else None
    if not key or not row.upstream_from:
        return row.upstream_from
    return ids.tagged(row.upstream_from, ids.reply_tag(key, row.id))


def _phone_status(s: dict[str, Any]) -> dict[str, Any]:
    status = int(s["status"])
    return {
        "phone": s["phone"], "status": status, "meaning": provider_errors.status_meaning(status),
        "err": s["err"], "changed": _iso(float(s["changed"])), "checked": _iso(float(s["checked"])),
    }  # fmt: skip


def _part(p: dict[str, Any]) -> dict[str, Any]:
    """One SMPP part: its provider message id and what its receipt said (none yet: null)."""
    status = p["status"]
    return {
        "phone": p["phone"], "part": p["part"], "message_id": p["message_id"], "status": status,
        "meaning": "no receipt yet" if status is None else provider_errors.status_meaning(int(status)),
        "err": p["err"], "changed": None if p["changed"] is None else _iso(float(p["changed"])),
    }  # fmt: skip


def _show(row: Row, data: dict[str, Any]) -> str:
    """`queue show` for a person: one value a line, texts indented, replies as a table, the
    provider mail decoded (password shown as ***)."""
    tables = ("message", "text", "provider_replies", "delivery", "smpp_parts")
    plain = {k: v for k, v in data.items() if k not in tables}
    lines = []
    for key, value in plain.items():
        shown = ", ".join(str(v) for v in value) if isinstance(value, list) else value
        lines.append(f"{key + ':':<14}{'-' if shown in (None, '') else shown}")
    lines.append("text:")
    lines += ["    " + line for t in row.texts for line in t.split("\n")]
    replies = data["provider_replies"]
    lines.append("provider replies:" + ("" if replies else " none"))
    if replies:
        lines.append(f"    {'RECEIVED':<20} {'OUTCOME':<28} LINE")
        lines += [f"    {r['received']:<20} {r['outcome']:<28} {r['line']}" for r in replies]
    delivery = data["delivery"]
    if delivery:
        lines.append("delivery (status.php, SMPP receipts):")
        lines.append(f"    {'PHONE':<16} {'STATUS':<34} {'CHANGED':<20} CHECKED")
        for d in delivery:
            status = f"{d['status']} {d['meaning']}"
            lines.append(f"    {d['phone']:<16} {status:<34} {d['changed']:<20} {d['checked']}")
    parts = data["smpp_parts"]
    if parts:
        lines.append("SMPP parts:")
        lines.append(f"    {'PHONE':<16} {'PART':<5} {'MESSAGE ID':<24} {'RECEIPT':<34} CHANGED")
        for p in parts:
            receipt = p["meaning"] if p["status"] is None else f"{p['status']} {p['meaning']}"
            changed = p["changed"] or "-"
            lines.append(f"    {p['phone']:<16} {p['part']:<5} {p['message_id']:<24} {receipt:<34} {changed}")
    if row.masked:
        lines.append("provider mail (password shown as ***):")
        lines += ["    " + line for line in mime.readable(row.message).rstrip("\n").split("\n")]
    else:
        lines.append("provider mail: (kept credentials: not shown)")
    return "\n".join(lines)


def cmd_stats(args: argparse.Namespace) -> int:
    stats = _using(args, lambda spool: spool.stats())
    counts = {s.value: stats.counts.get(s, 0) for s in State}
    oldest, control = stats.oldest_pending, stats.control
    paused = float(control.get("paused_until", "0")) > time.time()
    data = {"states": counts, "total": sum(counts.values()),
            "oldest_pending_age_s": None if oldest is None else round(time.time() - oldest, 1),
            "paused": control.get("pause_reason") if paused else None,
            "paused_until": _iso(float(control["paused_until"])) if paused else None,
            "storm_alerts": {s.value: n for s, n in stats.alerts.items()}}  # fmt: skip
    if args.json:
        print(json.dumps(data, indent=2))
        return Exit.OK
    width = max(len(s) for s in counts) + 1
    for state, n in counts.items():
        print(f"{state:<{width}} {n}")
    print(f"{'total':<{width}} {data['total']}")
    if oldest is not None:
        print(f"oldest pending: {data['oldest_pending_age_s']} s")
    if stats.alerts:  # storm-controlled routes: what became of their alerts
        print(
            "storm alerts: "
            + ", ".join(f"{s.value} {n}" for s, n in sorted(stats.alerts.items(), key=lambda kv: kv[0].value))
        )
    if paused:
        print(f"DELIVERY PAUSED until {data['paused_until']}: {data['paused']}")
        print("  (fix it, then `smsc-relay queue resume` or SIGHUP)")
    return Exit.OK


def cmd_queue_resume(args: argparse.Namespace) -> int:
    reason = _using(args, lambda spool: spool.resume())
    print(f"delivery resumed (was paused: {reason})" if reason else "delivery was not paused")
    return Exit.OK
