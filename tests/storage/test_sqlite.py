"""What only the SQLite backend has: pragmas and files, the aiosqlite thread, operations driven
without suspending, group commit, and SQLite's own failures (busy, full, not a database)."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3

import aiosqlite
import pytest

import storage
import storage.sqlite
from storage import Conn, open_database, queue
from storage.schema import latest_version
from tests.storage.conftest import T0, new_job


def _pragma(path, name):
    with sqlite3.connect(path) as conn:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]


def _one(raw, name):
    return raw.execute(f"PRAGMA {name}").fetchone()[0]


async def _pragmas(conn: Conn) -> list[int]:
    return [await conn.fetchval(f"PRAGMA {p}") for p in ("foreign_keys", "busy_timeout")]


async def test_fresh_database_is_migrated_in_wal_with_foreign_keys(tmp_path):
    path = tmp_path / "deep" / "dir" / "k.db"  # the parent directory is created
    async with await open_database(path) as db:
        assert await storage.schema_version(db) == latest_version("sqlite")
        assert await db.read(_pragmas) == [1, 10_000]
        assert await db.write(_pragmas) == [1, 10_000]
    assert _pragma(path, "journal_mode") == "wal"


async def test_create_false_never_makes_a_file(tmp_path):
    path = tmp_path / "nowhere" / "k.db"
    with pytest.raises(storage.DatabaseMissing) as err:
        await open_database(path, create=False)
    assert err.value.target == str(path)
    assert not path.parent.exists()


async def test_a_newer_database_file_is_left_byte_for_byte(tmp_path):
    path = tmp_path / "k.db"
    async with await open_database(path):
        pass
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
        conn.execute("PRAGMA journal_mode = DELETE")  # so the file alone is the whole database
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(storage.SchemaTooNew):
        await open_database(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert _pragma(path, "journal_mode") == "delete"


async def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are not the pages you are looking for" * 100)
    with pytest.raises(storage.NotADatabase, match="not a database") as err:
        await open_database(path)
    assert err.value.target == str(path)


def test_aiosqlite_still_runs_callables_on_its_thread():
    # storage.sqlite runs whole transactions through aiosqlite's Connection._execute and ._conn; if
    # a new aiosqlite release renames them, this says so before anything else breaks.
    assert callable(getattr(aiosqlite.Connection, "_execute", None))
    assert isinstance(getattr(aiosqlite.Connection, "_conn", None), property)


async def test_an_operation_that_awaits_real_io_is_stopped_and_rolled_back(sqlite_db):
    async def sleepy(conn: Conn) -> None:
        await conn.execute("INSERT INTO audit (at, action) VALUES ('t', 'half')")
        await asyncio.sleep(0)  # not a Conn call: would suspend on the SQLite thread

    with pytest.raises(RuntimeError, match="awaited real I/O"):
        await sqlite_db.write(sleepy)
    with pytest.raises(RuntimeError, match="awaited real I/O"):
        await sqlite_db.read(sleepy)
    assert await storage.audit_log(sqlite_db) == []
    await storage.set_guild_budget(sqlite_db, 1, 5, now=T0)  # the writer goes on
    assert len(await storage.audit_log(sqlite_db)) == 1


def _audit(action):
    async def insert(conn: Conn) -> str:
        await conn.execute(
            "INSERT INTO audit (at, action) VALUES ('2025-01-01T00:00:00.000000Z', ?)", (action,)
        )
        return action

    return insert


async def test_a_failing_write_in_a_group_commit_rolls_back_alone(sqlite_db):
    db = sqlite_db
    seen: list[str] = []

    async def heard(payload: str) -> None:
        seen.append(payload)

    async def half_then_fail(conn: Conn) -> None:
        await _audit("failed")(conn)
        conn.notify("audit", "failed")
        raise ValueError("boom")

    async def sees_earlier_writes(conn: Conn) -> list[str]:
        conn.notify("audit", "fourth")
        return [r[0] for r in await conn.fetchall("SELECT action FROM audit ORDER BY id")]

    async def first(conn: Conn) -> str:
        conn.notify("audit", "first")
        return await _audit("first")(conn)

    await db.listen("audit", heard)
    before = db.commits
    results = await asyncio.gather(
        db.write(first),
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
    await asyncio.sleep(0)
    assert seen == ["first", "fourth"]  # delivered after the batch's COMMIT; the failed one's dropped


async def test_a_failed_group_commit_fails_every_caller_in_it(sqlite_db):
    db = sqlite_db
    seen: list[str] = []

    async def heard(payload: str) -> None:
        seen.append(payload)

    async def dangling_reference(conn: Conn) -> None:
        await conn.execute("PRAGMA defer_foreign_keys = ON")  # checked at COMMIT, so the COMMIT fails
        await conn.execute("INSERT INTO jobs_missing_parent_probe VALUES (1)")
        conn.notify("audit", "never")

    async def create(conn: Conn) -> None:
        await conn.execute("CREATE TABLE jobs_missing_parent_probe (team INTEGER REFERENCES teams (id))")

    await db.write(create)
    await db.listen("audit", heard)
    results = await asyncio.gather(
        db.write(_audit("a")), db.write(dangling_reference), db.write(_audit("b")), return_exceptions=True
    )
    assert all(isinstance(r, storage.IntegrityViolation) for r in results), results
    assert await storage.audit_log(db) == []
    assert await db.write(_audit("after")) == "after"  # the writer is usable afterwards
    await asyncio.sleep(0)
    assert seen == []


async def test_concurrent_writes_share_commits(sqlite_db):
    db = sqlite_db
    await storage.set_guild_budget(db, 100, 10**9, now=T0)
    before = db.commits
    reservations = await asyncio.gather(
        *(storage.accept_job(db, new_job(user_id=1000 + i, free_quota=0), now=T0) for i in range(300))
    )
    assert len({r.job_id for r in reservations}) == 300
    assert db.commits - before < 300 / 4  # group commit: far fewer transactions than operations
    assert len(await storage.list_jobs(db, limit=1000)) == 300
    assert await storage.check(db, now=T0) == []


async def test_a_full_disk_is_database_full_and_writes_nothing(sqlite_db):
    async def cap_the_file(conn: Conn) -> None:
        pages = await conn.fetchval("PRAGMA page_count")
        await conn.fetchval(f"PRAGMA max_page_count = {pages + 1:d}")  # what a full disk looks like

    await sqlite_db.write(cap_the_file)
    with pytest.raises(storage.DatabaseFull) as err:
        await storage.set_user_settings(sqlite_db, 5, default_model="x" * 200_000, now=T0)
    assert err.value.target == str(sqlite_db.path)
    assert (await storage.get_user_settings(sqlite_db, 5)).default_model is None


async def test_a_lock_held_past_the_busy_timeout_is_database_busy(tmp_path, monkeypatch):
    monkeypatch.setattr(storage.sqlite, "BUSY_TIMEOUT_MS", 200)
    path = tmp_path / "k.db"
    async with await open_database(path) as db:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another process holding the write lock
            with pytest.raises(storage.DatabaseBusy):
                await storage.set_guild_budget(db, 1, 5, now=T0)
            other.execute("ROLLBACK")
        finally:
            other.close()
        await storage.set_guild_budget(db, 1, 5, now=T0)  # and once it lets go, all is well


async def test_the_wal_is_checkpointed_off_the_writer_and_stays_bounded(tmp_path, monkeypatch):
    # The writer never checkpoints inside a COMMIT; the report thread does every CHECKPOINT_EVERY
    # commits and the writer finishes it past WAL_RESET_FRAMES, so steady writes keep the WAL small.
    monkeypatch.setattr(storage.sqlite, "CHECKPOINT_EVERY", 10)
    monkeypatch.setattr(storage.sqlite, "WAL_RESET_FRAMES", 40)
    path = tmp_path / "k.db"
    db = await open_database(path)
    try:
        assert await storage.sqlite._on_thread(db._writer, lambda raw: _one(raw, "wal_autocheckpoint")) == 0
        for i in range(1200):
            await storage.set_guild_budget(db, i, 1000 + i, now=T0)
        page = _pragma(path, "page_size")
        # The WAL file's size is its high-water mark. Never checkpointed, these 1200 commits of two
        # pages or more would leave some 2,500 frames; restarted now and then, it stays far below.
        wal_frames = (path.with_name("k.db-wal").stat().st_size - 32) // (page + 24)
        assert 0 < wal_frames < 1500, wal_frames
        assert (await storage.get_guild_config(db, 1199)).budget_micros == 2199
    finally:
        await db.close()


async def test_a_job_is_not_recorded_when_the_disk_has_no_room_to_see_it_through(tmp_path, monkeypatch):
    route = queue.RouteChoice("vtrix", "flux_kontext_pro", 40_000)
    async with await open_database(tmp_path / "k.db") as db:
        monkeypatch.setattr(storage.sqlite_faults, "ROOM_BYTES", 1 << 62)  # more than any disk holds
        with pytest.raises(storage.DatabaseFull) as err:
            await queue.enqueue(db, new_job(), routes=[route], now=T0)
        assert "free on its disk" in err.value.detail
        assert await storage.list_jobs(db) == [] and await storage.check(db, now=T0) == []
        monkeypatch.setattr(storage.sqlite_faults, "ROOM_BYTES", 1)
        assert (await queue.enqueue(db, new_job(), routes=[route], now=T0)).charged_to == "free"
