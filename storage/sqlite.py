"""The SQLite backend: two aiosqlite connections to one file, group commit, online backup.

A writer, a reader and a report connection, each owning a worker thread (WAL lets reads run
beside the write). Reports (``Database.report``: scans over many jobs) have their own connection,
so a slow one never holds up the short reads that answer members (quota lookups). The report
connection also does the upkeep, off the writer's thread: the WAL checkpoints (the writer's own
automatic checkpoint is off: copying a thousand pages back into the database and syncing it, in
the middle of a COMMIT every ~100 commits, was 60% of all COMMIT time) and ANALYZE / PRAGMA
optimize, so the query planner knows the tables' sizes.

Every operation runs *whole* on a connection's thread, inside one transaction:
``BEGIN IMMEDIATE`` for writes, so the checks and the writes of a reservation see no race. The
operation is a coroutine over SqliteConn, whose methods never suspend, so ``drive`` runs it to its
end right there: one thread hop per transaction instead of one per statement (~80 us each) is what
keeps a reserve + settle pair well under a millisecond. Calls queue on the thread, so two
transactions of this process never interleave; other processes on the file are ordered by
SQLite's lock and the busy timeout.

Writes are group-committed: the write operations waiting when the writer gets to them (up to
``MAX_BATCH``) run in one thread hop and one ``BEGIN IMMEDIATE ... COMMIT``, each in its own
SAVEPOINT. The hop and the COMMIT are most of a write's cost, so under load they are paid once per
batch instead of once per operation. A lone write waits for no company; an operation that raises is
rolled back alone (its notifications with it) and raises to its caller alone; every caller learns
its outcome only after the COMMIT (and if the COMMIT fails, every caller in the batch gets that
error). Notifications of the batch are delivered after its COMMIT.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import aiosqlite

from storage.conn import SqliteConn, drive
from storage.db import Database, Op
from storage.errors import (
    DatabaseFull,
    DatabaseMissing,
    MigrationFailed,
    NotADatabase,
    SchemaTooNew,
)
from storage.schema import migration_files, migrations_dir, split_statements
from storage.sqlite_faults import room_problem, translate
from storage.sqlite_upkeep import analyze, backup, checkpoint, no_auto_checkpoint, optimize
from storage.targets import Target

log = logging.getLogger(__name__)

__all__ = ["SqliteDatabase", "backup", "open_sqlite", "translate"]

ROOM_RECHECK_S = 1.0  # a found room is trusted this long (storage/sqlite_faults.py looks)
BUSY_TIMEOUT_MS = 10_000  # another process holding the write lock that long is a fault, not load
MAX_BATCH = 64  # write operations per group commit
CHECKPOINT_EVERY = 100  # write transactions between two WAL checkpoints (on the report thread)
# Under a steady stream of writes a checkpoint beside them never catches the WAL's end, so the WAL
# would never restart: past this many frames the writer finishes the checkpoint itself, between
# two batches (cheap: the other thread has already copied all but the last few frames).
WAL_RESET_FRAMES = 8000
OPTIMIZE_EVERY_S = 3600.0  # PRAGMA optimize this often on a long-running process

T = TypeVar("T")
Batch = list[tuple[Op[..., Any], tuple, dict]]


async def _on_thread(conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    # aiosqlite runs every call on the connection's own thread through Connection._execute (its
    # public methods are one-line wrappers of it, in 0.20 to 0.22 at least). Passing a
    # whole transaction through it is the one place we reach past the public API; the
    # test in tests/storage/test_sqlite.py fails loudly if a new aiosqlite release changes it.
    return await conn._execute(fn, conn._conn, *args)


def _reraise(exc: BaseException, label: str) -> NoReturn:
    new = translate(exc, label)
    if new is exc:
        raise exc
    raise new from exc


def _in_transaction(raw: sqlite3.Connection, begin: str, op: Op[..., T], args: tuple, kwargs: dict) -> T:
    raw.execute(begin)
    try:
        result = drive(op(SqliteConn(raw), *args, **kwargs))
        raw.execute("COMMIT")
    except BaseException:
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        raise
    return result


def _group_commit(raw: sqlite3.Connection, ops: Batch) -> tuple[list[tuple[bool, Any]], list, bool]:
    """Run ``ops`` in one BEGIN IMMEDIATE ... COMMIT, each in its own SAVEPOINT.

    Returns ([(ok, result or exception) per op], notifications, committed). An op that raises is
    rolled back to its savepoint (its notifications dropped) and the others go on; if SQLite itself
    dropped the transaction (disk full, I/O error) or the COMMIT fails, nothing was written and
    every op gets that error.
    """
    outcomes: list[tuple[bool, Any]] = []
    conn = SqliteConn(raw)
    raw.execute("BEGIN IMMEDIATE")
    if len(ops) == 1:  # alone, its transaction is its savepoint: two statements fewer
        op, args, kwargs = ops[0]
        try:
            result = drive(op(conn, *args, **kwargs))
            raw.execute("COMMIT")
        except BaseException as e:
            if raw.in_transaction:
                raw.execute("ROLLBACK")
            return [(False, e)], [], False
        return [(True, result)], conn.notices, True
    try:
        for op, args, kwargs in ops:
            raw.execute("SAVEPOINT op")
            mark = len(conn.notices)
            try:
                outcomes.append((True, drive(op(conn, *args, **kwargs))))
            except BaseException as e:
                if not raw.in_transaction:
                    raise
                raw.execute("ROLLBACK TO op")
                del conn.notices[mark:]
                outcomes.append((False, e))
            raw.execute("RELEASE op")
        raw.execute("COMMIT")
    except BaseException as e:
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        return [(False, e)] * len(ops), [], False
    return outcomes, conn.notices, True


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(
        self,
        target: Target,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        reports: aiosqlite.Connection,
    ) -> None:
        super().__init__(target)
        self.path = target.path
        self._writer = writer
        self._reader = reader
        self._reports = reports
        self._queue: list[tuple[Op[..., Any], tuple, dict, asyncio.Future[Any]]] = []
        self._drainer: asyncio.Task[None] | None = None
        self._upkeep: asyncio.Task[None] | None = None
        self._checkpointed_at = 0  # self.commits at the last checkpoint
        self._wal_frames = 0  # as the last checkpoint found it
        self._optimized_at = time.monotonic()
        self._room_until = 0.0  # monotonic time until which ensure_room trusts its last look

    async def write(self, op: Op[..., T], *args: Any, **kwargs: Any) -> T:
        """Returns once the transaction is committed. It may be shared with other writes waiting at
        the same time (group commit, see the module docstring); ``op`` sees their writes and they
        see its, but an exception in one rolls back only that one."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((op, args, kwargs, future))
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        # Runs while writes are queued: whatever is waiting now goes to the thread as one batch,
        # and what arrives meanwhile forms the next one. Callers learn their outcome after COMMIT.
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                ops: Batch = [(op, args, kwargs) for op, args, kwargs, _ in batch]
                notices: list[tuple[str, str]] = []
                try:
                    outcomes, notices, committed = await _on_thread(self._writer, _group_commit, ops)
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
                            future.set_exception(translate(value, self.label))
                if notices:
                    self._deliver(notices)
                if self._wal_frames > WAL_RESET_FRAMES and self._upkeep is None:
                    self._wal_frames = 0
                    try:  # then the next write restarts the WAL from its start
                        await _on_thread(self._writer, checkpoint)
                    except Exception as e:
                        log.debug("checkpoint on the writer skipped: %s", e)
                elif self.commits - self._checkpointed_at >= CHECKPOINT_EVERY and self._upkeep is None:
                    self._checkpointed_at = self.commits
                    self._upkeep = asyncio.create_task(self._maintain())
        finally:
            self._drainer = None

    async def _maintain(self) -> None:
        # The writer's automatic checkpoint is off (see the module docstring): this one does it.
        try:
            self._wal_frames = await _on_thread(self._reports, checkpoint)
            if time.monotonic() - self._optimized_at >= OPTIMIZE_EVERY_S:
                self._optimized_at = time.monotonic()
                await _on_thread(self._reports, optimize)
        except Exception as e:  # busy or closing: the next one catches up
            log.debug("database upkeep skipped: %s", e)
        finally:
            self._upkeep = None

    async def ensure_room(self) -> None:
        # A few system calls (~80 us here): a found room is trusted for ROOM_RECHECK_S, so a busy
        # queue pays for them about once a second; a missing one is looked for again every time.
        if time.monotonic() < self._room_until:
            return
        problem = room_problem(self.path)
        if problem is not None:
            raise DatabaseFull(self.label, problem)
        self._room_until = time.monotonic() + ROOM_RECHECK_S

    async def read(self, op: Op[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await _on_thread(self._reader, _in_transaction, "BEGIN", op, args, kwargs)
        except sqlite3.Error as e:
            _reraise(e, self.label)

    async def on_reader(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(raw sqlite3 connection, *args)`` on the reader's thread (the online backup)."""
        return await _on_thread(self._reader, fn, *args)

    async def report(self, op: Op[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await _on_thread(self._reports, _in_transaction, "BEGIN", op, args, kwargs)
        except sqlite3.Error as e:
            _reraise(e, self.label)

    async def close(self) -> None:
        if self._drainer is not None:  # let queued writes finish first
            await asyncio.wait([self._drainer])
        if self._upkeep is not None:
            await asyncio.wait([self._upkeep])
        await super().close()
        try:  # what the planner learnt from this session's queries (SQLite's advice at close)
            await _on_thread(self._reports, optimize)
        except Exception as e:
            log.debug("PRAGMA optimize at close skipped: %s", e)
        # The writer last: closing the last connection checkpoints the WAL into the database.
        for conn in (self._reports, self._reader, self._writer):
            try:
                await conn.close()
            except ValueError:  # already closed
                pass


# --- opening and migrating ---------------------------------------------------------------------


def configure(raw: sqlite3.Connection) -> None:
    raw.row_factory = sqlite3.Row
    raw.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
    raw.execute("PRAGMA foreign_keys = ON")
    # In WAL, NORMAL may lose the last commits on power loss, never consistency.
    raw.execute("PRAGMA synchronous = NORMAL")


def _existing_only(path: Path) -> str:
    return path.absolute().as_uri() + "?mode=rw"  # a URI, so that "mode=rw" can be said


async def _connect(path: Path, create: bool) -> aiosqlite.Connection:
    # isolation_level=None: the sqlite3 module opens no implicit transactions; we say BEGIN ourselves.
    # mode=rw: an existing file only, so a read-only command never leaves an empty database behind.
    where = str(path) if create else _existing_only(path)
    conn = await aiosqlite.connect(
        where, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, uri=not create
    )
    try:
        await _on_thread(conn, configure)
    except BaseException:
        await conn.close()
        raise
    return conn


def _user_version(raw: sqlite3.Connection) -> int:
    return int(raw.execute("PRAGMA user_version").fetchone()[0])


def _to_wal(raw: sqlite3.Connection) -> str:
    # Switching a new file to WAL needs it to itself for a moment, and SQLite answers "locked" at
    # once rather than through the busy handler when another process is opening it too: retry
    # (on the connection's thread, so the sleep blocks no event loop), up to the busy timeout.
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            return str(raw.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def apply_migrations(raw: sqlite3.Connection, label: str, directory: Path) -> int:
    """Bring the schema up to date, one transaction per migration; return the version reached."""
    migrations = migration_files(directory)
    latest = len(migrations)
    try:
        current = _user_version(raw)
    except sqlite3.DatabaseError as e:
        raise NotADatabase(label, str(e)) from None
    # Checked before anything is written, WAL mode included: a newer database is left untouched.
    if current > latest:
        raise SchemaTooNew(label, current, latest)
    mode = _to_wal(raw)
    if mode.lower() != "wal":
        log.warning("journal_mode is %s, not wal: readers will wait for the writer", mode)
    for version, file in migrations[current:]:
        statements = split_statements(file.read_text(encoding="utf-8"))
        raw.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while we waited for the lock.
            found = _user_version(raw)
            if found > latest:
                raise SchemaTooNew(label, found, latest)
            if found < version:
                for statement in statements:
                    raw.execute(statement)
                # An int from the file name, never outside text (PRAGMA takes no parameters).
                raw.execute(f"PRAGMA user_version = {version:d}")
            raw.execute("COMMIT")
        except BaseException as e:
            if raw.in_transaction:
                raw.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                full = translate(e, label)
                if isinstance(full, DatabaseFull):  # no room to write the schema: say that
                    raise full from e
                raise MigrationFailed(label, file.name, version - 1, str(e)) from e
            raise
        log.info("database %s at schema version %d (%s)", label, version, file.name)
    return max(current, latest)


async def open_sqlite(
    target: Target, *, create: bool = True, migrations: Path | None = None
) -> SqliteDatabase:
    path = target.path
    if not create and not path.is_file():
        raise DatabaseMissing(target.label)
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        writer = await _connect(path, create)
    except sqlite3.Error as e:
        if not create and "unable to open" in str(e):
            raise DatabaseMissing(target.label) from None
        raise NotADatabase(target.label, str(e)) from None
    try:
        await _on_thread(writer, apply_migrations, target.label, migrations or migrations_dir("sqlite"))
        await _on_thread(writer, analyze)
        await _on_thread(writer, no_auto_checkpoint)
    except sqlite3.Error as e:
        await writer.close()
        _reraise(e, target.label)
    except BaseException:
        await writer.close()
        raise
    readers: list[aiosqlite.Connection] = []
    try:
        for _ in range(2):
            readers.append(await _connect(path, create))
    except BaseException as e:
        for conn in (*readers, writer):
            await conn.close()
        if isinstance(e, sqlite3.Error):
            _reraise(e, target.label)
        raise
    return SqliteDatabase(target, writer, *readers)
