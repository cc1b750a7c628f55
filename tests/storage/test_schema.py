"""The two dialects' migrations stay in step, and every table is one `db copy` knows."""

from __future__ import annotations

import hashlib

from storage import Conn, open_database
from storage.schema import DATA_TABLES, DIALECTS, META_TABLES, migration_files, migrations_dir

# Databases at user_version 1 were made by this very file: it must never change.
SQLITE_0001_SHA256 = "123a3e3bf596ba3be2750cf3a27285e8137f5c2f5fa0b094d2009d4a021142d0"


def test_the_first_sqlite_migration_is_the_one_existing_databases_have():
    data = (migrations_dir("sqlite") / "0001_init.sql").read_bytes()
    assert hashlib.sha256(data).hexdigest() == SQLITE_0001_SHA256


def test_each_dialect_has_the_same_migrations():
    # Adding 0002 means adding it to both folders under the same name.
    names = {d: [f.name for _, f in migration_files(migrations_dir(d))] for d in DIALECTS}
    assert names["sqlite"] == names["postgres"]


async def _schema(conn: Conn) -> dict[str, list[str]]:
    if conn.dialect == "sqlite":
        tables = [
            r[0]
            for r in await conn.fetchall(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {t: [r["name"] for r in await conn.fetchall(f"PRAGMA table_info({t})")] for t in tables}
    rows = await conn.fetchall(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
    )
    found: dict[str, list[str]] = {}
    for table, column in rows:
        found.setdefault(table, []).append(column)
    return found


async def test_every_table_is_known_to_db_copy(db_target):
    # A migration that adds a table must add it to storage.schema.DATA_TABLES, or `db copy` would
    # silently leave it behind.
    async with await open_database(db_target) as db:
        schema = await db.read(_schema)
    # schema_version is PostgreSQL's own (SQLite keeps the version in PRAGMA user_version).
    meta = set(META_TABLES) - ({"schema_version"} if db.dialect == "sqlite" else set())
    assert set(schema) == set(DATA_TABLES) | meta
    for table, key in DATA_TABLES.items():
        assert set(key) <= set(schema[table]), table


async def test_both_dialects_have_the_same_columns_in_the_same_order(postgres_run, tmp_path):
    sqlite_db = await open_database(tmp_path / "k.db")
    pg_db = await open_database(postgres_run.new_target())
    try:
        mine, theirs = await sqlite_db.read(_schema), await pg_db.read(_schema)
    finally:
        await sqlite_db.close()
        await pg_db.close()
    for table in DATA_TABLES:
        assert mine[table] == theirs[table], table
