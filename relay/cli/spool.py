"""`smsc-relay spool migrate --from FILE`: move a SQLite spool into the config's PostgreSQL one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from relay.cli.helptext import examples
from relay.config.load import load
from relay.errors import Exit, SpoolError
from relay.model import SpoolBackend


def add_command(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("spool", parents=[common], help="spool maintenance: migrate SQLite to PostgreSQL")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    m = actions.add_parser(
        "migrate", parents=[common],
        help="copy a SQLite spool into the config's PostgreSQL spool (stop the old relay first)",
        **examples("""
  systemctl stop smsc-relay
  smsc-relay spool migrate --from /var/lib/smsc-relay/spool.db -c /etc/smsc-relay/relay-pg.yaml
(docs/ha.md: two relays sharing one PostgreSQL spool)"""),
    )  # fmt: skip
    m.add_argument("--from", dest="source", type=Path, required=True, help="the SQLite spool file")
    m.add_argument(
        "--force", action="store_true", help="copy even while a relay serves the file (it may change)"
    )
    m.set_defaults(func=cmd_migrate)


def cmd_migrate(args: argparse.Namespace) -> int:
    from relay.spool import admin  # psycopg: only for this command, never for `serve`

    cfg = load(args.config, secrets=False)
    if cfg.spool.backend is not SpoolBackend.POSTGRESQL:
        print("smsc-relay: the config's spool is not PostgreSQL (spool.backend: postgresql)", file=sys.stderr)
        return Exit.USAGE
    if not args.source.is_file():
        print(f"smsc-relay: no SQLite spool at {args.source}", file=sys.stderr)
        return Exit.USAGE
    lock = admin.serving(args.source)
    if lock is not None and not args.force:
        print(f"smsc-relay: a relay serves {args.source} (it holds {lock}): stop it first "
              "(systemctl stop smsc-relay), so nothing changes while it is copied; --force copies anyway",
              file=sys.stderr)  # fmt: skip
        return Exit.FAILURE
    try:
        done = admin.copy_to_postgres(args.source, cfg.spool.dsn.value)
    except SpoolError as exc:
        print(f"smsc-relay: nothing copied: {exc}", file=sys.stderr)
        return Exit.FAILURE
    rows = ", ".join(f"{table} {n}" for table, n in done.counts.items())
    print(f"copied {args.source} into PostgreSQL: {rows}")
    if done.requeued:
        print(f"{done.requeued} message(s) left sending by the old relay: queued again, marked uncertain")
    return Exit.OK
