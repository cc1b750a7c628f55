"""What only the PostgreSQL backend has: placeholder translation, READ ONLY reads, the guild lock
and its timeout, the listener connection, and connection errors that never show a password."""

from __future__ import annotations

import asyncio
import sys
import traceback

import asyncpg
import pytest

import storage
import storage.postgres
from storage import Conn, open_database
from storage.conn import lock_id, to_postgres
from storage.schema import latest_version
from tests.pg import Cluster
from tests.storage.conftest import GUILD, T0, new_job

PASSWORD = "s3cr%40t-Pa55"  # percent-encoded "@": the decoded form must not leak either


@pytest.fixture
async def pg(postgres_run):
    db = await open_database(postgres_run.new_target())
    try:
        yield db
    finally:
        await db.close()


def test_placeholders_are_numbered_once_per_sql_text():
    assert to_postgres("SELECT a FROM t WHERE b = ? AND c = ?") == (
        "SELECT a FROM t WHERE b = $1 AND c = $2",
        2,
    )
    sql, names = to_postgres("UPDATE t SET a = :a, b = :b WHERE id = :id AND (:a IS NULL) AND x::int = 1")
    assert sql == "UPDATE t SET a = $1, b = $2 WHERE id = $3 AND ($1 IS NULL) AND x::int = 1"
    assert names == ("a", "b", "id")
    assert to_postgres("SELECT 'a b' FROM t WHERE x = ?")[0] == "SELECT 'a b' FROM t WHERE x = $1"
    for bad in ("SELECT '?' FROM t", "SELECT ':name' FROM t", "SELECT ? FROM t WHERE a = :a"):
        with pytest.raises(ValueError):
            to_postgres(bad)
    assert lock_id("guild:1") == lock_id("guild:1") != lock_id("guild:2")
    assert -(2**63) <= lock_id("guild:1") < 2**63


async def test_a_read_is_read_only(pg):
    async def sneaky(conn: Conn) -> None:
        await conn.execute("INSERT INTO audit (at, action) VALUES (?, ?)", ("t", "sneaky"))

    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        await pg.read(sneaky)
    assert await storage.audit_log(pg) == []


