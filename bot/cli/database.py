"""``db backup``, ``db check``, ``db migrate``: maintenance of the database KONTEXT_DB names; and
``db copy SOURCE TARGET``, which moves a server between two databases it is given.

A new ``db`` subcommand is a function here (decorated with ``db_command``) plus its arguments in
bot/cli/parser.py's ``_add_db``.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from bot.cli.common import EXIT_FAILED, EXIT_OK, Handler, database_missing
from bot.errors import UserError

if TYPE_CHECKING:
    from bot.accounts import AccountService
    from bot.config import Settings


DbCommand = Callable[["AccountService", argparse.Namespace, "Settings"], Awaitable[int]]


def db_command(fn: DbCommand | None = None, *, create: bool = True) -> Any:
    """A ``db`` subcommand over the open services' AccountService; ``fn`` prints and returns the
    exit status. ``create=False``: for a command that only reads, a missing SQLite file is an error
    rather than a new empty database."""

    def wrap(fn: DbCommand) -> Handler:
        @functools.wraps(fn)
        async def handler(args: argparse.Namespace, settings: Settings) -> int:
            from bot.services import open_services

            async with open_services(settings, create_db=create) as svc:
                return await fn(svc.accounts, args, settings)

        return handler

    return wrap(fn) if fn is not None else wrap


async def backup(args: argparse.Namespace, settings: Settings) -> int:
    if database_missing(settings):  # a backup of nothing would make an empty database, then copy it
        raise UserError(f"No database at {settings.db_label}: there is nothing to back up.")
    return await _backup(args, settings)


@db_command(create=False)
async def _backup(acc: AccountService, args: argparse.Namespace, settings: Settings) -> int:
    path = await acc.backup(args.path)
    print(f"Backed up {settings.db_label} to {path}")
    return EXIT_OK


async def check(args: argparse.Namespace, settings: Settings) -> int:
    """Reads only: a database that does not exist yet is not created to be checked."""
    if database_missing(settings):
        print(f"No database at {settings.db_label} yet: nothing to check.")
        return EXIT_OK
    return await _check(args, settings)


@db_command(create=False)
async def _check(acc: AccountService, args: argparse.Namespace, settings: Settings) -> int:
    problems = await acc.check()
    for problem in problems:
        print(f"problem: {problem}")
    if problems:
        return EXIT_FAILED
    print("The books balance: every balance agrees with the ledger.")
    return EXIT_OK


@db_command
async def migrate(acc: AccountService, args: argparse.Namespace, settings: Settings) -> int:
    print(f"Database {settings.db_label} is at schema version {await acc.schema_version()}.")
    return EXIT_OK


async def copy(args: argparse.Namespace, settings: Settings) -> int:
    """KONTEXT_DB plays no part: SOURCE and TARGET are the databases (a missing SOURCE is refused,
    never created)."""
    from bot.accounts import AccountService

    report = await AccountService.copy_database(args.source, args.target)
    rows = ", ".join(f"{table} {count:,}" for table, count in report.rows.items())
    print(f"Copied {report.source} to {report.target} from one snapshot: {rows}.")
    for problem in report.source_problems:  # copied as they were; db check there says the same
        print(f"note: the source already had this problem: {problem}")
    print("Every table has the source's row count and db check finds nothing new on the target.")
    return EXIT_OK
