"""The SQLite backend: two aiosqlite connections to one file, group commit, online backup.

A writer and a reader connection, each owning a worker thread (WAL lets reads run beside the
write). Every operation runs *whole* on a connection's thread, inside one transaction:
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
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import aiosqlite

from storage.conn import SqliteConn, drive
from storage.db import Database, Op
from storage.errors import (
    DatabaseBusy,
    DatabaseFull,
    DatabaseMissing,
    IntegrityViolation,
    MigrationFailed,
    NotADatabase,
    SchemaTooNew,
    StorageError,
)
from storage.schema import migration_files, migrations_dir, split_statements
from storage.targets import Target

log = logging.getLogger(__name__)

try:
    import resource
except ImportError:  # not on Windows: no file size limit to read there
    resource = None  # type: ignore[assignment]

# Room a job's whole life needs, many times over: it appends a few dozen pages to the WAL. A job is
# not recorded without it, so one the disk could not see through never holds a reservation.
ROOM_BYTES = 1 << 20
ROOM_RECHECK_S = 1.0
BUSY_TIMEOUT_MS = 10_000  # another process holding the write lock that long is a fault, not load
MAX_BATCH = 64  # write operations per group commit

T = TypeVar("T")
Batch = list[tuple[Op[..., Any], tuple, dict]]


async def _on_thread(conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    # aiosqlite runs every call on the connection's own thread through Connection._execute (its
    # public methods are one-line wrappers of it, in 0.20 to 0.22 at least). Passing a
    # whole transaction through it is the one place we reach past the public API; the
    # test in tests/storage/test_sqlite.py fails loudly if a new aiosqlite release changes it.
    return await conn._execute(fn, conn._conn, *args)


def room_problem(path: Path, need: int | None = None) -> str | None:
    """Why writes to the database at ``path`` may not fit (the process's file size limit, the free
    space on its disk); None when there is room for ``need`` (ROOM_BYTES) bytes more."""
    need = ROOM_BYTES if need is None else need
    files = (path, path.with_name(path.name + "-wal"))
    largest = max((f.stat().st_size for f in files if f.exists()), default=0)
    if resource is not None:
        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if soft != resource.RLIM_INFINITY and soft < largest + need:
            return f"this process may write files of at most {soft} bytes (ulimit -f); the file is {largest}"
    free = shutil.disk_usage(path.parent).free
    if free < need:
        return f"{free} bytes free on its disk"
    return None


def _no_room(label: str) -> bool:
    try:
        return room_problem(Path(label)) is not None
    except OSError:
        return False


def translate(exc: BaseException, label: str) -> BaseException:
    """sqlite3's errors as the facts of storage/errors.py; anything else as it is."""
    if not isinstance(exc, sqlite3.Error):
        return exc
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    if isinstance(exc, sqlite3.IntegrityError):
        new: StorageError = IntegrityViolation(text)
    elif name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in text:
        new = DatabaseBusy(label, text)
    elif name.startswith("SQLITE_FULL") or "disk is full" in text:
        new = DatabaseFull(label, text)
    elif name == "SQLITE_IOERR_WRITE" and _no_room(label):
        new = DatabaseFull(label, text)  # the write failed because the file could not grow
    elif name.startswith("SQLITE_NOTADB") or "not a database" in text:
        new = NotADatabase(label, text)
    else:
        return exc
    new.__cause__ = exc
    return new


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

    def __init__(self, target: Target, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        super().__init__(target)
        self.path = target.path
        self._writer = writer
        self._reader = reader
        self._queue: list[tuple[Op[..., Any], tuple, dict, asyncio.Future[Any]]] = []
        self._drainer: asyncio.Task[None] | None = None
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
        finally:
            self._drainer = None

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

    async def close(self) -> None:
        if self._drainer is not None:  # let queued writes finish first
            await asyncio.wait([self._drainer])
        await super().close()
        for conn in (self._reader, self._writer):
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
        reader = await _connect(path, create)
    except sqlite3.Error as e:
        await writer.close()
        _reraise(e, target.label)
    except BaseException:
        await writer.close()
        raise
    return SqliteDatabase(target, writer, reader)


# --- backup ------------------------------------------------------------------------------------


async def backup(db: SqliteDatabase, path: Path) -> Path:
    """A consistent copy of the live database (SQLite's online backup), safe while the bot writes.

    Written to a temporary file beside ``path`` and renamed into place, so ``path`` is never a
    half-written copy.
    """
    partial = path.with_name(path.name + ".partial")
    await asyncio.to_thread(_prepare_target, path, partial)
    await _on_thread(db._reader, _copy_to, partial, str(path))
    await asyncio.to_thread(partial.replace, path)
    log.info("database backed up to %s", path)
    return path


def _prepare_target(target: Path, partial: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial.unlink(missing_ok=True)


def _copy_to(source: sqlite3.Connection, partial: Path, label: str) -> None:
    dest = sqlite3.connect(partial)
    try:
        source.backup(dest)  # in one step: the copy is a single snapshot of the source
        # A copy is one self-contained file: no WAL beside it to lose when it is moved.
        dest.execute("PRAGMA journal_mode = DELETE")
        (result,) = dest.execute("PRAGMA quick_check").fetchone()
        if result != "ok":
            raise NotADatabase(label, f"the backup failed its integrity check: {result}")
    finally:
        dest.close()
