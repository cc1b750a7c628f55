"""What can go wrong in storage, as facts with their figures: no sentences for people.

Every error a caller must handle is a StorageError subclass carrying the fields that describe it
(a job id, a schema version, the figures of a refused reservation). bot/ words them for people, in
one place (bot/storage_errors.py); storage imports nothing from bot/. The text of each exception
(``str(exc)``) is a terse line for logs, never shown to a member as it is.

Database targets appear here only in their ``label`` form: a path, or a PostgreSQL URL with its
password redacted (storage/targets.py). No error carries a password.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

    from storage.ledger import Refusal
    from storage.rates import RateLimit


class StorageError(Exception):
    """A fact about the database or a stored record that the caller must deal with."""


class UnsupportedTarget(StorageError):
    """A URL whose scheme is neither a SQLite path nor postgresql:// / postgres://."""

    def __init__(self, scheme: str) -> None:
        super().__init__(f"unsupported database URL scheme {scheme!r}")
        self.scheme = scheme


class DatabaseMissing(StorageError):
    """``open_database(..., create=False)`` and there is no such SQLite file (or PostgreSQL database)."""

    def __init__(self, target: str) -> None:
        super().__init__(f"no database at {target}")
        self.target = target


class NotADatabase(StorageError):
    """The file exists but is not a SQLite database (or not one of ours)."""

    def __init__(self, target: str, detail: str) -> None:
        super().__init__(f"{target} is not a database: {detail}")
        self.target, self.detail = target, detail


class SchemaTooNew(StorageError):
    """The database was written by a newer release; it was left exactly as it was."""

    def __init__(self, target: str, found: int, known: int) -> None:
        super().__init__(f"{target}: schema version {found}, this release knows up to {known}")
        self.target, self.found, self.known = target, found, known


class MigrationFailed(StorageError):
    """A migration failed and was rolled back whole; the database stays at ``version``."""

    def __init__(self, target: str, migration: str, version: int, detail: str) -> None:
        super().__init__(f"{target}: migration {migration} failed and was rolled back ({detail})")
        self.target, self.migration, self.version, self.detail = target, migration, version, detail


class DatabaseBusy(StorageError):
    """Another process held the lock needed past the busy timeout (a fault, not ordinary load)."""

    def __init__(self, target: str, detail: str = "") -> None:
        super().__init__(f"{target} is busy: {detail}")
        self.target, self.detail = target, detail


class DatabaseFull(StorageError):
    """The disk is full, or the file reached a size limit: nothing of the transaction was written."""

    def __init__(self, target: str, detail: str = "") -> None:
        super().__init__(f"{target} is full: {detail}")
        self.target, self.detail = target, detail


class DatabaseUnavailable(StorageError):
    """The database server cannot be reached or refused us (connection refused, bad password).
    ``detail`` is the driver's reason with the URL and password removed."""

    def __init__(self, target: str, detail: str) -> None:
        super().__init__(f"cannot connect to {target}: {detail}")
        self.target, self.detail = target, detail


class IntegrityViolation(StorageError):
    """A constraint or trigger refused a write (a duplicate id, a second settle, an UPDATE of the
    append-only ledger). Storage's own operations meet it only in races it then resolves."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class SameDatabase(StorageError):
    """A backup or copy whose target is its own source."""

    def __init__(self, target: str) -> None:
        super().__init__(f"the target {target} is the source database itself")
        self.target = target


class TargetNotEmpty(StorageError):
    """``db copy`` refuses a target that already holds rows (``tables``: those that do)."""

    def __init__(self, target: str, tables: Sequence[str]) -> None:
        super().__init__(f"{target} already holds data in {', '.join(tables)}")
        self.target, self.tables = target, tuple(tables)


class CopyMismatch(StorageError):
    """The copied target does not match its source (row counts) or fails ``check``."""

    def __init__(self, target: str, problems: Sequence[str]) -> None:
        super().__init__(f"the copy in {target} is not right: {'; '.join(problems)}")
        self.target, self.problems = target, tuple(problems)


class JobNotFound(StorageError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id!r}")
        self.job_id = job_id


class QuotaRefused(StorageError):
    """Nothing could pay for the job. It is recorded as refused (``job_id``); ``refusal`` holds
    what it would cost and what was short, with when each figure resets."""

    def __init__(self, job_id: str, refusal: Refusal) -> None:
        super().__init__(f"job {job_id} refused: {refusal.summary()}")
        self.job_id, self.refusal = job_id, refusal

    @property
    def cost_micros(self) -> int:
        return self.refusal.estimate_micros

    @property
    def free_remaining(self) -> int:
        return self.refusal.free_left

    @property
    def resets_at(self) -> datetime:
        return self.refusal.resets_at


class QueueFull(StorageError):
    """So many jobs are waiting that a new one is not taken (nothing was recorded)."""

    def __init__(self, *, waiting: int) -> None:
        super().__init__(f"{waiting} jobs are waiting")
        self.waiting = waiting


class RateLimited(StorageError):
    """The member already has ``used`` accepted jobs in the window of ``limit`` (the limit of theirs
    that frees up soonest): the job was not recorded, nothing was charged. ``retry_at``: the earliest
    moment a job of theirs is allowed again."""

    def __init__(self, limit: RateLimit, used: int, retry_at: datetime) -> None:
        super().__init__(f"{used} jobs within {limit.window_s} s, limit {limit.jobs}; next at {retry_at}")
        self.limit, self.used, self.retry_at = limit, used, retry_at
