"""Rate limits and per-role free allowances (storage/rates.py), on each backend, with the clock in
the test's hands: a rolling window, the most generous role, refusals that write nothing."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

import storage
from storage import QuotaRefused, RateLimited, open_database, queue
from storage.jobs import RouteChoice
from tests.storage.conftest import GUILD, T0, new_job

HOUR = 3600
ROUTES = [RouteChoice("sandbox", "m", 0)]


async def _count(db, table: str) -> int:
    async def op(conn):
        return await conn.fetchval(f"SELECT count(*) FROM {table}")

    return await db.read(op)


async def _accept(db, at, **job) -> str:
    job.setdefault("deadline_s", 86400.0)  # none of them is overdue when the books are checked
    return (await storage.accept_job(db, new_job(**job), now=at)).job_id


async def test_the_next_job_over_a_rolling_window_is_refused_with_when_and_nothing_written(db):
    await storage.set_rate_limit(db, GUILD, 2, HOUR, now=T0)
    await _accept(db, T0)
    await _accept(db, T0 + timedelta(minutes=10))
    jobs, ledger = await _count(db, "jobs"), await _count(db, "ledger")

    with pytest.raises(RateLimited) as refused:
        await queue.enqueue(db, new_job(), routes=ROUTES, now=T0 + timedelta(minutes=20))
    assert refused.value.retry_at == T0 + timedelta(hours=1)  # when the oldest leaves the window
    assert (refused.value.limit.jobs, refused.value.limit.window_s, refused.value.used) == (2, HOUR, 2)
    assert (await _count(db, "jobs"), await _count(db, "ledger")) == (jobs, ledger)
    status = await storage.quota_status(db, 1, GUILD, {"m": 5}, now=T0)
    assert status.free[0].used == 2  # the refusal took no free image

    with pytest.raises(RateLimited):  # a microsecond early is still early
        await _accept(db, T0 + timedelta(hours=1) - timedelta(microseconds=1))
    await _accept(db, T0 + timedelta(hours=1))
    with pytest.raises(RateLimited) as again:
        await _accept(db, T0 + timedelta(hours=1, minutes=5))
    assert again.value.retry_at == T0 + timedelta(hours=1, minutes=10)
    assert await storage.check(db, now=T0 + timedelta(hours=2)) == []


async def test_jobs_that_gave_the_member_nothing_do_not_count(db):
    await storage.set_rate_limit(db, GUILD, 1, HOUR, now=T0)
    await storage.set_free_quota(db, GUILD, "m", 0, now=T0)  # nothing pays: refused for quota
    with pytest.raises(QuotaRefused):
        await _accept(db, T0)
    await storage.set_free_quota(db, GUILD, "m", 9, now=T0)
    failed = await _accept(db, T0)
    await storage.fail_job(db, failed, "failed", "provider_error: down", now=T0)
    cancelled = await _accept(db, T0)
    await queue.cancel(db, cancelled, error="cancelled: by the member", now=T0)
    kept = await _accept(db, T0)  # the quota refusal, the failure and the cancel gave the slot back
    await storage.complete_job(db, kept, 1, now=T0)
    with pytest.raises(RateLimited):  # a delivered job counts
        await _accept(db, T0 + timedelta(minutes=1))


async def test_limits_are_per_member_and_per_guild_and_never_bind_the_operator(db):
    await storage.set_rate_limit(db, GUILD, 1, HOUR, now=T0)
    await _accept(db, T0, user_id=1)
    await _accept(db, T0, user_id=2)
    await _accept(db, T0, user_id=1, guild_id=GUILD + 1)  # another server: no limit there
    for _ in range(3):
        await _accept(db, T0, user_id=None)
    with pytest.raises(RateLimited):
        await _accept(db, T0, user_id=1)


async def test_a_role_limit_replaces_the_guild_wide_one_and_the_most_generous_role_wins(db):
    await storage.set_rate_limit(db, GUILD, 1, HOUR, now=T0)
    await storage.set_rate_limit(db, GUILD, 3, HOUR, role_id=10, now=T0)
    limits = await storage.set_rate_limit(db, GUILD, 2, 600, role_id=11, now=T0)
    assert [(x.role_id, x.jobs, x.window_s) for x in limits] == [(None, 1, HOUR), (10, 3, HOUR), (11, 2, 600)]

    async def allowed(user: int, roles: tuple[int, ...], at) -> int:
        n = 0
        while n < 10:
            try:
                await _accept(db, at, user_id=user, roles=roles)
            except RateLimited:
                return n
            n += 1
        return n

    assert await allowed(1, (), T0) == 1  # no limited role: the guild-wide limit
    assert await allowed(2, (99,), T0) == 1  # a role with no limit of its own changes nothing
    assert await allowed(3, (10,), T0) == 3
    assert await allowed(4, (11,), T0) == 2  # the role's limit, though it is stricter over the hour
    assert await allowed(5, (10, 11), T0) == 3  # either limit allows: the more generous one wins
    # Ten minutes on, member 5's 10-minute window is clear again: role 11 lets 2 more through,
    # and the refusal after names the limit that frees up first.
    assert await allowed(5, (10, 11), T0 + timedelta(minutes=10)) == 2
    with pytest.raises(RateLimited) as refused:
        await _accept(db, T0 + timedelta(minutes=11), user_id=5, roles=(10, 11))
    assert (refused.value.limit.role_id, refused.value.retry_at) == (11, T0 + timedelta(minutes=20))


async def test_the_quota_shows_where_a_member_stands_against_their_limits(db):
    await storage.set_rate_limit(db, GUILD, 2, HOUR, now=T0)
    status = await storage.quota_status(db, 1, GUILD, {"m": 5}, now=T0)
    ((limit, used, next_at),) = [(r.limit.jobs, r.used, r.next_at) for r in status.rates]
    assert (limit, used, next_at) == (2, 0, None)
    await _accept(db, T0)
    await _accept(db, T0 + timedelta(minutes=5))
    (standing,) = (await storage.quota_status(db, 1, GUILD, {"m": 5}, now=T0 + timedelta(minutes=6))).rates
    assert (standing.used, standing.next_at, standing.allows) == (2, T0 + timedelta(hours=1), False)
    assert (await storage.quota_status(db, 1, GUILD, {"m": 5}, (10,), now=T0)).rates  # no role limit yet
    await storage.set_rate_limit(db, GUILD, 9, HOUR, role_id=10, now=T0)
    (mine,) = (await storage.quota_status(db, 1, GUILD, {"m": 5}, (10,), now=T0 + timedelta(minutes=6))).rates
    assert (mine.limit.role_id, mine.used, mine.allows) == (10, 2, True)
    assert (await storage.quota_status(db, 2, 0, {"m": 5}, now=T0)).rates == ()  # no limits in guild 0


async def test_removing_a_limit_and_the_audit(db):
    await storage.set_rate_limit(db, GUILD, 1, HOUR, role_id=10, actor_id=5, now=T0)
    assert await storage.set_rate_limit(db, GUILD, None, role_id=10, actor_id=5, now=T0) == []
    await _accept(db, T0, roles=(10,))
    await _accept(db, T0, roles=(10,))
    actions = [(e.action, e.details) for e in await storage.audit_log(db, GUILD)]
    assert ("rate", {"role_id": 10, "jobs": None, "window_s": None}) in actions
    with pytest.raises(ValueError):
        await storage.set_rate_limit(db, GUILD, 0, HOUR)
    with pytest.raises(ValueError):
        await storage.set_rate_limit(db, GUILD, 5, 59)


async def test_two_connections_racing_never_exceed_the_limit(db_target):
    first, second = await open_database(db_target), await open_database(db_target)
    try:
        await storage.set_rate_limit(first, GUILD, 3, HOUR, now=T0)

        async def one(db) -> bool:
            try:
                await storage.accept_job(db, new_job(), now=T0)
                return True
            except RateLimited:
                return False

        results = await asyncio.gather(*(one(d) for _ in range(10) for d in (first, second)))
        assert results.count(True) == 3
    finally:
        await first.close()
        await second.close()


# --- per-role free allowances ------------------------------------------------------------------


async def test_members_holding_a_role_get_its_free_allowance_the_most_generous_winning(db):
    await storage.set_free_quota(db, GUILD, "m", 1, now=T0)  # everyone: 1 a month
    await storage.set_role_free_quota(db, GUILD, 10, "m", 3, now=T0)  # role 10: 3 a month
    await storage.set_role_free_quota(db, GUILD, 11, "*", 2, "day", now=T0)  # role 11: 2 a day

    async def free_images(user: int, roles: tuple[int, ...], at=T0) -> int:
        n = 0
        while True:
            r = await storage.accept_job(db, new_job(user_id=user, roles=roles), now=at)
            if r.charged_to != "free":
                return n
            n += 1

    await storage.set_guild_budget(db, GUILD, 1_000_000, now=T0)  # what free cannot pay, the guild does
    assert await free_images(1, ()) == 1
    assert await free_images(2, (99,)) == 1  # a role without an allowance: the guild's
    assert await free_images(3, (10,)) == 3
    assert await free_images(4, (11,)) == 2
    assert await free_images(4, (11,), T0 + timedelta(days=1)) == 2  # per day: 2 more tomorrow
    # Holding both: 3 a month leaves more than 2 a day at first, then the daily one is richer.
    assert await free_images(5, (10, 11)) == 3
    tomorrow = T0 + timedelta(days=1)
    (free,) = (await storage.quota_status(db, 5, GUILD, {"m": 5}, (10, 11), now=tomorrow)).free
    assert (free.limit, free.used, free.remaining, free.period) == (2, 0, 2, "day")
    assert await free_images(5, (10, 11), tomorrow) == 2
    (plain,) = (await storage.quota_status(db, 5, GUILD, {"m": 5}, now=tomorrow)).free
    assert (plain.limit, plain.period) == (1, "month")  # without the roles: the guild's quota


async def test_a_role_allowance_of_zero_and_removing_it(db):
    await storage.set_guild_budget(db, GUILD, 1_000_000, now=T0)
    await storage.set_role_free_quota(db, GUILD, 10, "m", 0, now=T0)
    assert (await storage.accept_job(db, new_job(roles=(10,)), now=T0)).charged_to == "guild"
    status = await storage.quota_status(db, 1, GUILD, {"m": 5}, (10,), now=T0)
    assert status.free[0].limit == 0
    assert (await storage.list_role_free_quotas(db, GUILD))[10]["m"].images == 0
    await storage.set_role_free_quota(db, GUILD, 10, "m", None, now=T0)
    assert await storage.list_role_free_quotas(db, GUILD) == {}
    assert (await storage.accept_job(db, new_job(roles=(10,)), now=T0)).charged_to == "free"  # catalog's 5
