"""Every subcommand's --help ends with examples an operator can copy (issue 21)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from relay.cli import main as cli


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))
            return
    yield path


def test_every_subcommand_has_examples() -> None:
    parser = cli._parser()
    found = list(_commands(parser))
    assert len(found) >= 18 and ("queue", "hold") in found and ("check",) in found
    missing = []
    for path in found:
        sub = parser
        for name in path:
            sub = next(a for a in sub._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
        sub.format_help()  # renders (a stray % in a help text would raise here)
        epilog = sub.epilog or ""
        if "examples:" not in epilog or f"smsc-relay {' '.join(path)}" not in epilog:
            missing.append(" ".join(path))
    assert not missing, f"--help without an example of itself: {missing}"
