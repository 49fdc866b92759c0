"""Daemon subcommands: serve | queue | stats."""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Registered by relay.cli; filled in by the daemon."""
