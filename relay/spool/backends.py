"""The spool the config asks for: a SQLite file, or a PostgreSQL database shared by relays."""

from __future__ import annotations

from relay.config.schema import SpoolConfig
from relay.model import SpoolBackend
from relay.spool.postgres import PostgresSpool
from relay.spool.sqlite import SqliteSpool


def make(cfg: SpoolConfig, default_name: str) -> SqliteSpool | PostgresSpool:
    """`default_name`: this relay's name when spool.relay_name is not set (hostname:port,
    stable across restarts, so a restarted relay takes its own claims back at once)."""
    if cfg.backend is SpoolBackend.POSTGRESQL:
        return PostgresSpool(
            cfg.dsn.value,
            relay=cfg.relay_name or default_name,
            lease=cfg.lease,
            outage_reply=cfg.outage_reply,
        )
    return SqliteSpool(cfg.path)


def describe(cfg: SpoolConfig, spool: SqliteSpool | PostgresSpool) -> str:
    """For the log: where the queue is (never the DSN: it may hold a password)."""
    if isinstance(spool, PostgresSpool):
        return f"postgresql relay={spool.relay}"
    return str(cfg.path)
