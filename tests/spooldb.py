"""The spool's tables as the tests read and set them: the one test helper that names the schema
(its tables, columns and SQL), so that a schema change touches the tests here only.

The async functions take a relay (its spool) or a spool, and run through the spool's own writer
on either backend: its connection takes `?` marks on SQLite and on PostgreSQL alike
(relay/spool/db.py). The `..._on` functions run on a connection the test holds itself (a
SpoolAdmin's, or a SQLite file's). Rows come in the table's own order unless `order` names a
column, as the statements they replace had no ORDER BY.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from relay.spool.db import Db

T = TypeVar("T")
Table = Literal["messages", "replies", "alerts", "phone_sends", "phone_status", "smpp_parts", "smpp_inbound"]

# The column each table keeps its age in: what `age` moves back.
AGE_COLUMN: dict[str, str] = {"messages": "created", "replies": "received"}

# SQLite's own limit of pages per database file (its default max_page_count).
SQLITE_MAX_PAGES = 1073741823


@runtime_checkable
class Writes(Protocol):
    """A spool's raw access (relay/spool/base.py, either engine)."""

    async def write(self, op: Callable[[Any], T], *, durable: bool = True, shared: bool = False) -> T: ...


def spool_of(target: object) -> Writes:
    """The spool of a relay (a Daemon), or the spool itself."""
    spool = getattr(target, "spool", target)
    assert isinstance(spool, Writes), f"{spool!r} has no raw write"
    return spool


def _where(equal: Mapping[str, object]) -> tuple[str, list[object]]:
    """` WHERE a = ? AND b IN (?, ?)` for {a: 1, b: [2, 3]}, and its parameters."""
    terms: list[str] = []
    params: list[object] = []
    for column, value in equal.items():
        if isinstance(value, list | tuple):
            assert value, f"no values for {column}"
            terms.append(f"{column} IN ({', '.join('?' * len(value))})")
            params.extend(value)
        else:
            terms.append(f"{column} = ?")
            params.append(value)
    return (" WHERE " + " AND ".join(terms) if terms else ""), params


# ---- on a connection the test holds ------------------------------------------------------------
def select_on(
    conn: Db, table: Table, *columns: str, order: str | None = None, **equal: object
) -> list[tuple[Any, ...]]:
    """The named columns of the rows whose columns equal `equal` (a list: any of its values)."""
    where, params = _where(equal)
    by = f" ORDER BY {order}" if order else ""
    return [tuple(r) for r in conn.execute(f"SELECT {', '.join(columns)} FROM {table}{where}{by}", params)]


def rows_on(conn: Db, table: Table, **equal: object) -> list[dict[str, Any]]:
    """Whole rows, by column name."""
    where, params = _where(equal)
    return [dict(r) for r in conn.execute(f"SELECT * FROM {table}{where}", params).fetchall()]


def count_on(conn: Db, table: Table, **equal: object) -> int:
    where, params = _where(equal)
    return int(conn.execute(f"SELECT COUNT(*) FROM {table}{where}", params).fetchone()[0])


def update_on(conn: Db, table: Table, where: Mapping[str, object] | None = None, **columns: object) -> None:
    """Set `columns` on the rows `where` picks (every row without it)."""
    assert columns, "nothing to set"
    clause, params = _where(where or {})
    sets = ", ".join(f"{c} = ?" for c in columns)
    conn.execute(f"UPDATE {table} SET {sets}{clause}", [*columns.values(), *params])


def age_on(conn: Db, table: Literal["messages", "replies"], seconds: float, **columns: object) -> None:
    """Every row of `table` made `seconds` older (its time column moved back), and `columns` set,
    in one statement."""
    age = AGE_COLUMN[table]
    sets = "".join(f", {c} = ?" for c in columns)
    conn.execute(f"UPDATE {table} SET {age} = {age} - ?{sets}", [seconds, *columns.values()])


# ---- through a relay's (or a spool's) writer: either backend ---------------------------------
async def select(
    target: object, table: Table, *columns: str, order: str | None = None, **equal: object
) -> list[tuple[Any, ...]]:
    return await spool_of(target).write(lambda c: select_on(c, table, *columns, order=order, **equal))


async def rows(target: object, table: Table, **equal: object) -> list[dict[str, Any]]:
    return await spool_of(target).write(lambda c: rows_on(c, table, **equal))


async def count(target: object, table: Table, **equal: object) -> int:
    return await spool_of(target).write(lambda c: count_on(c, table, **equal))


async def update(
    target: object, table: Table, where: Mapping[str, object] | None = None, **columns: object
) -> None:
    await spool_of(target).write(lambda c: update_on(c, table, where, **columns))


async def age(
    target: object, table: Literal["messages", "replies"], seconds: float, **columns: object
) -> None:
    await spool_of(target).write(lambda c: age_on(c, table, seconds, **columns))


async def states(target: object) -> dict[str, str]:
    """Each message's state, by relay id."""
    return {str(i): str(s) for i, s in await select(target, "messages", "id", "state")}


async def row(target: object) -> dict[str, Any]:
    """The first message row, by column name (the tests that read it have one message)."""
    first: dict[str, Any] = dict(
        await spool_of(target).write(lambda c: c.execute("SELECT * FROM messages").fetchone())
    )
    return first


# ---- SQLite only: a full database file -----------------------------------------------------
async def cap_size(target: object) -> None:
    """Let the SQLite file grow no further than it is (a real SQLITE_FULL once it is full)."""
    spool = spool_of(target)
    pages = int(await spool.write(lambda c: c.execute("PRAGMA page_count").fetchone()[0]))
    await spool.write(lambda c: c.execute(f"PRAGMA max_page_count = {pages}"))


async def uncap_size(target: object) -> None:
    await spool_of(target).write(lambda c: c.execute(f"PRAGMA max_page_count = {SQLITE_MAX_PAGES}"))


FILLER = (
    "INSERT INTO messages (id, state, mode, route, mail_from, rcpt_tos, inbound_id, phones, texts, parts,"
    " encoding, upstream_from, upstream_to, message, masked, created, updated, next_attempt) VALUES"
    " (?, 'confirmed', 'command', 'r', '', '[]', '', '[]', '[]', 1, 'GSM-7', '', '', zeroblob(64), 0, 0, 0, 0)"
)


async def add_filler(target: object, relay_id: str) -> None:
    """A confirmed message row of 64 zero bytes, to fill a capped SQLite file with."""
    await spool_of(target).write(lambda c: c.execute(FILLER, (relay_id,)))
