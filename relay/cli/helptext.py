"""`--help` of every subcommand ends with examples to copy (tests/test_cli_help.py holds to it)."""

from __future__ import annotations

import argparse
from typing import Any


def examples(text: str) -> dict[str, Any]:
    """add_parser's keywords for an epilog of examples, printed as written."""
    return {
        "epilog": "examples:\n" + text.strip("\n"),
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }
