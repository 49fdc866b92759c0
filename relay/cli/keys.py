"""Key material: `dkim-keygen` (a DKIM key for provider mail) and `passwd` (an SMTP AUTH user)."""

from __future__ import annotations

import argparse
import getpass
import subprocess
import sys
from pathlib import Path
from typing import Any

from relay.cli.helptext import examples
from relay.errors import Exit


def add_commands(sub: Any) -> None:
    p = sub.add_parser("dkim-keygen", help="make a DKIM key for provider mail and print its DNS record",
                       **examples("""
  smsc-relay dkim-keygen --domain relay.example.com --key /etc/smsc-relay/dkim.pem
  smsc-relay dkim-keygen --domain relay.example.com --selector smsc2 --key dkim2.pem   a 2nd key
"""))  # fmt: skip
    p.add_argument("--domain", required=True, help="the d= domain (yours, e.g. relay.example.com)")
    p.add_argument("--selector", default="smsc", help="the s= selector (default smsc)")
    p.add_argument("--key", required=True, type=Path, help="where to write the private key (PEM, 0600)")
    p.set_defaults(func=cmd_dkim_keygen)

    p = sub.add_parser("passwd", help="print a users_file line for SMTP AUTH (reads the password)",
                       **examples("""
  smsc-relay passwd zabbix >> /etc/smsc-relay/users    asks for the password
  printf '%s\\n' "$PW" | smsc-relay passwd zabbix       from a script (stdin no terminal)"""))  # fmt: skip
    p.add_argument("user")
    p.set_defaults(func=cmd_passwd)


def cmd_dkim_keygen(args: argparse.Namespace) -> int:
    from relay.delivery import dkim  # dkimpy only for this command

    try:
        record = dkim.keygen(args.key, domain=args.domain, selector=args.selector)
    except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
        print(f"smsc-relay: {exc}", file=sys.stderr)
        return Exit.FAILURE
    print(f"private key written to {args.key} (mode 0600). Publish this DNS record:\n{record}")
    print(
        f"Then set provider.dkim: {{domain: {args.domain}, selector: {args.selector}, key_file: {args.key}}}"
    )
    return Exit.OK


def cmd_passwd(args: argparse.Namespace) -> int:
    from relay.smtp.auth import hash_password

    if ":" in args.user or not args.user.isprintable():
        print("smsc-relay: a user name may not contain ':' or control characters", file=sys.stderr)
        return Exit.USAGE
    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    if not password:
        print("smsc-relay: empty password", file=sys.stderr)
        return Exit.USAGE
    print(f"{args.user}:{hash_password(password)}")
    return Exit.OK
