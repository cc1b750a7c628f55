"""The PostgreSQL backend: an asyncpg pool, advisory locks, LISTEN/NOTIFY, locked migrations.

A write is one pooled connection in one READ COMMITTED transaction. Operations that change what a
reservation reads (the ledger, a guild's budgets, teams and quotas) take ``conn.lock("guild:<id>")``
first -- ``pg_advisory_xact_lock`` -- so two of them for one guild run one after the other, as every
write does on SQLite, while different guilds go in parallel. Every bucket a reservation reads
belongs to its guild (the only shared one, ``operator``, is never checked against a limit), so this
gives SQLite's guarantee at guild granularity, with no serialization failures to retry. A read is
REPEATABLE READ, READ ONLY: one snapshot.

``lock_timeout`` plays SQLite's busy timeout: a lock (advisory or row) not granted in 10 s raises
DatabaseBusy. Notifications go out with ``pg_notify`` inside the transaction (PostgreSQL delivers
them at COMMIT) and come in on one dedicated listener connection, not from the pool: the pool's
reset on release runs UNLISTEN.

Migrations: each in its own transaction, under a transaction-scoped advisory lock, re-reading the
one-row ``schema_version`` table after the lock is granted, so two processes starting at once apply
each migration exactly once; a newer schema is refused before anything is written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import asyncpg

from storage.conn import PgConn, lock_id
from storage.db import Database, Op
from storage.errors import (
    DatabaseBusy,
    DatabaseFull,
    DatabaseMissing,
    DatabaseUnavailable,
    IntegrityViolation,
    MigrationFailed,
    SchemaTooNew,
)
from storage.schema import migration_files, migrations_dir
from storage.targets import Target

log = logging.getLogger(__name__)

T = TypeVar("T")
LOCK_TIMEOUT_MS = 10_000  # as SQLite's busy timeout
CONNECT_TIMEOUT_S = 10.0
MIGRATION_LOCK = "kontext-bot:migrations"
SERVER_SETTINGS = {"lock_timeout": str(LOCK_TIMEOUT_MS), "application_name": "kontext-bot"}

_UNAVAILABLE = (
    OSError,  # refused, unreachable, DNS
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InvalidAuthorizationSpecificationError,  # bad password is a subclass
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,  # the pool is closing, a connection was lost mid-way
)


def translate(exc: BaseException, target: Target) -> BaseException:
    """asyncpg's errors as the facts of storage/errors.py; anything else as it is. The driver's
    text passes through ``target.scrub``: no URL or password survives into a StorageError."""
    text = target.scrub(str(exc)) or type(exc).__name__
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return IntegrityViolation(text)
    if isinstance(exc, asyncpg.LockNotAvailableError | asyncpg.DeadlockDetectedError):
        return DatabaseBusy(target.label, text)
    if isinstance(exc, asyncpg.DiskFullError | asyncpg.InsufficientResourcesError):
        return DatabaseFull(target.label, text)
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return DatabaseMissing(target.label)
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return DatabaseUnavailable(target.label, f"authentication failed ({text})")
    if isinstance(exc, _UNAVAILABLE):
        return DatabaseUnavailable(target.label, text)
    return exc


def _reraise(exc: BaseException, target: Target) -> NoReturn:
    new = translate(exc, target)
    if new is exc:
        raise exc
    # from None: the driver's own exception may quote the URL; its scrubbed text is in ``new``.
    raise new from None


class PostgresDatabase(Database):
    dialect = "postgres"

    def __init__(self, target: Target, pool: Any, pool_size: int = 10) -> None:
        super().__init__(target)
        self._pool = pool
        # Reports take at most a quarter of the pool, so quota lookups always find a connection.
        self._reports = asyncio.Semaphore(max(1, pool_size // 4))
        self._listener: Any = None  # asyncpg.Connection, opened on the first listen()
        self._listener_lock = asyncio.Lock()
        self._relisten: asyncio.Task[None] | None = None
        self._closing = False

    async def write(self, op: Op[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            async with self._pool.acquire() as raw, raw.transaction(isolation="read_committed"):
                conn = PgConn(raw)
                result = await op(conn, *args, **kwargs)
                if conn.notices:
                    channels, payloads = zip(*dict.fromkeys(conn.notices), strict=True)
                    await raw.execute(
                        "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS n (c, p)",
                        list(channels),
                        list(payloads),
                    )
        except Exception as e:
            _reraise(e, self.target)
        self.commits += 1
        return result

    async def read(self, op: Op[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            async with (
                self._pool.acquire() as raw,
                raw.transaction(isolation="repeatable_read", readonly=True),
            ):
                return await op(PgConn(raw), *args, **kwargs)
        except Exception as e:
            _reraise(e, self.target)

    async def report(self, op: Op[..., T], *args: Any, **kwargs: Any) -> T:
        async with self._reports:
            return await self.read(op, *args, **kwargs)

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[PgConn]:
        """One REPEATABLE READ, READ ONLY transaction, open for as long as the caller needs it:
        everything read through it is one consistent state, whatever is written meanwhile."""
        try:
            async with (
                self._pool.acquire() as raw,
                raw.transaction(isolation="repeatable_read", readonly=True),
            ):
                yield PgConn(raw)
        except Exception as e:
            _reraise(e, self.target)

    async def close(self) -> None:
        self._closing = True
        if self._relisten is not None:
            self._relisten.cancel()
        if self._listener is not None:
            await self._listener.close()
        await super().close()
        await self._pool.close()

    # --- notifications ---------------------------------------------------------------------------

    async def _listener_connection(self) -> Any:
        async with self._listener_lock:
            if self._listener is None or self._listener.is_closed():
                try:
                    self._listener = await connect(self.target)
                except Exception as e:
                    _reraise(e, self.target)
                self._listener.add_termination_listener(self._listener_lost)
            return self._listener

    async def _subscribe(self, channel: str) -> None:
        conn = await self._listener_connection()
        try:
            await conn.add_listener(channel, self._on_notify)
        except Exception as e:
            _reraise(e, self.target)

    async def _unsubscribe(self, channel: str) -> None:
        if self._listener is not None and not self._listener.is_closed():
            await self._listener.remove_listener(channel, self._on_notify)

    def _on_notify(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        self._deliver([(channel, payload)])

    def _listener_lost(self, _conn: Any) -> None:
        if not self._closing and self._listeners and self._relisten is None:
            log.warning("the notification listener of %s was disconnected; reconnecting", self.label)
            self._relisten = asyncio.get_running_loop().create_task(self._listen_again())

    async def _listen_again(self) -> None:
        delay = 0.5
        try:
            while not self._closing and self._listeners:
                try:
                    conn = await self._listener_connection()
                    for channel in list(self._listeners):
                        await conn.add_listener(channel, self._on_notify)
                    log.warning("the notification listener of %s is back", self.label)
                    return
                except Exception as e:
                    log.warning(
                        "listener of %s: %s; retrying in %.1f s", self.label, translate(e, self.target), delay
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
        finally:
            self._relisten = None


async def connect(target: Target) -> Any:
    return await asyncpg.connect(target.value, timeout=CONNECT_TIMEOUT_S, server_settings=SERVER_SETTINGS)


# --- opening and migrating ---------------------------------------------------------------------


async def _current_version(raw: Any) -> int:
    if await raw.fetchval("SELECT to_regclass('schema_version')") is None:
        return 0
    return int(await raw.fetchval("SELECT version FROM schema_version") or 0)


async def apply_migrations(raw: Any, target: Target, directory: Path) -> int:
    """Apply the missing migrations, one transaction each; return the version reached."""
    migrations = migration_files(directory)
    latest = len(migrations)
    while True:
        async with raw.transaction():
            # Held to the end of this transaction; whoever waited re-reads the version after it.
            await raw.execute("SELECT pg_advisory_xact_lock($1)", lock_id(MIGRATION_LOCK))
            current = await _current_version(raw)
            if current > latest:
                raise SchemaTooNew(target.label, current, latest)
            if current == latest:
                return current
            version, file = migrations[current]
            try:
                await raw.execute(file.read_text(encoding="utf-8"))  # a script: simple query protocol
                await raw.execute(
                    "INSERT INTO schema_version (only_row, version) VALUES (TRUE, $1) "
                    "ON CONFLICT (only_row) DO UPDATE SET version = excluded.version",
                    version,
                )
            except asyncpg.PostgresError as e:
                if isinstance(e, asyncpg.PostgresConnectionError):
                    raise
                raise MigrationFailed(target.label, file.name, version - 1, target.scrub(str(e))) from None
        log.info("database %s at schema version %d (%s)", target.label, version, file.name)


async def _keep_session(_conn: Any) -> None:
    """The pool's reset on release, which by default sends one more statement per transaction
    (pg_advisory_unlock_all, CLOSE ALL, UNLISTEN *, RESET ALL). Storage leaves nothing to reset on
    a pooled connection: its advisory locks are transaction-scoped, it LISTENs only on its own
    listener connection and sets nothing per session; asyncpg still rolls back a transaction left
    open (a cancelled operation) before it calls this."""


async def open_postgres(
    target: Target, *, migrations: Path | None = None, pool_size: int = 10
) -> PostgresDatabase:
    try:
        pool = await asyncpg.create_pool(
            target.value,
            min_size=1,
            max_size=pool_size,
            timeout=CONNECT_TIMEOUT_S,
            server_settings=SERVER_SETTINGS,
            reset=_keep_session,
        )
    except Exception as e:
        _reraise(e, target)
    try:
        async with pool.acquire() as raw:
            await apply_migrations(raw, target, migrations or migrations_dir("postgres"))
    except Exception as e:
        await pool.close()
        _reraise(e, target)
    return PostgresDatabase(target, pool, pool_size)
