"""The one connection interface every storage operation is written against, and its two backends.

An operation is ``async def op(conn: Conn, ...)``, run whole inside one transaction by
``Database.write`` or ``Database.read``. SQL is written once, with ``?`` (positional) or ``:name``
(named) placeholders; where the dialects differ an operation branches on ``conn.dialect``.

- ``SqliteConn`` wraps a sqlite3 connection. Its methods are ``async def`` but make plain sqlite3
  calls, so an operation's coroutine never suspends: the SQLite backend drives it to the end with
  ``drive`` on the connection's own thread, in one go, exactly as the synchronous functions ran
  before (one thread hop per transaction; group commit unchanged).
- ``PgConn`` wraps an asyncpg connection. It rewrites the placeholders to ``$1..$n`` (cached per
  SQL text), and ``lock`` takes a transaction-scoped advisory lock.

Rows: sqlite3.Row and asyncpg.Record both answer ``row[0]``, ``row["name"]``, ``dict(row)`` and
iterate over their values. Write-side notifications are collected by ``notify`` and delivered by
the Database after COMMIT (never on rollback).
"""

from __future__ import annotations

import functools
import hashlib
import re
import sqlite3
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
Row = Any  # sqlite3.Row | asyncpg.Record
Params = Sequence[Any] | Mapping[str, Any]

MAX_PAYLOAD = 7999  # bytes: PostgreSQL refuses a NOTIFY payload of 8000 or more; SQLite follows suit
_CHANNEL = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class Conn(Protocol):
    dialect: str  # "sqlite" | "postgres"

    async def execute(self, sql: str, params: Params = ()) -> int: ...  # rows changed

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None: ...

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None: ...

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...

    async def fetchval(self, sql: str, params: Params = ()) -> Any: ...  # first column of first row

    async def lock(self, key: str) -> None:
        """Serialise with every other transaction that locks the same key (until COMMIT/ROLLBACK)."""

    def notify(self, channel: str, payload: str = "") -> None:
        """Tell ``Database.listen(channel)`` callbacks, after this transaction commits."""


def check_notice(channel: str, payload: str) -> None:
    if not _CHANNEL.match(channel):
        raise ValueError(f"a channel is a lower-case identifier of at most 63 characters, not {channel!r}")
    if len(payload.encode()) > MAX_PAYLOAD:
        raise ValueError(f"a notification payload is at most {MAX_PAYLOAD} bytes")


def placeholders(items: Iterable[Any]) -> str:
    """'?, ?, ?' for an IN list: only the count comes from the data, never the text."""
    return ", ".join("?" for _ in items)


def drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run an operation on SqliteConn to its end without an event loop: it never suspends."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError(
        f"storage operation {getattr(coro, '__qualname__', coro)} awaited real I/O on the SQLite "
        "thread; an operation may await only its Conn"
    )


class SqliteConn:
    """A Conn over a sqlite3 connection (used on the connection's own thread only)."""

    dialect = "sqlite"
    __slots__ = ("notices", "raw")

    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw
        self.notices: list[tuple[str, str]] = []

    async def execute(self, sql: str, params: Params = ()) -> int:
        return self.raw.execute(sql, params).rowcount

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        self.raw.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        return self.raw.execute(sql, params).fetchone()

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return self.raw.execute(sql, params).fetchall()

    async def fetchval(self, sql: str, params: Params = ()) -> Any:
        row = self.raw.execute(sql, params).fetchone()
        return None if row is None else row[0]

    async def lock(self, key: str) -> None:
        pass  # a write transaction is BEGIN IMMEDIATE: it already excludes every other writer

    def notify(self, channel: str, payload: str = "") -> None:
        check_notice(channel, payload)
        self.notices.append((channel, payload))


# --- PostgreSQL --------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\?|(?<![:\w]):([A-Za-z_]\w*)")  # not a '::' cast, not 'a:b'


