"""The database: connections, pragmas, numbered migrations, online backup.

Two aiosqlite connections to one file, each owning a worker thread: a writer and a reader (WAL
lets reads run beside the write). Every storage operation is one plain function run *whole* on a
connection's thread, inside one transaction: ``BEGIN IMMEDIATE`` for writes, so the checks and the
writes of a reservation see no race. Calls queue on the thread, so two transactions of this
process never interleave; other processes on the file are ordered by SQLite's lock and the busy
timeout. One thread hop per transaction instead of one per statement (~80 us each) is what keeps a
reserve + settle pair well under a millisecond.

Writes are group-committed: the write operations waiting when the writer gets to them (up to
``MAX_BATCH``) run in one thread hop and one ``BEGIN IMMEDIATE ... COMMIT``, each in its own
SAVEPOINT. The hop and the COMMIT are most of a write's cost, so under load they are paid once per
batch instead of once per operation. A lone write waits for no company; an operation that raises is
rolled back alone and raises to its caller alone; every caller learns its outcome only after the
COMMIT (and if the COMMIT fails, every caller in the batch gets that error).
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import aiosqlite

from bot.errors import UserError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
BUSY_TIMEOUT_MS = 10_000  # another process holding the write lock that long is a fault, not load
MAX_BATCH = 64  # write operations per group commit
_MIGRATION_NAME = re.compile(r"^(\d{4})_[A-Za-z0-9_-]+\.sql$")

P = ParamSpec("P")
T = TypeVar("T")
Conn = sqlite3.Connection


class StorageError(UserError):
    """The database cannot be used as it is: newer schema, not a database, a failed migration."""

    code = "storage"


async def _on_thread(conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    # aiosqlite runs every call on the connection's own thread through Connection._execute (its
    # public methods are one-line wrappers of it, in 0.20 to 0.22 at least). Passing a
    # whole transaction through it is the one place we reach past the public API; the
    # test in tests/storage/test_db.py fails loudly if a new aiosqlite release changes it.
    return await conn._execute(fn, conn._conn, *args)


def _in_transaction(conn: Conn, begin: str, fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
    conn.execute(begin)
    try:
        result = fn(conn, *args, **kwargs)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def _group_commit(conn: Conn, ops: list[tuple[Callable[..., Any], tuple, dict]]) -> tuple[list, bool]:
    """Run ``ops`` in one BEGIN IMMEDIATE ... COMMIT, each in its own SAVEPOINT.

    Returns ([(ok, result or exception) per op], committed). An op that raises is rolled back to its
    savepoint and the others go on; if SQLite itself dropped the transaction (disk full, I/O
    error) or the COMMIT fails, nothing was written and every op gets that error.
    """
    outcomes: list[tuple[bool, Any]] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for fn, args, kwargs in ops:
            conn.execute("SAVEPOINT op")
            try:
                outcomes.append((True, fn(conn, *args, **kwargs)))
            except BaseException as e:
                if not conn.in_transaction:
                    raise
                conn.execute("ROLLBACK TO op")
                outcomes.append((False, e))
            conn.execute("RELEASE op")
        conn.execute("COMMIT")
    except BaseException as e:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        return [(False, e)] * len(ops), False
    return outcomes, True


class Database:
    """An open database. Use ``open_database``; close with ``await db.close()`` or ``async with``."""

    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader
        self._queue: list[tuple[Callable[..., Any], tuple, dict, asyncio.Future[Any]]] = []
        self._drainer: asyncio.Task[None] | None = None
        self.commits = 0  # write transactions committed; a group commit of many operations is one

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def write(self, fn: Callable[Concatenate[Conn, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(conn, ...)`` in a BEGIN IMMEDIATE transaction; an exception rolls it back.

        Returns once the transaction is committed. It may be shared with other writes waiting at
        the same time (group commit, see the module docstring); ``fn`` sees their writes and they
        see its, but an exception in one rolls back only that one.
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((fn, args, kwargs, future))
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        # Runs while writes are queued: whatever is waiting now goes to the thread as one batch,
        # and what arrives meanwhile forms the next one. Callers learn their outcome after COMMIT.
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                ops = [(fn, args, kwargs) for fn, args, kwargs, _ in batch]
                try:
                    outcomes, committed = await _on_thread(self._writer, _group_commit, ops)
                except asyncio.CancelledError:
                    for *_, future in batch + self._queue:
                        future.cancel()
                    self._queue.clear()
                    raise
                except BaseException as e:  # the hop itself failed (a closed connection)
                    outcomes, committed = [(False, e)] * len(batch), False
                self.commits += committed
                for (*_, future), (ok, value) in zip(batch, outcomes, strict=True):
                    if not future.done():  # its caller may have been cancelled
                        if ok:
                            future.set_result(value)
                        else:
                            future.set_exception(value)
        finally:
            self._drainer = None

    async def read(self, fn: Callable[Concatenate[Conn, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(conn, ...)`` in one read transaction: its queries see one consistent state."""
        return await _on_thread(self._reader, _in_transaction, "BEGIN", fn, args, kwargs)

    async def close(self) -> None:
        if self._drainer is not None:  # let queued writes finish first
            await asyncio.wait([self._drainer])
        for conn in (self._reader, self._writer):
            try:
                await conn.close()
            except ValueError:  # already closed
                pass


def fetchone(conn: Conn, sql: str, params: Sequence[Any] | dict = ()) -> Any:
    return conn.execute(sql, params).fetchone()


