"""Usage by user, team (who paid), model and day; a user's quota standing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import storage
from storage import QuotaRefused
from tests.storage.conftest import GUILD, PRICE, T0, new_job


async def _history(db):
    await storage.set_guild_budget(db, GUILD, 10 * PRICE, now=T0)
    await storage.set_team(db, GUILD, 501, "Art", 10 * PRICE, now=T0)
    day2 = T0 + timedelta(days=1)
    a = await storage.accept_job(db, new_job(images=2), now=T0)  # user 1, free
    await storage.complete_job(db, a.job_id, 2, now=T0)
    b = await storage.accept_job(db, new_job(user_id=2, free_quota=0, roles=(501,)), now=T0)  # team
    await storage.complete_job(db, b.job_id, 1, actual_micros=35_000, now=T0)
    c = await storage.accept_job(db, new_job(user_id=2, model="x", free_quota=0), now=day2)  # guild
    await storage.fail_job(db, c.job_id, now=day2)
    with pytest.raises(QuotaRefused):
        await storage.accept_job(db, new_job(user_id=3, images=4, free_quota=0, price_micros=10**6), now=day2)
    d = await storage.accept_job(db, new_job(user_id=None, guild_id=None), now=day2)  # operator
    await storage.complete_job(db, d.job_id, 1, now=day2)
    e = await storage.accept_job(db, new_job(), now=day2)
    await storage.fail_job(db, e.job_id, "cancelled", now=day2)


async def test_usage_by_each_grouping(db):
    await _history(db)
    by_user = {r.key: r for r in await storage.usage(db, by="user")}
    assert set(by_user) == {"1", "2", "3", "operator"}
    assert (by_user["1"].jobs, by_user["1"].images, by_user["1"].cost_micros, by_user["1"].cancelled) == (
        2,
        2,
        2 * PRICE,
        1,
    )
    assert (by_user["2"].succeeded, by_user["2"].failed, by_user["2"].cost_micros) == (1, 1, 35_000)
    assert by_user["3"].refused == 1 and by_user["3"].cost_micros == 0
    by_team = {r.key: r.cost_micros for r in await storage.usage(db, by="team")}
    assert by_team == {"free": 2 * PRICE, "team:Art": 35_000, "guild": 0, "-": 0, "operator": PRICE}
    by_model = {r.key: r.jobs for r in await storage.usage(db, by="model")}
    assert by_model == {"m": 5, "x": 1}
    by_day = await storage.usage(db, by="day")
    assert [(r.key, r.jobs) for r in by_day] == [("2025-03-12", 2), ("2025-03-13", 4)]


async def test_usage_filters_by_guild_and_time(db):
    await _history(db)
    day2 = datetime(2025, 3, 13, tzinfo=UTC)
    only_day1 = await storage.usage(db, guild_id=GUILD, until=day2, by="day")
    assert [(r.key, r.jobs) for r in only_day1] == [("2025-03-12", 2)]
    from_day2 = await storage.usage(db, guild_id=GUILD, since=day2, by="user")
    assert {r.key for r in from_day2} == {"1", "2", "3"}  # the operator job is guild 0
    assert await storage.usage(db, guild_id=999) == []
    with pytest.raises(ValueError):
        await storage.usage(db, by="weekday")


async def test_quota_status_shows_every_figure(db):
    await _history(db)
    await storage.set_user_cap(db, GUILD, 5 * PRICE, "week", now=T0)
    status = await storage.quota_status(db, 2, GUILD, {"m": 0, "x": 3}, roles=(501,), now=T0)
    free = {f.model: f for f in status.free}
    assert (free["x"].limit, free["x"].remaining, free["x"].period) == (3, 3, "month")
    assert status.spent_micros == 35_000 and status.cap_micros == 5 * PRICE
    assert status.cap_resets_at == datetime(2025, 3, 17, tzinfo=UTC)
    assert status.resets_at == datetime(2025, 3, 17, tzinfo=UTC)
    (team,) = status.teams
    assert (team.name, team.spent_micros, team.remaining_micros) == ("team:Art", 35_000, 10 * PRICE - 35_000)
    assert (status.guild.budget_micros, status.guild.spent_micros) == (10 * PRICE, 0)


async def _plan(db, sql, params) -> str:
    async def explain(conn):
        if conn.dialect == "sqlite":
            return " | ".join(r[3] for r in await conn.fetchall("EXPLAIN QUERY PLAN " + sql, params))
        # An empty table costs the same scanned either way: ask whether the index can serve it.
        await conn.execute("SET LOCAL enable_seqscan = off")
        return " | ".join(r[0] for r in await conn.fetchall("EXPLAIN " + sql, params))

    return await db.read(explain)


@pytest.mark.parametrize("by", ["user", "team", "model", "day"])
async def test_a_guilds_report_reads_its_index_alone(db, by):
    # Without the guild the old catch-all WHERE scanned every job; built per case it uses the index.
    sql, params = storage.reports.usage_query(GUILD, T0, T0 + timedelta(days=30), by)
    plan = await _plan(db, sql, params)
    if db.dialect == "sqlite":
        assert "COVERING INDEX jobs_guild_usage" in plan, plan
    else:  # which index an empty table's planner picks is a guess; that one can be used is not
        assert "Index" in plan and "Seq Scan" not in plan, plan


async def test_a_members_history_comes_off_an_index_in_order(db):
    for user, guild, index in ((1, GUILD, "jobs_by_member"), (1, None, "jobs_by_user")):
        plan = await _plan(db, *storage.jobs.history_query(user, guild, 10))
        assert "Seq Scan" not in plan and "TEMP B-TREE" not in plan and "Sort" not in plan, plan
        assert db.dialect == "postgres" or index in plan, plan


async def test_usage_narrowed_to_a_user_and_teams_holds_only_their_jobs(db):
    await storage.set_guild_budget(db, GUILD, 10 * PRICE, now=T0)
    art = await storage.set_team(db, GUILD, 501, "Art", 10 * PRICE, now=T0)
    photo = await storage.set_team(db, GUILD, 502, "Photo", 10 * PRICE, now=T0)
    for user_id, roles in ((1, (501,)), (2, (501,)), (3, (502,)), (4, ())):
        r = await storage.accept_job(db, new_job(user_id=user_id, free_quota=0, roles=roles), now=T0)
        await storage.complete_job(db, r.job_id, 1, now=T0)
    free = await storage.accept_job(db, new_job(user_id=1), now=T0)  # user 1's own, not the team's
    await storage.complete_job(db, free.job_id, 1, now=T0)

    rows = await storage.usage(db, guild_id=GUILD, by="user", only_user=1, only_teams=[art.id])
    assert {(r.key, r.jobs) for r in rows} == {("1", 2), ("2", 1)}
    rows = await storage.usage(db, guild_id=GUILD, by="team", only_user=3, only_teams=[photo.id])
    assert [(r.key, r.jobs) for r in rows] == [("team:Photo", 1)]
    rows = await storage.usage(db, guild_id=GUILD, by="team", only_user=4, only_teams=[])
    assert [(r.key, r.jobs) for r in rows] == [("guild", 1)]
    assert len(await storage.usage(db, guild_id=GUILD, by="user")) == 4  # not narrowed: everyone
