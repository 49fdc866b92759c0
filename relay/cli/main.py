"""Command line: serve | check | render | queue | stats | send-test | balance | spool | dkim-keygen |
passwd (DESIGN.md 6)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from relay import __version__
from relay.cli import balance, check, keys, queue, queue_change, render, route, sendtest, showconfig, spool
from relay.cli.helptext import examples
from relay.config.load import load
from relay.errors import ConfigError, Exit, SpoolError

DEFAULT_CONFIG = "/etc/smsc-relay/relay.yaml"
CONFIG_ENV = "SMSC_RELAY_CONFIG"  # the config file when no -c is given


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "config", None) is None:
        args.config = os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return Exit.USAGE
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return Exit.CONFIG
    except SpoolError as exc:
        print(f"smsc-relay: {exc}", file=sys.stderr)
        return Exit.TEMPFAIL
    except PermissionError as exc:
        print(f"smsc-relay: permission denied: {exc.filename or exc}: {_as_who()}", file=sys.stderr)
        return Exit.NOPERM
    except KeyboardInterrupt:
        return Exit.INTERRUPTED
    except Exception as exc:  # no traceback for an operator; the debug switch shows it
        if os.environ.get("SMSC_RELAY_DEBUG"):
            raise
        print(f"smsc-relay: internal error: {type(exc).__name__}: {exc} (SMSC_RELAY_DEBUG=1 shows where)",
              file=sys.stderr)  # fmt: skip
        return Exit.SOFTWARE


def _as_who() -> str:
    import pwd

    try:
        name = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        name = str(os.geteuid())
    return f"this command runs as {name} (uid {os.geteuid()}); run it as the file's owner or as root"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smsc-relay", description="E-mail to SMS relay for SMS Centre.")
    parser.add_argument("--version", action="version", version=f"smsc-relay {__version__}")
    config_help = f"config file (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG})"
    # -c works before the command, after it, or after `queue ACTION`: the last one given wins
    # (SUPPRESS: a sub-parser that did not see it leaves the value alone).
    parser.add_argument("-c", "--config", default=None, help=config_help)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", default=argparse.SUPPRESS, help=config_help)
    sub = parser.add_subparsers(metavar="COMMAND")

    p = sub.add_parser("serve", parents=[common], help="run the relay in the foreground (logs to stderr)",
                       **examples("""
  smsc-relay serve -c /etc/smsc-relay/relay.yaml     as systemd runs it (contrib/smsc-relay.service)
  smsc-relay serve -c config/relay.example.yaml --log-level DEBUG   a dry run, every decision logged
SIGHUP reloads the config; SIGTERM stops after in-flight sessions and sends finish."""))  # fmt: skip
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=cmd_serve)

    check.add_command(sub, common)
    render.add_command(sub, common)
    route.add_command(sub, common)
    showconfig.add_command(sub, common)
    queue_change.add_commands(queue.add_commands(sub, common), common)
    sendtest.add_command(sub, common)
    balance.add_command(sub, common)
    spool.add_command(sub, common)
    keys.add_commands(sub)
    return parser


def cmd_serve(args: argparse.Namespace) -> int:
    # The daemon (asyncio servers, aiosmtplib, prometheus) loads only for `serve`.
    from relay.daemon import logs, loop
    from relay.daemon.main import amain

    logs.setup_logging(args.log_level)
    load(args.config)  # a broken config exits 78 before anything starts
    return loop.run(amain(Path(args.config)))  # on uvloop when installed
