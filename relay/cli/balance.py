"""`smsc-relay balance [--json]`: the provider account's balance, from balance.php.

Uses the config's login and password (or API key) and its api_url / api_mirrors, over HTTPS,
POST only: the password is never in a URL, and never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from relay.cli.helptext import examples
from relay.config.load import load
from relay.delivery.http import ApiClient
from relay.errors import DeliveryError, Exit
from relay.parsers.api import StatusError


def add_command(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("balance", parents=[common], help="the provider account's balance (HTTP API)",
                       **examples("""
  smsc-relay balance                        84.75 RUB
  smsc-relay balance --json"""))  # fmt: skip
    p.add_argument("--json", action="store_true", help='print {"balance": "84.75", ...}')
    p.set_defaults(func=cmd_balance)


def cmd_balance(args: argparse.Namespace) -> int:
    cfg = load(args.config)
    provider = cfg.provider

    async def ask() -> str:
        client = ApiClient(lambda: provider, lambda: cfg.delivery.timeout, connections=1)
        try:
            return await client.balance()
        finally:
            await client.close()

    try:
        balance = asyncio.run(ask())
    except StatusError as exc:
        hint = " (check provider.login and the password or API key)" if exc.code == 2 else ""
        print(f"smsc-relay: the provider answered ERROR {exc.code}: {exc.description}{hint}", file=sys.stderr)
        return Exit.FAILURE
    except DeliveryError as exc:
        print(f"smsc-relay: cannot ask the provider: {exc.text}", file=sys.stderr)
        return Exit.TEMPFAIL
    low = provider.low_balance
    below = low > 0 and float(balance) < low
    if args.json:
        data = {"balance": balance, "low_balance": low or None, "below_low_balance": below}
        print(json.dumps(data))
    else:
        print(f"balance: {balance}" + (f" (below provider.low_balance {low:g})" if below else ""))
    return Exit.OK
