"""`queue retry|drop|hold|release ID... | --state STATE | --all`: changes to the queue that cannot
cost money or lose a message by mistake. Each says what it will do and to how many, asks unless
`--yes`, and a retry never sends again what the provider already took without `--force`, which
says the cost."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from relay.cli import rerender
from relay.cli.queue import open_admin
from relay.config.load import load
from relay.config.schema import Config
from relay.errors import Exit
from relay.model import State
from relay.spool.interface import Row

if TYPE_CHECKING:
    from relay.spool.admin import SpoolAdmin  # psycopg: not for `serve` (relay/cli/queue.py)

# The provider took these (or may have): sending again is a second, paid SMS.
TAKEN = (State.SENT, State.CONFIRMED, State.DELIVERED, State.UNDELIVERED, State.UNCONFIRMED,
         State.STATUS_UNKNOWN, State.DUPLICATE, State.DRY_RUN)  # fmt: skip
# What a retry may queue again without a second thought: it never reached the provider.
RETRYABLE = (State.DEFERRED, State.FAILED, State.EXPIRED, State.REPEAT, State.HELD)
BUSY = (State.QUEUED, State.SENDING)  # a relay has it now, or will within seconds
MOST = 100_000  # --all and --state look at this many messages at the most


@dataclass(frozen=True, slots=True)
class Change:
    helptext: str
    states: tuple[State, ...]  # what it applies to (retry adds TAKEN with --force)
    done: str  # what the summary line says of the ones it changed
    examples: str


CHANGES = {
    "retry": Change(
        "send again now: deferred, failed, expired, held (sent ones: --force)",
        RETRYABLE,
        "queued again (a running relay picks them up within seconds)",
        """examples:
  smsc-relay queue retry r1a2b3c4-5d6e          one message, after a question
  smsc-relay queue retry --state deferred --yes every deferred message, from a script
  smsc-relay queue retry --force r1a2b3c4-5d6e  send again what the provider already took (costs)""",
    ),
    "drop": Change(
        "delete from the spool",
        tuple(s for s in State if s is not State.SENDING),
        "dropped",
        """examples:
  smsc-relay queue drop r1a2b3c4-5d6e           one message, after a question
  smsc-relay queue drop --state failed --yes    forget the failed ones, from a script""",
    ),
    "hold": Change(
        "keep waiting messages in the spool, unsent, until `queue release`",
        (State.QUEUED, State.DEFERRED),
        "held (no relay sends them until `queue release`)",
        """examples:
  smsc-relay queue hold --all --yes             stop sending: every waiting message stays put
  smsc-relay queue hold r1a2b3c4-5d6e           one message""",
    ),
    "release": Change(
        "queue held messages again",
        (State.HELD,),
        "released (a running relay sends them within seconds)",
        """examples:
  smsc-relay queue release --all --yes          everything held goes out again
  smsc-relay queue release r1a2b3c4-5d6e        one message""",
    ),
}


def add_commands(qs: Any, common: argparse.ArgumentParser) -> None:
    for action, change in CHANGES.items():
        p = qs.add_parser(action, parents=[common], help=change.helptext, epilog=change.examples,
                          formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
        p.add_argument("ids", nargs="*", metavar="ID", help="message ids (`queue list` shows them)")
        p.add_argument("--state", choices=[s.value for s in State], help="every message in this state")
        p.add_argument("--all", action="store_true", help="every message in the spool it applies to")
        p.add_argument("--yes", "-y", action="store_true", help="do it without asking (scripts)")
        if action == "retry":
            p.add_argument("--force", action="store_true",
                           help="also send again what the provider took: a second, paid SMS")  # fmt: skip
        if action in ("retry", "release"):
            p.add_argument("--as-stored", action="store_true",
                           help="send the stored request, not its mail rendered again")  # fmt: skip
        p.set_defaults(func=cmd_change, action=action, force=False, as_stored=False)


def cmd_change(args: argparse.Namespace) -> int:
    chosen = sum((bool(args.ids), args.state is not None, args.all))
    if chosen != 1:
        print("smsc-relay: name message ids, or --state STATE, or --all (one of them)", file=sys.stderr)
        return Exit.USAGE
    cfg = load(args.config, secrets=False)
    with contextlib.closing(open_admin(cfg.spool)) as spool:
        rows, missing = _select(spool, args)
        for relay_id in missing:
            print(f"smsc-relay: no message {relay_id}", file=sys.stderr)
        plan, skipped = _plan(rows, args)
        renderings: dict[str, Row] = {}
        if args.action in ("retry", "release") and not args.as_stored:
            plan, refused = _render_again(spool, plan, cfg, renderings)
            skipped += refused
        for row, why in skipped:
            print(f"skipped {row.id} ({row.state.value}): {why}", file=sys.stderr)
        if not plan:
            print(f"nothing to {args.action}")
            return Exit.FAILURE if missing or skipped else Exit.OK
        print(_summary(args.action, plan))
        for row in plan:
            if row.id in renderings:
                print(f"  {row.id}: rendered again under config {cfg.digest} (was {row.config or 'unknown'}):"
                      f" {rerender.changes(row, renderings[row.id])}")  # fmt: skip
        if not args.yes and not _confirmed(args.action, len(plan)):
            print("nothing changed")
            return Exit.FAILURE
        change = CHANGES[args.action]
        states = change.states + (TAKEN if args.force else ())
        if args.action in ("retry", "release"):
            done = [row for row in plan if spool.retry(row.id, states, renderings.get(row.id))]
        else:
            apply: Callable[[str, tuple[State, ...]], bool] = getattr(spool, args.action)
            done = [row for row in plan if apply(row.id, states)]
        gone = len(plan) - len(done)
        print(
            f"{len(done)} {change.done}"
            + (f"; {gone} changed state meanwhile and were left alone" if gone else "")
        )
        return Exit.OK if not (gone or missing or skipped) else Exit.FAILURE


def _select(spool: SpoolAdmin, args: argparse.Namespace) -> tuple[list[Row], list[str]]:
    if args.ids:
        found = {relay_id: spool.get(relay_id) for relay_id in dict.fromkeys(args.ids)}
        return [r for r in found.values() if r is not None], [i for i, r in found.items() if r is None]
    return spool.newest(MOST, State(args.state) if args.state else None), []


def _plan(rows: Sequence[Row], args: argparse.Namespace) -> tuple[list[Row], list[tuple[Row, str]]]:
    plan: list[Row] = []
    skipped: list[tuple[Row, str]] = []
    applies = CHANGES[args.action].states
    for row in rows:
        if row.state is State.SENDING:
            skipped.append((row, "a relay has it now"))
        elif args.action == "retry" and row.state in TAKEN and not args.force:
            skipped.append((row, _why_not(row)))
        elif row.state not in applies and not (args.action == "retry" and row.state in TAKEN):
            if args.all:
                continue  # --all: every message it applies to, the others are not news
            skipped.append((row, _not_for(args.action, row)))
        else:
            plan.append(row)
    return plan, skipped


def _render_again(
    spool: SpoolAdmin, plan: list[Row], cfg: Config, renderings: dict[str, Row]
) -> tuple[list[Row], list[tuple[Row, str]]]:
    """Each message rendered under another config, rendered again under this one (into
    `renderings`); those it cannot be are not retried."""
    kept: list[Row] = []
    refused: list[tuple[Row, str]] = []
    for row in plan:
        full = spool.get(row.id) if row.config != cfg.digest and row.inbound is None else row
        try:
            new = rerender.again(full or row, cfg)
        except rerender.CannotRender as exc:
            refused.append((row, f"{exc}; --as-stored sends the stored request"))
            continue
        if new is not None:
            renderings[row.id] = new
        kept.append(row)
    return kept, refused


def _not_for(action: str, row: Row) -> str:
    if row.state is State.QUEUED:
        return "queued already"
    if action == "hold":
        return "only a waiting message (queued, deferred) can be held"
    if action == "release":
        return "not held"
    return f"a {row.state.value} message is not retried"


def _why_not(row: Row) -> str:
    if row.state is State.DRY_RUN:
        return "a dry run wrote it to the outbox; retried under a live config it is sent for real (--force)"
    sms = row.sms_count if row.sms_count is not None else row.parts * max(1, len(row.phones))
    cost = f" ({sms} SMS" + (f", cost {row.cost}" if row.cost else "") + ")"
    return f"the provider took it already{cost}; --force sends it again and pays again"


def _summary(action: str, plan: Sequence[Row]) -> str:
    lines = [f"{action} {len(plan)} message(s):"]
    lines += [
        f"  {r.id:<24} {r.state.value:<14} {r.route:<12} {','.join(r.phones) or r.mode.value}"
        for r in plan[:20]
    ]
    if len(plan) > 20:
        lines.append(f"  ... and {len(plan) - 20} more")
    paid = [r for r in plan if r.state in TAKEN]
    if action == "retry" and paid:
        sms = sum(r.sms_count if r.sms_count is not None else r.parts * max(1, len(r.phones)) for r in paid)
        lines.append(f"  {len(paid)} of them the provider took already: about {sms} more SMS to pay for")
    return "\n".join(lines)


def _confirmed(action: str, count: int) -> bool:
    if not sys.stdin.isatty():
        print(
            f"smsc-relay: not asking without a terminal: add --yes to {action} {count} message(s)",
            file=sys.stderr,
        )
        return False
    try:
        return input(f"{action} {count} message(s)? [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False
