"""Opening a database: which backend a target names, and the schema brought up to date.

Apart from storage/db.py (the one API both backends implement) so that the backends, which build on
that API, and the function that picks one of them do not import each other.
"""

from __future__ import annotations

from pathlib import Path

from storage.db import Database
from storage.errors import DatabaseUnavailable
from storage.targets import Target, parse_target


async def open_database(
    target: str | Path | Target,
    *,
    create: bool = True,
    migrations: Path | None = None,
    pool_size: int = 10,
) -> Database:
    """Open the database at ``target`` (a SQLite path, or a postgresql:// URL) and bring its schema
    up to date. ``create=False``: a missing SQLite file raises DatabaseMissing instead of being made.
    ``migrations``: another folder of migrations for this dialect (tests). ``pool_size``: PostgreSQL
    connections at most.

    Raises UnsupportedTarget, DatabaseMissing, NotADatabase, SchemaTooNew (nothing was changed),
    MigrationFailed (rolled back) or DatabaseUnavailable.
    """
    parsed = parse_target(target)
    if parsed.dialect == "sqlite":
        from storage.sqlite import open_sqlite

        return await open_sqlite(parsed, create=create, migrations=migrations)
    try:
        from storage.postgres import open_postgres
    except ImportError as e:  # asyncpg is the optional extra
        raise DatabaseUnavailable(
            parsed.label,
            f"the PostgreSQL driver is not installed ({e.name}): pip install 'kontext-bot[postgres]'",
        ) from None
    return await open_postgres(parsed, migrations=migrations, pool_size=pool_size)