def fetchall(conn: Conn, sql: str, params: Sequence[Any] | dict = ()) -> list[Any]:
    return conn.execute(sql, params).fetchall()


def placeholders(items: Iterable[Any]) -> str:
    """'?, ?, ?' for an IN list: only the count comes from the data, never the text."""
    return ", ".join("?" for _ in items)


# --- opening and migrating ---------------------------------------------------------------------


def _configure(conn: Conn) -> None:
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
    conn.execute("PRAGMA foreign_keys = ON")
    # In WAL, NORMAL may lose the last commits on power loss, never consistency.
    conn.execute("PRAGMA synchronous = NORMAL")


async def _connect(path: Path) -> aiosqlite.Connection:
    # isolation_level=None: the sqlite3 module opens no implicit transactions; we say BEGIN ourselves.
    conn = await aiosqlite.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        await _on_thread(conn, _configure)
    except BaseException:
        await conn.close()
        raise
    return conn


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, Path]]:
    """The numbered migrations in order; numbers must run 1, 2, 3 ... without gaps."""
    found = sorted(
        (int(m.group(1)), item) for item in directory.iterdir() if (m := _MIGRATION_NAME.match(item.name))
    )
    if [n for n, _ in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations in {directory} must be numbered 0001, 0002, ... without gaps")
    return found


def split_statements(script: str) -> list[str]:
    """Split a SQL script into statements (trigger bodies keep their inner semicolons)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    rest = "\n".join(x for x in buffer.splitlines() if not x.strip().startswith("--")).strip()
    if rest:
        raise RuntimeError(f"unterminated SQL statement: {rest[:60]!r}")
    return statements


def _user_version(conn: Conn) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _too_new(path: Path, found: int, known: int) -> StorageError:
    return StorageError(
        f"The database {path} has schema version {found}, but this kontext-bot knows versions up to "
        f"{known}: it was written by a newer release. Upgrade kontext-bot, or use a backup made by this "
        "version. The database was not changed."
    )


def apply_migrations(conn: Conn, path: Path, directory: Path = MIGRATIONS_DIR) -> int:
    """Bring the schema up to date, one transaction per migration; return the version reached."""
    migrations = migration_files(directory)
    latest = len(migrations)
    try:
        current = _user_version(conn)
    except sqlite3.DatabaseError as e:
        raise StorageError(f"{path} is not a kontext-bot database ({e}).") from None
    # Checked before anything is written, WAL mode included: a newer database is left untouched.
    if current > latest:
        raise _too_new(path, current, latest)
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode.lower() != "wal":
        log.warning("journal_mode is %s, not wal: readers will wait for the writer", mode)
    for version, file in migrations[current:]:
        statements = split_statements(file.read_text(encoding="utf-8"))
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while we waited for the lock.
            found = _user_version(conn)
            if found > latest:
                raise _too_new(path, found, latest)
            if found < version:
                for statement in statements:
                    conn.execute(statement)
                # An int from the file name, never outside text (PRAGMA takes no parameters).
                conn.execute(f"PRAGMA user_version = {version:d}")
            conn.execute("COMMIT")
        except BaseException as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise StorageError(
                    f"Migration {file.name} failed and was rolled back; the database stays at version "
                    f"{version - 1}: {e}"
                ) from e
            raise
        log.info("database %s at schema version %d (%s)", path, version, file.name)
    return max(current, latest)


async def open_database(path: str | Path, *, migrations: Path = MIGRATIONS_DIR) -> Database:
    """Open (creating if needed) the database at ``path`` and bring its schema up to date.

    Raises StorageError if the file is not a database, a migration fails, or the schema is newer
    than this release knows (the file is then left exactly as it was).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        writer = await _connect(path)
    except sqlite3.Error as e:
        raise StorageError(f"Cannot open the database {path}: {e}") from None
    try:
        await _on_thread(writer, apply_migrations, path, migrations)
        reader = await _connect(path)
    except BaseException:
        await writer.close()
        raise
    return Database(path, writer, reader)


async def schema_version(db: Database) -> int:
    return await db.read(_user_version)


# --- backup ------------------------------------------------------------------------------------


async def backup(db: Database, path: str | Path) -> Path:
    """A consistent copy of the live database (SQLite's online backup), safe while the bot writes.

    Written to a temporary file beside ``path`` and renamed into place, so ``path`` is never a
    half-written copy.
    """
    target = Path(path)
    partial = target.with_name(target.name + ".partial")
    await asyncio.to_thread(_prepare_target, db.path, target, partial)
    await _on_thread(db._reader, _copy_to, partial)
    await asyncio.to_thread(partial.replace, target)
    log.info("database backed up to %s", target)
    return target


def _prepare_target(source: Path, target: Path, partial: Path) -> None:
    if target.resolve() == source.resolve():
        raise StorageError("The backup path is the database itself; choose another file.")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial.unlink(missing_ok=True)


def _copy_to(source: Conn, partial: Path) -> None:
    dest = sqlite3.connect(partial)
    try:
        source.backup(dest)  # in one step: the copy is a single snapshot of the source
        # A copy is one self-contained file: no WAL beside it to lose when it is moved.
        dest.execute("PRAGMA journal_mode = DELETE")
        (result,) = dest.execute("PRAGMA quick_check").fetchone()
        if result != "ok":
            raise StorageError(f"The backup failed its integrity check: {result}")
    finally:
        dest.close()
