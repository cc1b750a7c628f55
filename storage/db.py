"""The database: one API, two backends. ``open_database(target)`` picks SQLite or PostgreSQL.

A storage operation is ``async def op(conn: Conn, ...)`` (storage/conn.py), written once.
``await db.write(op, ...)`` runs it in one write transaction and returns once that transaction is
committed; ``await db.read(op, ...)`` runs it in one read transaction that sees one consistent
state. An exception rolls the operation back and is raised to its caller; driver errors arrive as
the StorageError facts of storage/errors.py (DatabaseBusy, DatabaseFull, IntegrityViolation ...).

- SQLite (storage/sqlite.py): the embedded default. A writer and a reader connection, each on its
  own thread; an operation runs *whole* on that thread (its coroutine never suspends), writes in
  BEGIN IMMEDIATE, group-committed when several wait together.
- PostgreSQL (storage/postgres.py): the shared one, through an asyncpg pool. A write is one pooled
  connection in one READ COMMITTED transaction; operations that change the ledger first take
  ``conn.lock(f"guild:{id}")`` -- a transaction-scoped advisory lock -- so a reservation's reads
  and writes are never interleaved with another reservation of the guild (the README says why this
  and not SERIALIZABLE). A read is REPEATABLE READ, READ ONLY: one snapshot, like SQLite's.

Notifications: ``conn.notify(channel, payload)`` inside a write; ``await db.listen(channel, cb)``
calls ``await cb(payload)`` (as a task) for each notification after the COMMIT that carried it,
never for a rolled-back one. PostgreSQL delivers to every process listening (NOTIFY); SQLite within
this process only. A notification is a wake-up, not a message queue: identical ones of a
transaction may fold into one, and one sent while a listener reconnects is lost, so a consumer also
re-reads the database now and then.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Concatenate, ParamSpec, TypeVar

from storage.conn import Conn, check_notice
from storage.targets import Target

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
Op = Callable[Concatenate[Conn, P], Awaitable[T]]
Callback = Callable[[str], Awaitable[Any]]


class Listening:
    """What ``Database.listen`` returns: ``await listening.stop()`` (or ``async with``) ends it."""

    def __init__(self, db: Database, channel: str, callback: Callback) -> None:
        self._db, self.channel, self._callback = db, channel, callback
        self._active = True

    async def stop(self) -> None:
        if self._active:
            self._active = False
            await self._db._unlisten(self.channel, self._callback)

    async def __aenter__(self) -> Listening:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class Database:
    """An open database. Use ``open_database``; close with ``await db.close()`` or ``async with``."""

    dialect = ""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.label = target.label  # the path, or the URL with its password redacted
        self.commits = 0  # write transactions committed; a group commit of many operations is one
        self._listeners: dict[str, list[Callback]] = {}
        self._callbacks: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label}>"

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def write(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``op(conn, ...)`` in a write transaction; an exception rolls it back."""
        raise NotImplementedError

    async def read(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``op(conn, ...)`` in one read-only transaction: its queries see one consistent state."""
        raise NotImplementedError

    async def report(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``read`` for a report (a scan that may take a while): it runs where it cannot hold up
        the short reads that serve members (quota lookups, a job's state). SQLite gives reports a
        reader connection of their own; PostgreSQL lets a few at a time take pooled connections."""
        return await self.read(op, *args, **kwargs)

    async def ensure_room(self) -> None:
        """Raise DatabaseFull when a job's writes may not fit (a database file on this machine near
        the disk's end or the process's file size limit). The server databases have no such check."""

    async def close(self) -> None:
        for task in list(self._callbacks):
            task.cancel()

    # --- notifications ---------------------------------------------------------------------------

    async def listen(self, channel: str, callback: Callback) -> Listening:
        """Call ``await callback(payload)`` for every notification on ``channel`` committed from now on."""
        check_notice(channel, "")
        first = channel not in self._listeners
        self._listeners.setdefault(channel, []).append(callback)
        if first:
            try:
                await self._subscribe(channel)
            except BaseException:
                self._listeners.pop(channel, None)
                raise
        return Listening(self, channel, callback)

    async def _unlisten(self, channel: str, callback: Callback) -> None:
        callbacks = self._listeners.get(channel, [])
        if callback in callbacks:
            callbacks.remove(callback)
        if not callbacks and self._listeners.pop(channel, None) is not None:
            await self._unsubscribe(channel)

    async def _subscribe(self, channel: str) -> None:
        pass  # SQLite: delivery is in-process; PostgreSQL LISTENs here

    async def _unsubscribe(self, channel: str) -> None:
        pass

    def _deliver(self, notices: Iterable[tuple[str, str]]) -> None:
        for channel, payload in dict.fromkeys(notices):  # like NOTIFY: duplicates fold into one
            for callback in list(self._listeners.get(channel, ())):
                task = asyncio.get_running_loop().create_task(callback(payload))
                self._callbacks.add(task)
                task.add_done_callback(self._callback_done)

    def _callback_done(self, task: asyncio.Task[Any]) -> None:
        self._callbacks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a notification callback failed", exc_info=task.exception())


async def _version(conn: Conn) -> int:
    if conn.dialect == "sqlite":
        return int(await conn.fetchval("PRAGMA user_version"))
    return int(await conn.fetchval("SELECT version FROM schema_version"))


async def schema_version(db: Database) -> int:
    return await db.read(_version)
