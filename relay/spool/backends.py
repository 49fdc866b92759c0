"""The spool the config asks for: a SQLite file, or a PostgreSQL database shared by relays."""

from __future__ import annotations

from typing import TYPE_CHECKING

from relay.config.schema import SpoolConfig
from relay.model import SpoolBackend
from relay.spool.sqlite import SqliteSpool

if TYPE_CHECKING:
    from relay.spool.postgres import PostgresSpool


def make(cfg: SpoolConfig, default_name: str) -> SqliteSpool | PostgresSpool:
    """relay/spool/interface.make. psycopg is imported only by a relay whose spool is PostgreSQL."""
    if cfg.backend is SpoolBackend.POSTGRESQL:
        from relay.spool.postgres import PostgresSpool

        return PostgresSpool(
            cfg.dsn.value,
            relay=cfg.relay_name or default_name,
            lease=cfg.lease,
            outage_reply=cfg.outage_reply,
        )
    return SqliteSpool(cfg.path)


def describe(cfg: SpoolConfig, spool: object) -> str:
    """relay/spool/interface.describe."""
    if cfg.backend is SpoolBackend.POSTGRESQL:
        return f"postgresql relay={getattr(spool, 'relay', '?')}"
    return str(cfg.path)
