"""Opening, pragmas, migrations (upgrade in place, refusal of newer schemas) and online backup."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import sqlite3

import aiosqlite
import pytest

import storage
from storage.db import MIGRATIONS_DIR, StorageError, migration_files, open_database, split_statements
from tests.storage.conftest import T0, new_job


def _pragma(path, name):
    with sqlite3.connect(path) as conn:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]


async def test_fresh_database_is_migrated_in_wal_with_foreign_keys(tmp_path):
    path = tmp_path / "deep" / "dir" / "k.db"  # the parent directory is created
    async with await open_database(path) as db:
        assert await storage.schema_version(db) == len(migration_files())

        def pragmas(conn):
            return [conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("foreign_keys", "busy_timeout")]

        assert await db.read(pragmas) == [1, 10_000]
        assert await db.write(pragmas) == [1, 10_000]
    assert _pragma(path, "journal_mode") == "wal"


async def test_reopening_keeps_data_and_version(tmp_path):
    path = tmp_path / "k.db"
    async with await open_database(path) as db:
        reservation = await storage.accept_job(db, new_job(), now=T0)
    async with await open_database(path) as db:
        assert (await storage.get_job(db, reservation.job_id)).status == "queued"
        assert await storage.schema_version(db) == 1


def _migrations(tmp_path, *extra: str):
    folder = tmp_path / "migrations"
    folder.mkdir(exist_ok=True)
    shutil.copy(MIGRATIONS_DIR / "0001_init.sql", folder / "0001_init.sql")
    for number, sql in enumerate(extra, start=2):
        (folder / f"{number:04d}_step.sql").write_text(sql)
    return folder


async def test_an_older_database_upgrades_in_place(tmp_path):
    path = tmp_path / "k.db"
    async with await open_database(path, migrations=_migrations(tmp_path)) as db:
        reservation = await storage.accept_job(db, new_job(), now=T0)
    newer = _migrations(
        tmp_path,
        "ALTER TABLE jobs ADD COLUMN note TEXT;\nCREATE TABLE extra (x INTEGER);\n-- a trailing comment\n",
    )
    async with await open_database(path, migrations=newer) as db:
        assert await storage.schema_version(db) == 2
        job = await storage.get_job(db, reservation.job_id)  # the old rows survive the upgrade
        assert job is not None and job.status == "queued"


async def test_a_failing_migration_is_rolled_back_whole(tmp_path):
    path = tmp_path / "k.db"
    async with await open_database(path, migrations=_migrations(tmp_path)):
        pass
    broken = _migrations(
        tmp_path, "CREATE TABLE half_done (x INTEGER);\nINSERT INTO no_such_table VALUES (1);\n"
    )
    with pytest.raises(StorageError, match=r"0002_step\.sql failed and was rolled back"):
        await open_database(path, migrations=broken)
    assert _pragma(path, "user_version") == 1
    with sqlite3.connect(path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "half_done" not in names


async def test_a_newer_database_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "k.db"
    async with await open_database(path):
        pass
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
        conn.execute("PRAGMA journal_mode = DELETE")  # so the file alone is the whole database
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(StorageError, match=r"schema version 99.*knows versions up to 1") as err:
        await open_database(path)
    assert "not changed" in err.value.user_message
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert _pragma(path, "journal_mode") == "delete"


async def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are not the pages you are looking for" * 100)
    with pytest.raises(StorageError, match=r"Cannot open the database .*not a database"):
        await open_database(path)


def test_migrations_are_numbered_without_gaps(tmp_path):
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0003_c.sql").write_text("SELECT 1;")
    with pytest.raises(RuntimeError, match="without gaps"):
        migration_files(tmp_path)


def test_split_statements_keeps_trigger_bodies_whole():
    script = """
    CREATE TABLE t (x);  -- a comment; with a semicolon
    CREATE TRIGGER tr AFTER INSERT ON t BEGIN
        SELECT 1; SELECT 2;
    END;
    """
    statements = split_statements(script)
    assert len(statements) == 2
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")


def test_aiosqlite_still_runs_callables_on_its_thread():
    # storage.db runs whole transactions through aiosqlite's Connection._execute and ._conn; if a
    # new aiosqlite release renames them, this says so before anything else breaks.
    assert callable(getattr(aiosqlite.Connection, "_execute", None))
    assert isinstance(getattr(aiosqlite.Connection, "_conn", None), property)


async def test_a_failed_transaction_leaves_nothing_behind(db):
    def half_then_fail(conn):
        conn.execute(
            "INSERT INTO audit (at, action) VALUES ('2025-01-01T00:00:00.000000Z', 'half')",
        )
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await db.write(half_then_fail)
    assert await storage.audit_log(db) == []
    await storage.set_guild_budget(db, 1, 5, now=T0)  # the connection is usable afterwards
    assert len(await storage.audit_log(db)) == 1


async def test_backup_is_consistent_while_the_bot_writes(db, tmp_path):
    await storage.set_guild_budget(db, 100, 10**9, now=T0)

    async def writer():
        for i in range(150):
            r = await storage.accept_job(db, new_job(user_id=1000 + i, free_quota=0), now=T0)
            await storage.complete_job(db, r.job_id, 1, now=T0)

    target = tmp_path / "backups" / "copy.db"
    task = asyncio.create_task(writer())
    await asyncio.sleep(0)
    await storage.backup(db, target)
    await task
    assert not target.with_name("copy.db.partial").exists()
    async with await open_database(target) as copy:
        assert await storage.check(copy, now=T0) == []
        copied = len(await storage.list_jobs(copy, limit=1000))
    assert 0 <= copied <= 150
    with pytest.raises(StorageError, match="database itself"):
        await storage.backup(db, db.path)


async def test_close_twice_is_harmless(tmp_path):
    db = await open_database(tmp_path / "k.db")
    await db.close()
    await db.close()


def _audit(action):
    def insert(conn):
        conn.execute("INSERT INTO audit (at, action) VALUES ('2025-01-01T00:00:00.000000Z', ?)", (action,))
        return action

    return insert


async def test_a_failing_write_in_a_group_commit_rolls_back_alone(db):
    def half_then_fail(conn):
        _audit("failed")(conn)
        raise ValueError("boom")

    def sees_earlier_writes(conn):
        return [r[0] for r in conn.execute("SELECT action FROM audit ORDER BY id")]

    before = db.commits
    results = await asyncio.gather(
        db.write(_audit("first")),
        db.write(half_then_fail),
        db.write(_audit("third")),
        db.write(sees_earlier_writes),
        return_exceptions=True,
    )
    assert db.commits == before + 1  # all four queued together: one transaction
    assert results[0] == "first" and results[2] == "third"
    assert isinstance(results[1], ValueError) and str(results[1]) == "boom"
    assert results[3] == ["first", "third"]  # an operation sees the writes before it, not the failed one
    assert [e.action for e in await storage.audit_log(db)] == ["third", "first"]  # newest first


async def test_a_failed_group_commit_fails_every_caller_in_it(db):
    def dangling_reference(conn):
        conn.execute("PRAGMA defer_foreign_keys = ON")  # checked at COMMIT, so the COMMIT fails
        conn.execute("INSERT INTO jobs_missing_parent_probe VALUES (1)")

    await db.write(
        lambda conn: conn.execute(
            "CREATE TABLE jobs_missing_parent_probe (team INTEGER REFERENCES teams (id))"
        )
    )
    results = await asyncio.gather(
        db.write(_audit("a")), db.write(dangling_reference), db.write(_audit("b")), return_exceptions=True
    )
    assert all(isinstance(r, sqlite3.IntegrityError) for r in results), results
    assert await storage.audit_log(db) == []
    assert await db.write(_audit("after")) == "after"  # the writer is usable afterwards


async def test_concurrent_writes_share_commits(db):
    await storage.set_guild_budget(db, 100, 10**9, now=T0)
    before = db.commits
    reservations = await asyncio.gather(
        *(storage.accept_job(db, new_job(user_id=1000 + i, free_quota=0), now=T0) for i in range(300))
    )
    assert len({r.job_id for r in reservations}) == 300
    assert db.commits - before < 300 / 4  # group commit: far fewer transactions than operations
    assert len(await storage.list_jobs(db, limit=1000)) == 300
    assert await storage.check(db, now=T0) == []
