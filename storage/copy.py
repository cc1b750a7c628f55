"""Moving a server: ``db copy SOURCE TARGET`` between SQLite and PostgreSQL, and ``db backup``.

The copy reads one consistent snapshot of the source, safe while the bot writes it: on PostgreSQL
one REPEATABLE READ transaction held for the whole copy; on SQLite an online backup into a
temporary file beside the source, read at leisure. Every table of schema.DATA_TABLES is copied in
chunks in key order with its ids kept; ``balances`` is rebuilt by the target's own ledger trigger as
the ledger's rows go in (the append-only triggers stay on: a copy only inserts). Before anything is
committed the target must match: the same row count in every table, and ``check`` finding nothing
the source's own check did not.

- PostgreSQL target: the whole copy is one transaction (a failure leaves the target empty, which
  matters: the ledger cannot be emptied afterwards), identity sequences moved past the copied ids.
- SQLite target: written to ``TARGET.partial`` and renamed into place once verified, as a single
  self-contained file (journal_mode DELETE; the bot switches it to WAL when it opens it).

A target that already holds data is refused. ``backup`` of a PostgreSQL database is a copy into a
new SQLite file (a portable backup any release can read); of SQLite, the online backup.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from storage import sqlite
from storage.check import problems
from storage.conn import Conn, placeholders
from storage.db import Database
from storage.errors import CopyMismatch, SameDatabase, TargetNotEmpty
from storage.opening import open_database
from storage.periods import utc
from storage.schema import DATA_TABLES, DERIVED_TABLES
from storage.targets import Target, parse_target

CHUNK = 1000  # rows per read and per insert batch
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
Read = Callable[..., Awaitable[Any]]  # read(op, *args): an op run against the source's snapshot


@dataclass(frozen=True)
class CopyReport:
    source: str  # labels: a path, or a URL with its password redacted
    target: str
    rows: dict[str, int]  # table -> rows in the target (the same as in the source snapshot)
    source_problems: tuple[str, ...]  # what ``check`` found in the source; copied as they were


def _ident(name: str) -> str:
    if not _IDENTIFIER.match(name):  # table and column names come from our own schema
        raise ValueError(f"not an identifier: {name!r}")
    return name


async def _count(conn: Conn, table: str) -> int:
    return int(await conn.fetchval(f"SELECT count(*) FROM {_ident(table)}"))


async def _chunk(conn: Conn, table: str, after: tuple | None) -> tuple[list[str], list[tuple]]:
    keys = ", ".join(_ident(k) for k in DATA_TABLES[table])
    where, params = "", []
    if after is not None:  # keyset pagination: the next CHUNK rows after the last key read
        where, params = f"WHERE ({keys}) > ({placeholders(after)}) ", list(after)
    rows = await conn.fetchall(
        f"SELECT * FROM {_ident(table)} {where}ORDER BY {keys} LIMIT ?", [*params, CHUNK]
    )
    return (list(rows[0].keys()) if rows else []), [tuple(r) for r in rows]


async def _insert(conn: Conn, table: str, columns: list[str], rows: list[tuple]) -> None:
    names = ", ".join(_ident(c) for c in columns)
    await conn.executemany(f"INSERT INTO {_ident(table)} ({names}) VALUES ({placeholders(columns)})", rows)


async def _move_sequences(conn: Conn) -> None:
    """PostgreSQL: the next identity value of each table after the largest id copied."""
    if conn.dialect != "postgres":
        return  # SQLite's INTEGER PRIMARY KEY continues from the largest rowid by itself
    for table, column in await conn.fetchall(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND is_identity = 'YES'"
    ):
        t, c = _ident(table), _ident(column)
        await conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{t}', '{c}'), "
            f"coalesce((SELECT max({c}) FROM {t}), 0) + 1, false)"
        )


async def _held(write: Read) -> list[str]:
    return [t for t in DATA_TABLES if await write(_count, t)]


async def _fill(read: Read, write: Read) -> None:
    for table in DATA_TABLES:
        if table in DERIVED_TABLES:
            continue
        after = None
        while True:
            columns, rows = await read(_chunk, table, after)
            if not rows:
                break
            await write(_insert, table, columns, rows)
            after = tuple(rows[-1][columns.index(k)] for k in DATA_TABLES[table])
            if len(rows) < CHUNK:
                break
    await write(_move_sequences)


async def _verify(
    write: Read, counts: dict[str, int], source_problems: list[str], now: datetime, label: str
) -> None:
    mismatches = []
    for table, want in counts.items():
        have = await write(_count, table)
        if have != want:
            mismatches.append(f"{table}: {have} rows, the source has {want}")
    new = [p for p in await write(problems, now) if p not in source_problems]
    if mismatches or new:
        raise CopyMismatch(label, mismatches + new)


@asynccontextmanager
async def _snapshot(db: Database) -> AsyncIterator[Read]:
    """``read(op, *args)`` against one consistent state of ``db``, for as long as the copy takes."""
    if db.dialect == "postgres":
        async with db.snapshot() as conn:  # type: ignore[attr-defined]

            async def read(op: Any, *args: Any) -> Any:
                return await op(conn, *args)

            yield read
        return
    folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=".kontext-copy-", dir=db.path.parent))  # type: ignore[attr-defined]
    try:
        await sqlite.backup(db, folder / "snapshot.db")  # type: ignore[arg-type]
        async with await open_database(folder / "snapshot.db", create=False) as snap:
            yield snap.read
    finally:
        await asyncio.to_thread(shutil.rmtree, folder, True)


def _same_file(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


async def _into_postgres(
    read: Read, dest: Target, counts: dict[str, int], found: list[str], now: datetime
) -> None:
    async with await open_database(dest) as db:

        async def load(conn: Conn) -> None:
            async def write(op: Any, *args: Any) -> Any:
                return await op(conn, *args)

            await conn.lock("kontext-bot:copy")  # two copies at once: the second finds data
            held = await _held(write)
            if held:
                raise TargetNotEmpty(dest.label, held)
            await _fill(read, write)
            await _verify(write, counts, found, now, dest.label)

        await db.write(load)


async def _into_sqlite(
    read: Read, dest: Target, counts: dict[str, int], found: list[str], now: datetime, *, overwrite: bool
) -> None:
    path = dest.path
    if not overwrite and await asyncio.to_thread(path.exists):
        async with await open_database(path, create=False) as existing:
            held = await _held(existing.read)
        if held:
            raise TargetNotEmpty(dest.label, held)
    partial = path.with_name(path.name + ".partial")
    await asyncio.to_thread(_remove, partial)
    try:
        async with await open_database(partial) as db:
            await _fill(read, db.write)
            await _verify(db.read, counts, found, now, dest.label)
        await asyncio.to_thread(_seal, partial)
        await asyncio.to_thread(partial.replace, path)
    finally:
        await asyncio.to_thread(_remove, partial)


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def _seal(path: Path) -> None:
    # One self-contained file: no WAL beside it to lose when it is moved or mailed.
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode = DELETE")
    finally:
        conn.close()


async def _copy(
    src: Database, target: str | Path | Target, now: datetime | None, *, overwrite: bool
) -> CopyReport:
    dest = parse_target(target)
    if dest.dialect == src.dialect == "sqlite" and _same_file(dest.path, src.path):  # type: ignore[attr-defined]
        raise SameDatabase(dest.label)
    if dest.dialect == src.dialect == "postgres" and dest.value == src.target.value:
        raise SameDatabase(dest.label)
    moment = utc(now)
    async with _snapshot(src) as read:
        counts = {t: await read(_count, t) for t in DATA_TABLES}
        found = await read(problems, moment)
        if dest.dialect == "postgres":
            await _into_postgres(read, dest, counts, found, moment)
        else:
            await _into_sqlite(read, dest, counts, found, moment, overwrite=overwrite)
    return CopyReport(src.label, dest.label, counts, tuple(found))


async def copy_database(
    source: str | Path | Target | Database, target: str | Path | Target, *, now: datetime | None = None
) -> CopyReport:
    """Copy everything from ``source`` (an open Database, a SQLite path or a PostgreSQL URL) into
    ``target``, which must hold no data. Raises TargetNotEmpty, SameDatabase, CopyMismatch (nothing
    committed), or the errors of opening either database (a source must exist: DatabaseMissing)."""
    if isinstance(source, Database):
        return await _copy(source, target, now, overwrite=False)
    async with await open_database(source, create=False) as src:
        return await _copy(src, target, now, overwrite=False)


async def backup(db: Database, path: str | Path) -> Path:
    """A consistent copy of the live database into the SQLite file ``path``, safe while the bot
    writes; ``path`` is replaced only once the copy is complete. From SQLite: its online backup.
    From PostgreSQL: a copy into a new SQLite file, checked like ``db copy`` (a portable backup)."""
    target = Path(path)
    if db.dialect == "sqlite":
        if _same_file(target, db.path):  # type: ignore[attr-defined]
            raise SameDatabase(str(target))
        return await sqlite.backup(db, target)  # type: ignore[arg-type]
    await _copy(db, target, None, overwrite=True)
    return target
