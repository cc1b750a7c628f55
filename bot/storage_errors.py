"""Storage's facts in words: the one place a StorageError becomes a UserError both faces show.

Storage raises facts with their figures (storage/errors.py) and imports nothing from bot/. The
services that call it -- JobService, AccountService, ``open_services`` -- let each such error out
through here, so the CLI and the cogs print the same sentences. An IntegrityViolation is left
alone: no user causes one, so it is an internal error (logged with the job id).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import storage
from bot.errors import NotFound, QuotaExceeded, StorageProblem, UserError
from bot.refusals import rate_limited, refusal_text

C = TypeVar("C", bound=type)


class QuotaRefusal(QuotaExceeded):
    """QuotaExceeded with the figures behind the message; the refused job is recorded."""

    def __init__(self, fact: storage.QuotaRefused) -> None:
        super().__init__(refusal_text(fact.refusal))
        self.job_id = fact.job_id
        self.refusal = fact.refusal


def user_error(exc: storage.StorageError) -> UserError | None:
    """The UserError that tells a person what ``exc`` means; None when it is not theirs to hear."""
    match exc:
        case storage.QuotaRefused():
            return QuotaRefusal(exc)
        case storage.RateLimited():
            return rate_limited(exc)
        case storage.JobNotFound():
            return NotFound(f"No job {exc.job_id!r}.")
        case storage.SchemaTooNew():
            return StorageProblem(
                f"The database {exc.target} has schema version {exc.found}, but this kontext-bot knows "
                f"versions up to {exc.known}: it was written by a newer release. Upgrade kontext-bot, "
                "or use a backup made by this version. The database was not changed."
            )
        case storage.MigrationFailed():
            return StorageProblem(
                f"Migration {exc.migration} failed and was rolled back; the database stays at version "
                f"{exc.version}: {exc.detail}"
            )
        case storage.NotADatabase():
            return StorageProblem(f"Cannot open the database {exc.target}: {exc.detail}")
        case storage.DatabaseMissing():
            return StorageProblem(f"There is no database at {exc.target}; nothing was created there.")
        case storage.DatabaseBusy():
            return StorageProblem(
                f"The database {exc.target} is busy: another process has held its lock too long. "
                "Try again in a moment; if it keeps happening, look for a stuck process."
            )
        case storage.DatabaseFull():
            return StorageProblem(
                f"The database {exc.target} cannot grow: the disk is full or the file reached its size "
                "limit. Nothing was changed; free some space and try again."
            )
        case storage.DatabaseUnavailable():
            return StorageProblem(f"Cannot reach the database {exc.target}: {exc.detail}")
        case storage.UnsupportedTarget():
            return StorageProblem(
                f"unsupported URL scheme {exc.scheme!r}; use a SQLite path or postgresql://..."
            )
        case storage.SameDatabase():
            return StorageProblem(f"{exc.target} is the database itself; choose another file or database.")
        case storage.TargetNotEmpty():
            return StorageProblem(
                f"{exc.target} already holds data (in {', '.join(exc.tables)}); copy into an empty "
                "database. Nothing was written."
            )
        case storage.CopyMismatch():
            return StorageProblem(
                f"The copy in {exc.target} did not match its source and was not kept: "
                f"{'; '.join(exc.problems)}"
            )
    return None


@contextmanager
def worded() -> Iterator[None]:
    """Re-raise a StorageError from inside as its UserError (chained to the fact)."""
    try:
        yield
    except storage.StorageError as exc:
        error = user_error(exc)
        if error is None:
            raise
        raise error from exc


def speaks_for_storage(cls: C) -> C:
    """Class decorator: every public coroutine method of a service raises worded errors."""
    for name, method in list(vars(cls).items()):
        if name.startswith("_"):
            continue
        if isinstance(method, staticmethod) and inspect.iscoroutinefunction(method.__func__):
            setattr(cls, name, staticmethod(_worded_method(method.__func__)))
        elif inspect.iscoroutinefunction(method):
            setattr(cls, name, _worded_method(method))
    return cls


def _worded_method(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        with worded():
            return await method(*args, **kwargs)

    return wrapper
