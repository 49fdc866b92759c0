"""What the spool's SQL (messages.py, replies.py, alerts.py, tracking.py) needs of a connection.

One text of each statement serves both engines: SQLite's own connection, and a PostgreSQL
connection behind relay/spool/postgres.py's adapter, which turns the `?` marks into psycopg's
and gives rows that read like sqlite3.Row (by position and by name). The SQL keeps to what both
dialects mean the same way: `ON CONFLICT ... DO UPDATE` rather than `INSERT OR REPLACE`,
`RETURNING` rather than `lastrowid`, 0/1 integers rather than booleans.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Db(Protocol):
    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...
    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> Cursor: ...
