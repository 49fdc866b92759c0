"""smsc-relay(8) as `make install` builds it (scripts/manpage.py): groff renders it without a
warning, and it names every command, subcommand and option the argument parser has."""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from relay.cli.main import _parser

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "manpage.py"


def _groff() -> str:
    groff = shutil.which("groff")
    if groff is None:  # scripts/test-deps.sh installs it: no test is skipped for want of a package
        pytest.fail("groff is missing: ./scripts/test-deps.sh installs it (apt-get install groff-base)")
    return groff


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("manpage", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The test's own walk of the parser (not the generator's): every command path."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name)
                yield from _walk(sub, (*path, name))


def _subparser(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> argparse.ArgumentParser:
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def _text(page: str, groff: str) -> str:
    """The page as a reader sees it, one space for any run of blanks, hyphens as typed."""
    done = subprocess.run([groff, "-man", "-Tutf8", "-P-cbou"], input=page, capture_output=True,
                          text=True, check=True, timeout=60)  # fmt: skip
    return " ".join(done.stdout.replace("\u2010", "-").replace("\u2212", "-").split())


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("man") / "smsc-relay.8"
    # As scripts/install.sh runs it: a script of its own, importing the installed relay.
    subprocess.run([sys.executable, str(SCRIPT), str(out)], check=True, timeout=60, cwd=ROOT)
    return out.read_text(encoding="ascii")


def test_groff_renders_it_without_a_warning(page: str) -> None:
    done = subprocess.run([_groff(), "-man", "-Tutf8", "-ww", "-z"], input=page, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert page.startswith('.TH SMSC\\-RELAY 8 "')
    man = shutil.which("man")
    if man:  # man-db, where it is installed, as `man -l` shows the page
        seen = subprocess.run([man, "--warnings", "-l", "-"], input=page, capture_output=True, text=True,
                              timeout=60, env={"PATH": "/usr/bin:/bin", "MANWIDTH": "80"})  # fmt: skip
        assert seen.returncode == 0 and "warning" not in seen.stderr, seen.stderr
        assert "smsc-relay queue list" in seen.stdout.replace("\u2010", "-").replace("\u2212", "-")


def test_it_names_every_command_and_option_of_the_parser(page: str) -> None:
    parser = _parser()
    text = _text(page, _groff())
    paths = list(_walk(parser))
    assert ("queue", "list") in paths and ("spool", "migrate") in paths  # the walk sees nested ones
    for path in paths:
        name = " ".join(path)
        assert f'.SS "{name}"'.replace("-", "\\-") in page, f"no section for {name}"
        assert f"smsc-relay {name}" in text, f"no synopsis for {name}"
        sub = _subparser(parser, path)
        for action in sub._actions:
            for option in action.option_strings:
                assert option in text, f"{name}: {option} is not in the page"
            if action.help and action.help is not argparse.SUPPRESS and "%" not in action.help:
                assert " ".join(action.help.split()) in text, f"{name}: help {action.help!r}"
        if sub.epilog:
            for example in sub.epilog.replace("%(prog)s", sub.prog).strip().splitlines():
                assert " ".join(example.split()) in text, f"{name}: epilog line {example!r}"


def test_a_new_subcommand_is_in_the_page_without_touching_the_generator() -> None:
    parser = _parser()
    queue = _subparser(parser, ("queue",))
    actions = next(a for a in queue._actions if isinstance(a, argparse._SubParsersAction))
    extra = actions.add_parser("frobnicate", help="a command the generator has never heard of",
                               epilog="examples:\n  smsc-relay queue frobnicate --hard r1")  # fmt: skip
    extra.add_argument("--hard", action="store_true", help="frobnicate hard")
    page = _generator().manpage(parser)
    text = _text(page, _groff())
    for said in ("smsc-relay queue frobnicate [--hard]", "a command the generator has never heard of",
                 "--hard frobnicate hard", "smsc-relay queue frobnicate --hard r1"):  # fmt: skip
        assert said in text


def test_the_exit_codes_are_the_clis() -> None:
    from relay.errors import Exit

    page = _generator().manpage(_parser())
    section = page[page.index(".SH EXIT STATUS") : page.index(".SH ENVIRONMENT")]
    assert [int(c) for c in re.findall(r"^\.TP\n(\d+)$", section, re.MULTILINE)] == sorted(Exit)
    assert "check/serve: the config is broken" in section  # the comment in relay/errors.py