async def test_a_reservation_waits_for_its_guild_and_not_for_others(pg, postgres_run):
    await storage.set_guild_budget(pg, GUILD, 10**6, now=T0)
    holder = await asyncpg.connect(postgres_run.url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", lock_id(f"guild:{GUILD}"))
        waiting = asyncio.create_task(storage.accept_job(pg, new_job(free_quota=0), now=T0))
        other = await storage.accept_job(pg, new_job(guild_id=GUILD + 1), now=T0)  # another guild runs
        assert other.charged_to == "free"
        await asyncio.sleep(0.2)
        assert not waiting.done()  # ours waits for the lock holder
        await holder.execute("SELECT pg_advisory_unlock($1)", lock_id(f"guild:{GUILD}"))
        assert (await asyncio.wait_for(waiting, 10)).charged_to == "guild"
    finally:
        await holder.close()


async def test_a_settle_takes_the_same_guild_lock_computed_in_sql(pg, postgres_run):
    # lock_job derives the key from the job's row in SQL; it must be the number lock_id() gives.
    r = await storage.accept_job(pg, new_job(), now=T0)
    holder = await asyncpg.connect(postgres_run.url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", lock_id(f"guild:{GUILD}"))
        settling = asyncio.create_task(storage.complete_job(pg, r.job_id, 1, now=T0))
        await asyncio.sleep(0.2)
        assert not settling.done()
        await holder.execute("SELECT pg_advisory_unlock($1)", lock_id(f"guild:{GUILD}"))
        assert not (await asyncio.wait_for(settling, 10)).already
    finally:
        await holder.close()


async def test_a_lock_held_past_the_lock_timeout_is_database_busy(postgres_run, monkeypatch):
    monkeypatch.setitem(storage.postgres.SERVER_SETTINGS, "lock_timeout", "200")
    target = postgres_run.new_target()
    holder = await asyncpg.connect(postgres_run.url)
    try:
        async with await open_database(target) as db:
            await holder.execute("SELECT pg_advisory_lock($1)", lock_id(f"guild:{GUILD}"))
            with pytest.raises(storage.DatabaseBusy):
                await storage.accept_job(db, new_job(), now=T0)
            await holder.execute("SELECT pg_advisory_unlock($1)", lock_id(f"guild:{GUILD}"))
            assert (await storage.accept_job(db, new_job(), now=T0)).charged_to == "free"
    finally:
        await holder.close()


async def test_another_process_hears_the_notifications(pg, postgres_run):
    # Two Database objects: two pools and a listener connection, as two processes would have.
    heard: asyncio.Queue[str] = asyncio.Queue()

    async def on_job(payload: str) -> None:
        await heard.put(payload)

    async def announce(conn: Conn, payload: str) -> None:
        conn.notify("jobs", payload)
        conn.notify("jobs", payload)  # the same one twice in a transaction folds into one

    target = pg.target.value
    async with await open_database(target) as other, await other.listen("jobs", on_job):
        await pg.write(announce, "job-1")
        await pg.write(announce, "job-2")
        assert [await asyncio.wait_for(heard.get(), 10) for _ in range(2)] == ["job-1", "job-2"]
        assert heard.empty()


async def test_the_listener_reconnects_when_its_connection_is_lost(pg, postgres_run):
    heard: asyncio.Queue[str] = asyncio.Queue()

    async def on_job(payload: str) -> None:
        await heard.put(payload)

    async def announce(conn: Conn, payload: str) -> None:
        conn.notify("jobs", payload)

    await pg.listen("jobs", on_job)
    admin = await asyncpg.connect(postgres_run.url)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN%'"
        )
        assert killed == 1
    finally:
        await admin.close()
    for _ in range(100):  # the reconnect backs off from 0.5 s; announce until it is heard
        await pg.write(announce, "after")
        try:
            assert await asyncio.wait_for(heard.get(), 0.2) == "after"
            break
        except TimeoutError:
            continue
    else:
        pytest.fail("the listener never came back")


def _no_secret(exc: BaseException) -> None:
    text = "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)
    for secret in (PASSWORD, "s3cr@t-Pa55"):
        assert secret not in text
    assert "[redacted]" in str(exc)


async def test_connection_refused_names_the_server_without_its_password():
    url = f"postgresql://kontext:{PASSWORD}@127.0.0.1:9/kontext"  # port 9: nothing listens
    with pytest.raises(storage.DatabaseUnavailable) as err:
        await open_database(url)
    assert err.value.target == "postgresql://kontext:[redacted]@127.0.0.1:9/kontext"
    _no_secret(err.value)
    assert PASSWORD not in repr(storage.parse_target(url))


async def test_a_bad_password_is_database_unavailable_without_the_password():
    cluster = await asyncio.to_thread(Cluster.start, "the-right-one")
    try:
        url = f"postgresql://postgres:{PASSWORD}@/postgres?host={cluster.folder}"
        with pytest.raises(storage.DatabaseUnavailable, match="authentication failed") as err:
            await open_database(url)
        _no_secret(err.value)
        async with await open_database(
            f"postgresql://postgres:the-right-one@/postgres?host={cluster.folder}"
        ) as db:
            assert await storage.schema_version(db) == latest_version("postgres")
    finally:
        await asyncio.to_thread(cluster.stop)


async def test_a_missing_database_is_database_missing(postgres_run):
    url = postgres_run.url.replace(postgres_run.database, "kontext_no_such_database")
    with pytest.raises(storage.DatabaseMissing):
        await open_database(url, create=False)


async def test_without_the_driver_the_error_says_which_extra_to_install(monkeypatch, postgres_run):
    monkeypatch.setitem(sys.modules, "asyncpg", None)
    monkeypatch.delitem(sys.modules, "storage.postgres")
    with pytest.raises(storage.DatabaseUnavailable, match=r"kontext-bot\[postgres\]"):
        await open_database(postgres_run.url)
