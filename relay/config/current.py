"""The config in force, in one holder: the daemon replaces it on SIGHUP, and every part reads it
when it acts, so a reload reaches all of them by one path (no part keeps a copy)."""

from __future__ import annotations

from relay.config.schema import Config


class Current:
    __slots__ = ("config",)

    def __init__(self, config: Config) -> None:
        self.config = config
