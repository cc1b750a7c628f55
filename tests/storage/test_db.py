"""Opening, migrations (upgrade in place, rollback, refusal of newer schemas, racing starts),
transactions, notifications and backup -- on both backends (SQLite- and PostgreSQL-only
behaviour: test_sqlite.py, test_postgres.py)."""

from __future__ import annotations

import asyncio
import shutil

import pytest

import storage
from storage import Conn, open_database
from storage.schema import latest_version, migration_files, migrations_dir, split_statements
from tests.storage.conftest import T0, new_job


async def test_reopening_keeps_data_and_version(db_target):
    async with await open_database(db_target) as db:
        reservation = await storage.accept_job(db, new_job(), now=T0)
    async with await open_database(db_target, create=False) as db:
        assert (await storage.get_job(db, reservation.job_id)).status == "queued"
        assert await storage.schema_version(db) == len(migration_files(migrations_dir(db.dialect)))


def _migrations(tmp_path, dialect: str, *extra: str):
    """This release's migrations, then ``extra`` ones numbered after them."""
    folder = tmp_path / f"migrations-{dialect}"
    folder.mkdir(exist_ok=True)
    for source in migrations_dir(dialect).glob("*.sql"):
        shutil.copy(source, folder / source.name)
    for number, sql in enumerate(extra, start=latest_version(dialect) + 1):
        (folder / f"{number:04d}_step.sql").write_text(sql)
    return folder


def _dialect(target: str) -> str:
    return storage.parse_target(target).dialect


async def _tables(db) -> set[str]:
    async def names(conn: Conn) -> set[str]:
        if conn.dialect == "sqlite":
            rows = await conn.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
        else:
            rows = await conn.fetchall(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            )
        return {r[0] for r in rows}

    return await db.read(names)


async def test_an_older_database_upgrades_in_place(db_target, tmp_path):
    dialect = _dialect(db_target)
    async with await open_database(db_target, migrations=_migrations(tmp_path, dialect)) as db:
        reservation = await storage.accept_job(db, new_job(), now=T0)
    newer = _migrations(
        tmp_path,
        dialect,
        "ALTER TABLE jobs ADD COLUMN note TEXT;\nCREATE TABLE extra (x INTEGER);\n-- a trailing comment\n",
    )
    async with await open_database(db_target, migrations=newer) as db:
        assert await storage.schema_version(db) == latest_version(dialect) + 1
        job = await storage.get_job(db, reservation.job_id)  # the old rows survive the upgrade
        assert job is not None and job.status == "queued"
        assert "extra" in await _tables(db)


async def test_a_failing_migration_is_rolled_back_whole(db_target, tmp_path):
    dialect = _dialect(db_target)
    async with await open_database(db_target, migrations=_migrations(tmp_path, dialect)):
        pass
    broken = _migrations(
        tmp_path, dialect, "CREATE TABLE half_done (x INTEGER);\nINSERT INTO no_such_table VALUES (1);\n"
    )
    with pytest.raises(storage.MigrationFailed) as failed:
        await open_database(db_target, migrations=broken)
    step = f"{latest_version(dialect) + 1:04d}_step.sql"
    assert (failed.value.migration, failed.value.version) == (step, latest_version(dialect))
    async with await open_database(db_target) as db:
        assert await storage.schema_version(db) == latest_version(dialect)
        assert "half_done" not in await _tables(db)


async def _set_version(db, version: int) -> None:
    async def bump(conn: Conn) -> None:
        if conn.dialect == "sqlite":
            await conn.execute(f"PRAGMA user_version = {version:d}")
        else:
            await conn.execute("UPDATE schema_version SET version = ?", (version,))

    await db.write(bump)


async def test_a_newer_database_is_refused_and_left_untouched(db_target):
    async with await open_database(db_target) as db:
        await _set_version(db, 99)
        tables = await _tables(db)
    with pytest.raises(storage.SchemaTooNew) as err:
        await open_database(db_target)
    assert (err.value.found, err.value.known) == (99, latest_version(_dialect(db_target)))
    # SQLite's file is compared byte for byte in test_sqlite.py; here: nothing was migrated.
    if _dialect(db_target) == "postgres":
        import asyncpg

        conn = await asyncpg.connect(db_target)
        try:
            assert await conn.fetchval("SELECT version FROM schema_version") == 99
            rows = await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            )
            assert {r[0] for r in rows} == tables
        finally:
            await conn.close()


