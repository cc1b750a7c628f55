"""Numbered migrations, one folder per dialect: storage/migrations/{sqlite,postgres}/NNNN_name.sql.

Adding a migration is adding one file with the next number to *each* folder (the same number and
name; tests/storage/test_schema.py holds the two folders to that). Each backend's runner applies the
missing ones in order, one transaction per migration, and records the version in that transaction:
SQLite in ``PRAGMA user_version`` (storage/sqlite.py), PostgreSQL in the one-row ``schema_version``
table under an advisory lock (storage/postgres.py). A database at a higher version than this
release knows is refused before anything is written.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
DIALECTS = ("sqlite", "postgres")
_MIGRATION_NAME = re.compile(r"^(\d{4})_[A-Za-z0-9_-]+\.sql$")

# Every table of the schema that holds the server's data, with its primary key, parents before
# children (the order `db copy` inserts in). ``balances`` is derived: the ledger's trigger rebuilds it
# as the ledger's rows go in. tests/storage/test_schema.py fails when a migration adds a table that
# is not here, so a new table cannot be left out of `db copy`.
DATA_TABLES: dict[str, tuple[str, ...]] = {
    "guild_config": ("guild_id",),
    "free_quota": ("guild_id", "model"),
    "teams": ("id",),
    "jobs": ("id",),
    "ledger": ("id",),
    "balances": ("bucket", "day"),
    "audit": ("id",),
    "guild_channels": ("guild_id", "channel_id"),
    "user_settings": ("user_id",),
    "provider_state": ("provider",),  # what each provider account was learned to run at once
    "alert_settings": ("guild_id",),
    "alerts_sent": ("guild_id", "subject", "period_start", "threshold"),  # so a move re-sends nothing
    "rate_limits": ("guild_id", "role_id"),
    "role_free_quota": ("guild_id", "role_id", "model"),
}
DERIVED_TABLES = ("balances",)
# Not data: PostgreSQL's record of the migrations applied, and the roles live processes hold now.
META_TABLES = ("schema_version", "roles")


def migrations_dir(dialect: str) -> Path:
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}")
    return MIGRATIONS_DIR / dialect


def migration_files(directory: Path) -> list[tuple[int, Path]]:
    """The numbered migrations in order; numbers must run 1, 2, 3 ... without gaps."""
    found = sorted(
        (int(m.group(1)), item) for item in directory.iterdir() if (m := _MIGRATION_NAME.match(item.name))
    )
    if [n for n, _ in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations in {directory} must be numbered 0001, 0002, ... without gaps")
    return found


def latest_version(dialect: str) -> int:
    return len(migration_files(migrations_dir(dialect)))


def split_statements(script: str) -> list[str]:
    """Split a SQLite script into statements (trigger bodies keep their inner semicolons)."""
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
