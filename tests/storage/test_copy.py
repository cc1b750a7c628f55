"""`db copy`: every table moved between backends from one snapshot, ids kept, checked before done;
a target with data, the source itself, or a copy that does not match is refused and left as it was."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

import storage
import storage.copy
from storage import Conn, open_database
from storage.schema import DATA_TABLES
from tests.storage.conftest import GUILD, PRICE, T0, new_job


@pytest.fixture(params=["to_sqlite", "to_postgres"])
def copy_target(request, tmp_path, postgres_run) -> str:
    if request.param == "to_sqlite":
        return str(tmp_path / "copies" / "moved.db")
    return postgres_run.new_target()


async def _books(db) -> None:
    """Some of everything: settings, teams, free, team, guild and operator jobs, a refusal,
    failures, a reversal, grants, channels, member settings."""
    await storage.set_guild_budget(db, GUILD, 20 * PRICE, "week", actor_id=9, now=T0)
    await storage.set_user_cap(db, GUILD, 15 * PRICE, actor_id=9, now=T0)
    await storage.set_free_quota(db, GUILD, "m", 3, "day", actor_id=9, now=T0)
    await storage.set_team(db, GUILD, 501, "Art", 4 * PRICE, actor_id=9, now=T0)
    await storage.set_channel_allowed(db, GUILD, 77, actor_id=9, now=T0)
    await storage.set_user_settings(db, 1, default_model="m", private_results=True, now=T0)
    await storage.grant_free_images(db, GUILD, 2, "m", 2, actor_id=9, now=T0)
    for i in range(12):
        job = new_job(user_id=i % 4 + 1, images=1 + i % 2, roles=(501,) * (i % 3 == 0))
        try:
            r = await storage.accept_job(db, job, now=T0 + timedelta(minutes=i))
        except storage.QuotaRefused:
            continue
        if i % 4 == 1:
            await storage.fail_job(db, r.job_id, error="timed out", now=T0)
        elif i % 4 != 3:  # i % 4 == 3 stays open (running), as a live server's would
            await storage.complete_job(db, r.job_id, 1, actual_micros=35_000, result_urls=["u"], now=T0)
    operator = await storage.accept_job(db, new_job(user_id=None, guild_id=None), now=T0)
    await storage.complete_job(db, operator.job_id, 1, now=T0)
    await storage.refund_job(db, operator.job_id, actor_id=9, reason="test", now=T0)
    await storage.mark_running(db, operator.job_id, "vtrix", "v/m", "task-9", now=T0)


async def _dump(conn: Conn) -> dict[str, list[tuple[str, dict]]]:
    out = {}
    for table, key in DATA_TABLES.items():
        rows = await conn.fetchall(f"SELECT * FROM {table}")
        names = list(rows[0].keys()) if rows else []
        # Sorted by the key (text order differs between the engines; repr sorts None and ints alike).
        out[table] = sorted((repr([r[k] for k in key]), dict(zip(names, r, strict=True))) for r in rows)
    return out


async def test_a_copy_holds_every_row_of_every_table(db, copy_target):
    await _books(db)
    report = await storage.copy_database(db, copy_target, now=T0)
    assert report.source == db.label and report.target == storage.parse_target(copy_target).label
    assert report.source_problems == ()
    async with await open_database(copy_target, create=False) as copy:
        assert await copy.read(_dump) == await db.read(_dump)  # ids, times and money byte for byte
        assert report.rows == {t: len(rows) for t, rows in (await copy.read(_dump)).items()}
        assert await storage.check(copy, now=T0) == []
        # The copy is a working database: new rows get new ids, after the copied ones.
        before = max(e.id for e in await storage.audit_log(copy, limit=1000))
        await storage.set_guild_budget(copy, GUILD, 10**9, now=T0)
        assert (await storage.audit_log(copy, limit=1))[0].id == before + 1
        r = await storage.accept_job(copy, new_job(user_id=3, free_quota=0), now=T0)
        assert r.charged_to in ("guild", "team:Art")
        assert await storage.check(copy, now=T0) == []


async def test_a_copy_is_one_snapshot_while_the_bot_writes(db, copy_target):
    await storage.set_guild_budget(db, GUILD, 10**9, now=T0)

    async def bot():
        for i in range(120):
            r = await storage.accept_job(db, new_job(user_id=100 + i, free_quota=0), now=T0)
            await storage.complete_job(db, r.job_id, 1, now=T0)

    writer = asyncio.create_task(bot())
    await asyncio.sleep(0.01)
    report = await storage.copy_database(db, copy_target, now=T0)
    await writer
    async with await open_database(copy_target, create=False) as copy:
        assert await storage.check(copy, now=T0) == []  # no job without its ledger rows, or the reverse
        jobs = len(await storage.list_jobs(copy, limit=1000))
        assert jobs == report.rows["jobs"] and 0 <= jobs <= 120


async def test_a_target_that_holds_data_is_refused_untouched(db, copy_target):
    await _books(db)
    async with await open_database(copy_target) as target:
        await storage.set_guild_budget(target, 5, 1, now=T0)
        before = await target.read(_dump)
    with pytest.raises(storage.TargetNotEmpty) as err:
        await storage.copy_database(db, copy_target, now=T0)
    assert set(err.value.tables) == {"guild_config", "audit"}
    async with await open_database(copy_target) as target:
        assert await target.read(_dump) == before


async def test_the_source_itself_is_refused(db):
    await _books(db)
    with pytest.raises(storage.SameDatabase):
        await storage.copy_database(db, db.target.value, now=T0)
    assert await storage.check(db, now=T0) == []


async def test_a_copy_that_does_not_match_is_not_kept(db, copy_target, monkeypatch):
    await _books(db)
    real_insert = storage.copy._insert

    async def lose_the_audit(conn, table, columns, rows):
        if table != "audit":
            await real_insert(conn, table, columns, rows)

    monkeypatch.setattr(storage.copy, "_insert", lose_the_audit)
    with pytest.raises(storage.CopyMismatch) as err:
        await storage.copy_database(db, copy_target, now=T0)
    assert any(p.startswith("audit: 0 rows") for p in err.value.problems)
    # Nothing was committed: the PostgreSQL target is empty, the SQLite one was never made.
    if storage.parse_target(copy_target).dialect == "sqlite":
        assert not storage.parse_target(copy_target).path.exists()
    else:
        async with await open_database(copy_target) as target:
            assert all(not rows for rows in (await target.read(_dump)).values())


async def test_a_missing_source_is_refused_and_not_created(tmp_path, copy_target):
    with pytest.raises(storage.DatabaseMissing):
        await storage.copy_database(tmp_path / "none.db", copy_target)
    assert not (tmp_path / "none.db").exists()
