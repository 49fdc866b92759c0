"""Daemon subcommands: serve, and queue/stats which read the spool safely while it runs."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from relay import config as config_mod
from relay import stormstore
from relay.model import State
from relay.outcomes import REPLIES_SCHEMA
from relay.spool import SCHEMA, STORM_SCHEMA, Row, connect

EX_NOTFOUND = 1


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("serve", parents=[common], help="run the relay in the foreground (logs to stderr)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=cmd_serve)

    q = sub.add_parser("queue", parents=[common], help="list, show, retry or drop spooled messages")
    qs = q.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = qs.add_parser("list", parents=[common], help="messages, newest first")
    p.add_argument("--state", choices=[s.value for s in State], help="only this state")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_queue_list)
    for action, helptext in (("show", "one message in full (password masked)"),
                             ("retry", "send again now (deferred, failed or expired)"),
                             ("drop", "delete from the spool")):  # fmt: skip
        p = qs.add_parser(action, parents=[common], help=helptext)
        p.add_argument("id")
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=cmd_queue_one)

    p = qs.add_parser("alerts", parents=[common], help="storm routes' alerts: held, sent, repeats, flaps")
    p.add_argument("--state", choices=["held", "sent", "repeat", "cancelled"], help="only this state")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_queue_alerts)

    p = qs.add_parser("resume", parents=[common], help="resume delivery paused by a provider error")
    p.set_defaults(func=cmd_queue_resume)

    p = sub.add_parser("dkim-keygen", help="make a DKIM key for provider mail and print its DNS record")
    p.add_argument("--domain", required=True, help="the d= domain (yours, e.g. relay.example.com)")
    p.add_argument("--selector", default="smsc", help="the s= selector (default smsc)")
    p.add_argument("--key", required=True, type=Path, help="where to write the private key (PEM, 0600)")
    p.set_defaults(func=cmd_dkim_keygen)

    p = sub.add_parser("passwd", help="print a users_file line for SMTP AUTH (reads the password)")
    p.add_argument("user")
    p.set_defaults(func=cmd_passwd)

    p = sub.add_parser("stats", parents=[common], help="message counts by state")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stats)


def cmd_serve(args: argparse.Namespace) -> int:
    from relay import daemon

    daemon.setup_logging(args.log_level)
    config_mod.load(args.config)  # a broken config exits 78 before anything starts
    return asyncio.run(daemon.amain(Path(args.config)))


def _open(args: argparse.Namespace) -> sqlite3.Connection:
    cfg = config_mod.load(args.config)
    if not cfg.spool.path.exists():
        raise SystemExit(f"smsc-relay: no spool at {cfg.spool.path} (has the relay run yet?)")
    _become_owner(cfg.spool.path)
    conn = connect(cfg.spool.path)
    conn.executescript(SCHEMA + REPLIES_SCHEMA + STORM_SCHEMA)  # an older spool lacks newer tables
    return conn


def _become_owner(path: Path) -> None:
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
        "mode": row.mode,
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
    if full:
        data["message"] = row.message.decode("ascii") if row.masked else "(kept credentials: not shown)"
    return data


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def cmd_queue_list(args: argparse.Namespace) -> int:
    conn = _open(args)
    sql, params = "SELECT * FROM messages", []
    if args.state:
        sql, params = sql + " WHERE state = ?", [args.state]
    rows = [
        Row.from_db(r) for r in conn.execute(sql + " ORDER BY created DESC LIMIT ?", [*params, args.limit])
    ]
    if args.json:
        print(json.dumps([as_json(r) for r in rows], ensure_ascii=False, indent=2))
        return 0
    print(f"{'ID':<24} {'STATE':<9} {'ATT':>3} {'CREATED':<20} {'ROUTE':<12} PHONES / LAST ERROR")
    for r in rows:
        tail = ",".join(r.phones) or r.mode
        print(f"{r.id:<24} {r.state.value:<9} {r.attempts:>3} {_iso(r.created):<20} {r.route:<12} {tail}")
        if r.last_error:
            print(f"{'':<24} {r.last_error}")
    return 0


def cmd_queue_alerts(args: argparse.Namespace) -> int:
    conn = _open(args)
    alerts = stormstore.list_alerts(conn, limit=args.limit, state=args.state)
    for a in alerts:
        for key in ("received", "due", "updated"):
            a[key] = _iso(float(a[key]))  # type: ignore[arg-type]
    if args.json:
        print(json.dumps(alerts, ensure_ascii=False, indent=2))
        return 0
    print(f"{'ID':<24} {'STATE':<9} {'KIND':<8} {'RECEIVED':<20} {'ROUTE':<12} SMS / TEXT")
    for a in alerts:
        text = " ".join(str(a["text"]).split())
        sms = a["message_id"] or (f"due {a['due']}" if a["state"] == "held" else a["note"])
        print(f"{a['id']:<24} {a['state']:<9} {a['kind']:<8} {a['received']:<20} {a['route']:<12} {sms}")
        print(f"{'':<24} {text[:100]}")
    return 0


def cmd_queue_one(args: argparse.Namespace) -> int:
    conn = _open(args)
    found = conn.execute("SELECT * FROM messages WHERE id = ?", (args.id,)).fetchone()
    if found is None:
        print(f"smsc-relay: no message {args.id}", file=sys.stderr)
        return EX_NOTFOUND
    row = Row.from_db(found)
    if args.action == "show":
        data = as_json(row, full=True)
        data["provider_replies"] = [
            {"received": _iso(r["received"]), "line": r["line"], "outcome": r["outcome"]}
            for r in conn.execute("SELECT * FROM replies WHERE relay_id = ? ORDER BY n", (args.id,))
        ]
        print(json.dumps(data, ensure_ascii=False, indent=2) if args.json else _show(data))
        return 0
    if args.action == "retry":
        if row.state in (State.SENDING, State.QUEUED):
            print(f"smsc-relay: {args.id} is {row.state.value} already", file=sys.stderr)
            return EX_NOTFOUND
        conn.execute(
            "UPDATE messages SET state = ?, next_attempt = ?, updated = ? WHERE id = ?",
            (State.QUEUED.value, time.time(), time.time(), args.id),
        )
        print(f"{args.id}: queued again (a running relay picks it up within 5 s)")
        return 0
    if row.state is State.SENDING:
        print(f"smsc-relay: {args.id} is being sent right now; try again in a moment", file=sys.stderr)
        return EX_NOTFOUND
    conn.execute("DELETE FROM messages WHERE id = ?", (args.id,))
    print(f"{args.id}: dropped")
    return 0


def _show(data: dict[str, Any]) -> str:
    lines = [f"{k + ':':<14}{v}" for k, v in data.items() if k != "message"]
    return "\n".join(lines) + "\n\n" + str(data.get("message", ""))


def cmd_stats(args: argparse.Namespace) -> int:
    conn = _open(args)
    counts = {s.value: 0 for s in State}
    for state, n in conn.execute("SELECT state, COUNT(*) FROM messages GROUP BY state"):
        counts[state] = n
    oldest = conn.execute(
        "SELECT MIN(created) FROM messages WHERE state IN ('queued', 'deferred', 'sending')"
    ).fetchone()[0]
    control = dict(conn.execute("SELECT key, value FROM control").fetchall())
    paused = float(control.get("paused_until", "0")) > time.time()
    data = {"states": counts, "total": sum(counts.values()),
            "oldest_pending_age_s": None if oldest is None else round(time.time() - oldest, 1),
            "paused": control.get("pause_reason") if paused else None,
            "paused_until": _iso(float(control["paused_until"])) if paused else None,
            "storm_alerts": stormstore.counts(conn)}  # fmt: skip
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        for state, n in counts.items():
            print(f"{state:<10} {n}")
        print(f"{'total':<10} {data['total']}")
        if oldest is not None:
            print(f"oldest pending: {data['oldest_pending_age_s']} s")
        alerts = data["storm_alerts"]
        if isinstance(alerts, dict) and alerts:  # storm-controlled routes: what became of their alerts
            print("storm alerts: " + ", ".join(f"{state} {n}" for state, n in sorted(alerts.items())))
        if paused:
            print(f"DELIVERY PAUSED until {data['paused_until']}: {data['paused']}")
            print("  (fix it, then `smsc-relay queue resume` or SIGHUP)")
    return 0


def cmd_queue_resume(args: argparse.Namespace) -> int:
    conn = _open(args)
    reason = dict(conn.execute("SELECT key, value FROM control").fetchall()).get("pause_reason")
    conn.execute("DELETE FROM control WHERE key IN ('paused_until', 'pause_reason')")
    print(f"delivery resumed (was paused: {reason})" if reason else "delivery was not paused")
    return 0


def cmd_dkim_keygen(args: argparse.Namespace) -> int:
    from relay import dkimsig

    try:
        record = dkimsig.keygen(args.key, domain=args.domain, selector=args.selector)
    except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
        print(f"smsc-relay: {exc}", file=sys.stderr)
        return 1
    print(f"private key written to {args.key} (mode 0600). Publish this DNS record:\n{record}")
    print(
        f"Then set provider.dkim: {{domain: {args.domain}, selector: {args.selector}, key_file: {args.key}}}"
    )
    return 0


def cmd_passwd(args: argparse.Namespace) -> int:
    from relay.auth import hash_password

    if ":" in args.user or not args.user.isprintable():
        print("smsc-relay: a user name may not contain ':' or control characters", file=sys.stderr)
        return 2
    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    if not password:
        print("smsc-relay: empty password", file=sys.stderr)
        return 2
    print(f"{args.user}:{hash_password(password)}")
    return 0
