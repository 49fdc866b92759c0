"""The SMTP AUTH users file: `user:scrypt$...` lines (made by `smsc-relay passwd USER`)."""

from __future__ import annotations

from pathlib import Path


def load_users(path: Path) -> dict[str, str]:
    """user -> stored hash; raises ValueError naming the bad line (never echoing a hash)."""
    users: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, stored = line.partition(":")
        if not sep or not user or not stored.startswith("scrypt$") or stored.count("$") != 5:
            raise ValueError(f"line {number}: expected user:scrypt$... (made by `smsc-relay passwd USER`)")
        users[user] = stored
    return users