@functools.lru_cache(maxsize=4096)
def to_postgres(sql: str) -> tuple[str, tuple[str, ...] | int]:
    """``?`` -> ``$1, $2 ...`` (returns their count) or ``:name`` -> ``$n`` (returns the names in
    order). Our SQL keeps placeholders out of string literals; that is asserted, not parsed around."""
    names: dict[str, int] = {}
    count = 0
    out = []
    for i, part in enumerate(sql.split("'")):
        if i % 2:  # inside a string literal
            if _PLACEHOLDER.search(part):
                raise ValueError(f"placeholder-like text inside a string literal: {sql[:80]!r}")
            out.append(part)
            continue

        def number(m: re.Match[str]) -> str:
            nonlocal count
            if m.group(1) is None:
                count += 1
                return f"${count}"
            return f"${names.setdefault(m.group(1), len(names) + 1)}"

        out.append(_PLACEHOLDER.sub(number, part))
    if count and names:
        raise ValueError(f"one statement mixes ? and :name placeholders: {sql[:80]!r}")
    return "'".join(out), tuple(names) if names else count


def _bind(sql: str, params: Params) -> tuple[str, Sequence[Any]]:
    text, shape = to_postgres(sql)
    if isinstance(shape, tuple):
        if not isinstance(params, Mapping):
            raise TypeError(f"named placeholders need a mapping of parameters: {sql[:80]!r}")
        return text, [params[name] for name in shape]
    if isinstance(params, Mapping):
        raise TypeError(f"positional placeholders need a sequence of parameters: {sql[:80]!r}")
    if len(params) != shape:
        raise TypeError(f"{shape} placeholders, {len(params)} parameters: {sql[:80]!r}")
    return text, params


def lock_id(key: str) -> int:
    """A stable signed 64-bit number for an advisory lock (Python's hash() differs per process):
    the first 8 bytes of the key's MD5, which SQL computes too (LOCK_ID_SQL), so a statement can
    lock a key it derives from a row. Two keys sharing a number would only wait for each other."""
    return int.from_bytes(hashlib.md5(key.encode(), usedforsecurity=False).digest()[:8], "big", signed=True)


# lock_id in SQL, of a text expression: PostgreSQL's bit(64) -> bigint is the same two's complement.
LOCK_ID_SQL = "CAST(CAST('x' || substr(md5({}), 1, 16) AS bit(64)) AS bigint)"


def _rowcount(status: str) -> int:
    # asyncpg returns the command tag: "INSERT 0 1", "UPDATE 3", "DELETE 0", "SELECT 2".
    last = status.rpartition(" ")[2]
    return int(last) if last.isdigit() else 0


class PgConn:
    """A Conn over one asyncpg connection inside the transaction Database opened for it."""

    dialect = "postgres"
    __slots__ = ("notices", "raw")

    def __init__(self, raw: Any) -> None:
        self.raw = raw  # asyncpg.Connection (typed loosely: asyncpg is an optional dependency)
        self.notices: list[tuple[str, str]] = []

    async def execute(self, sql: str, params: Params = ()) -> int:
        text, args = _bind(sql, params)
        return _rowcount(await self.raw.execute(text, *args))

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        bound = [_bind(sql, row)[1] for row in rows]
        if bound:
            await self.raw.executemany(to_postgres(sql)[0], bound)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        text, args = _bind(sql, params)
        return await self.raw.fetchrow(text, *args)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        text, args = _bind(sql, params)
        return await self.raw.fetch(text, *args)

    async def fetchval(self, sql: str, params: Params = ()) -> Any:
        text, args = _bind(sql, params)
        return await self.raw.fetchval(text, *args)

    async def lock(self, key: str) -> None:
        await self.raw.execute("SELECT pg_advisory_xact_lock($1)", lock_id(key))

    def notify(self, channel: str, payload: str = "") -> None:
        check_notice(channel, payload)
        self.notices.append((channel, payload))