async def test_processes_starting_at_once_migrate_exactly_once(db_target):
    # Four connections (their own pools / threads) open a fresh database at the same moment: one
    # applies 0001 under the lock, the others wait, re-read the version and apply nothing.
    opened = await asyncio.gather(*(open_database(db_target) for _ in range(4)))
    try:
        latest = latest_version(_dialect(db_target))
        assert [await storage.schema_version(db) for db in opened] == [latest] * 4
        await storage.accept_job(opened[0], new_job(), now=T0)
        assert len(await storage.list_jobs(opened[3])) == 1
        assert await storage.check(opened[1], now=T0) == []
    finally:
        for db in opened:
            await db.close()


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


async def _audit(conn: Conn, action: str) -> str:
    await conn.execute(
        "INSERT INTO audit (at, action) VALUES (?, ?)", ("2025-01-01T00:00:00.000000Z", action)
    )
    return action


async def test_a_failed_transaction_leaves_nothing_behind(db):
    async def half_then_fail(conn: Conn) -> None:
        await _audit(conn, "half")
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await db.write(half_then_fail)
    assert await storage.audit_log(db) == []
    await storage.set_guild_budget(db, 1, 5, now=T0)  # the connection is usable afterwards
    assert len(await storage.audit_log(db)) == 1


async def test_a_constraint_violation_is_an_integrity_violation(db):
    await db.write(_audit, "once")

    async def duplicate(conn: Conn) -> None:
        row = await conn.fetchone("SELECT * FROM audit")
        await conn.execute("INSERT INTO audit (id, at, action) VALUES (?, ?, ?)", (row["id"], row["at"], "x"))

    with pytest.raises(storage.IntegrityViolation):
        await db.write(duplicate)
    assert [e.action for e in await storage.audit_log(db)] == ["once"]


async def test_notifications_arrive_after_commit_and_never_after_a_rollback(db):
    got: list[str] = []
    arrived = asyncio.Event()

    async def on_job(payload: str) -> None:
        got.append(payload)
        arrived.set()

    async def announce(conn: Conn, payload: str, fail: bool) -> None:
        await _audit(conn, payload)
        conn.notify("jobs", payload)
        if fail:
            raise ValueError("rolled back")

    listening = await db.listen("jobs", on_job)
    with pytest.raises(ValueError):
        await db.write(announce, "lost", True)
    await db.write(announce, "one", False)
    await asyncio.wait_for(arrived.wait(), 10)
    assert got == ["one"]
    await listening.stop()
    arrived.clear()
    await db.write(announce, "unheard", False)

    # A second listener on another channel still hears its own; the stopped one heard nothing more.
    other = asyncio.Event()

    async def on_other(payload: str) -> None:
        got.append(payload)
        other.set()

    async with await db.listen("other_channel", on_other):

        async def ping(conn: Conn) -> None:
            conn.notify("other_channel", "ping")

        await db.write(ping)
        await asyncio.wait_for(other.wait(), 10)
    assert got == ["one", "ping"]


async def test_notification_channels_and_payloads_are_checked(db):
    async def bad(conn: Conn, channel: str, payload: str) -> None:
        conn.notify(channel, payload)

    for channel, payload in (("Jobs; DROP", ""), ("jobs", "x" * 8000)):
        with pytest.raises(ValueError):
            await db.write(bad, channel, payload)


async def test_backup_is_consistent_while_the_bot_writes(db, tmp_path):
    await storage.set_guild_budget(db, 100, 10**9, now=T0)

    async def writer():
        for i in range(150):
            r = await storage.accept_job(db, new_job(user_id=1000 + i, free_quota=0), now=T0)
            await storage.complete_job(db, r.job_id, 1, now=T0)

    target = tmp_path / "backups" / "copy.db"
    task = asyncio.create_task(writer())
    await asyncio.sleep(0)
    await storage.backup(db, target)  # PostgreSQL: a copy into a new SQLite file
    await task
    assert not target.with_name("copy.db.partial").exists()
    async with await open_database(target, create=False) as copy:
        assert copy.dialect == "sqlite"
        assert await storage.check(copy, now=T0) == []
        copied = len(await storage.list_jobs(copy, limit=1000))
    assert 0 <= copied <= 150
    await storage.backup(db, target)  # a backup replaces an older one
    async with await open_database(target, create=False) as copy:
        assert len(await storage.list_jobs(copy, limit=1000)) == 150


async def test_close_twice_is_harmless(db_target):
    db = await open_database(db_target)
    await db.close()
    await db.close()


def test_an_unsupported_url_is_refused(tmp_path):
    for url in ("mysql://u:p@h/db", "file:///tmp/k.db", "sqlite://k.db"):
        with pytest.raises(storage.UnsupportedTarget) as err:
            asyncio.run(open_database(url))
        assert err.value.scheme == url.split(":")[0]
    assert storage.parse_target(str(tmp_path / "a:b.db")).dialect == "sqlite"  # a path, not a URL
