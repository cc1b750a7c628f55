"""Who pays: free quota, then a team, then the guild, within the user's cap; periods and grants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import storage
from storage import QuotaRefused
from tests.storage.conftest import GUILD, PRICE, T0, new_job, shortfall

ART, PHOTO = 501, 502  # role ids


async def test_free_first_then_paid_and_a_job_is_never_split(db):
    await storage.set_guild_budget(db, GUILD, 1_000_000, now=T0)
    a = await storage.accept_job(db, new_job(images=4), now=T0)
    assert (a.charged_to, a.free_remaining) == ("free", 1)
    b = await storage.accept_job(db, new_job(images=2), now=T0)  # 1 free left, 2 asked: all paid
    assert (b.charged_to, b.micros, b.images, b.free_remaining) == ("guild", 2 * PRICE, 0, 1)
    c = await storage.accept_job(db, new_job(images=1), now=T0)
    assert (c.charged_to, c.free_remaining) == ("free", 0)


async def test_team_budget_before_the_guilds_in_creation_order(db):
    await storage.set_guild_budget(db, GUILD, 1_000_000, now=T0)
    await storage.set_team(db, GUILD, ART, "Art", 2 * PRICE, actor_id=9, now=T0)
    await storage.set_team(db, GUILD, PHOTO, "Photo", 10 * PRICE, period="week", actor_id=9, now=T0)
    job = new_job(free_quota=0, roles=(PHOTO, ART, 999))
    first = await storage.accept_job(db, job, now=T0)
    second = await storage.accept_job(db, job, now=T0)
    third = await storage.accept_job(db, job, now=T0)  # Art is spent: Photo pays
    assert [first.charged_to, second.charged_to, third.charged_to] == ["team:Art", "team:Art", "team:Photo"]
    assert third.resets_at == datetime(2025, 3, 17, tzinfo=UTC)  # Photo's budget is weekly
    nobody = await storage.accept_job(db, new_job(free_quota=0), now=T0)  # no role: the guild pays
    assert nobody.charged_to == "guild"
    (job_row,) = [j for j in await storage.list_jobs(db, limit=10) if j.id == third.job_id]
    assert job_row.charged_to == "team:Photo" and job_row.team_id is not None


async def test_a_team_left_short_falls_back_to_the_guild(db):
    await storage.set_guild_budget(db, GUILD, 1_000_000, now=T0)
    await storage.set_team(db, GUILD, ART, "Art", PRICE, now=T0)
    r = await storage.accept_job(db, new_job(images=2, free_quota=0, roles=(ART,)), now=T0)
    assert r.charged_to == "guild"


async def test_the_user_cap_limits_every_paid_job_but_not_free_ones(db):
    await storage.set_guild_budget(db, GUILD, 10_000_000, now=T0)
    await storage.set_team(db, GUILD, ART, "Art", 10_000_000, now=T0)
    await storage.set_user_cap(db, GUILD, 3 * PRICE, "day", now=T0)
    paid = new_job(free_quota=0, model="p", roles=(ART,))
    await storage.accept_job(db, new_job(images=2, model="p", roles=(ART,), free_quota=0), now=T0)
    await storage.accept_job(db, paid, now=T0)
    with pytest.raises(QuotaRefused) as refused:
        await storage.accept_job(db, paid, now=T0)
    assert [s.kind for s in refused.value.refusal.shortfalls] == ["free", "cap"]  # the cap refused it
    assert shortfall(refused, "cap") == (0, 3 * PRICE, datetime(2025, 3, 13, tzinfo=UTC))
    assert (await storage.accept_job(db, new_job(images=5), now=T0)).charged_to == "free"
    assert (await storage.accept_job(db, paid, now=T0 + timedelta(days=1))).charged_to == "team:Art"
    # Another user has a cap of their own.
    assert (await storage.accept_job(db, new_job(user_id=2, free_quota=0), now=T0)).charged_to == "guild"
    await storage.set_user_cap(db, GUILD, None, now=T0)
    assert (await storage.accept_job(db, paid, now=T0)).charged_to == "team:Art"


async def test_a_failed_paid_job_gives_the_cap_back(db):
    await storage.set_guild_budget(db, GUILD, 10_000_000, now=T0)
    await storage.set_user_cap(db, GUILD, PRICE, now=T0)
    r = await storage.accept_job(db, new_job(free_quota=0), now=T0)
    await storage.fail_job(db, r.job_id, now=T0)
    assert (await storage.accept_job(db, new_job(free_quota=0), now=T0)).charged_to == "guild"


async def test_free_quota_resets_exactly_at_the_period_boundary(db):
    boundary = datetime(2025, 4, 1, tzinfo=UTC)
    just_before = boundary - timedelta(microseconds=1)
    r = await storage.accept_job(db, new_job(images=5), now=just_before)
    assert r.resets_at == boundary
    with pytest.raises(QuotaRefused) as refused:
        await storage.accept_job(db, new_job(), now=just_before)
    assert shortfall(refused, "free") == (0, 5, boundary)
    fresh = await storage.accept_job(db, new_job(images=5), now=boundary)
    assert (fresh.charged_to, fresh.free_remaining) == ("free", 0)


async def test_a_job_straddling_the_boundary_is_counted_in_its_own_period(db):
    boundary = datetime(2025, 4, 1, tzinfo=UTC)
    r = await storage.accept_job(db, new_job(images=3), now=boundary - timedelta(seconds=1))
    await storage.complete_job(db, r.job_id, 1, now=boundary + timedelta(seconds=5))
    march = await storage.quota_status(db, 1, GUILD, {"m": 5}, now=boundary - timedelta(seconds=1))
    april = await storage.quota_status(db, 1, GUILD, {"m": 5}, now=boundary)
    assert march.free[0].used == 1 and april.free[0].used == 0
    assert await storage.check(db, now=boundary) == []


async def test_budgets_reset_by_their_own_periods(db):
    await storage.set_guild_budget(db, GUILD, PRICE, "day", now=T0)
    await storage.accept_job(db, new_job(free_quota=0), now=T0)
    with pytest.raises(QuotaRefused) as refused:
        await storage.accept_job(db, new_job(free_quota=0), now=T0)
    assert shortfall(refused, "guild") == (0, PRICE, datetime(2025, 3, 13, tzinfo=UTC))
    next_day = datetime(2025, 3, 13, tzinfo=UTC)
    assert (await storage.accept_job(db, new_job(free_quota=0), now=next_day)).charged_to == "guild"


async def test_guild_free_quota_overrides_the_catalog(db):
    await storage.set_free_quota(db, GUILD, "*", 2, "week", actor_id=9, now=T0)
    await storage.set_free_quota(db, GUILD, "special", 0, now=T0)  # off for one model
    r = await storage.accept_job(db, new_job(images=2), now=T0)
    assert (r.free_remaining, r.resets_at) == (0, datetime(2025, 3, 17, tzinfo=UTC))
    with pytest.raises(QuotaRefused) as refused:
        await storage.accept_job(db, new_job(model="special"), now=T0)
    assert refused.value.refusal.model == "special" and shortfall(refused, "free")[:2] == (0, 0)
    # Another guild keeps the catalog's default.
    assert (await storage.accept_job(db, new_job(guild_id=5, images=5), now=T0)).charged_to == "free"
    await storage.set_free_quota(db, GUILD, "*", None, now=T0)  # back to the catalog
    quotas = await storage.list_free_quotas(db, GUILD)
    assert set(quotas) == {"special"} and quotas["special"].images == 0


async def test_grants_add_free_images_for_the_current_period(db):
    with pytest.raises(QuotaRefused):
        await storage.accept_job(db, new_job(free_quota=0), now=T0)
    period = await storage.grant_free_images(db, GUILD, 1, "m", 3, actor_id=42, note="contest", now=T0)
    assert period.end == datetime(2025, 4, 1, tzinfo=UTC)
    r = await storage.accept_job(db, new_job(images=3, free_quota=0), now=T0)
    assert (r.charged_to, r.free_remaining) == ("free", 0)
    with pytest.raises(QuotaRefused):  # next month the grant is gone
        await storage.accept_job(db, new_job(free_quota=0), now=datetime(2025, 4, 2, tzinfo=UTC))
    status = await storage.quota_status(db, 1, GUILD, {"m": 0}, now=T0)
    assert (status.free[0].limit, status.free[0].granted, status.free[0].used) == (3, 3, 3)
    entry = (await storage.audit_log(db, GUILD))[0]
    assert (entry.action, entry.actor_id, entry.details["images"]) == ("grant", 42, 3)
    with pytest.raises(ValueError):
        await storage.grant_free_images(db, GUILD, 1, "m", 0, now=T0)


async def test_free_quota_is_per_guild_and_dms_are_guild_zero(db):
    await storage.accept_job(db, new_job(images=5), now=T0)
    dm = await storage.accept_job(db, new_job(images=5, guild_id=None), now=T0)
    assert dm.charged_to == "free"
    with pytest.raises(QuotaRefused) as refused:  # guild 0 has no budget unless set
        await storage.accept_job(db, new_job(guild_id=None), now=T0)
    assert shortfall(refused, "guild")[:2] == (0, 0)
    await storage.set_guild_budget(db, 0, 1_000_000, now=T0)
    assert (await storage.accept_job(db, new_job(guild_id=None), now=T0)).charged_to == "guild"


async def test_a_zero_price_job_is_always_coverable_and_spends_no_free_image(db):
    # The local sandbox costs nothing: it must neither be refused nor eat the member's free quota.
    r = await storage.accept_job(db, new_job(images=4, free_quota=0, price_micros=0), now=T0)
    assert (r.charged_to, r.micros, r.images) == ("sandbox", 0, 0)
    r = await storage.accept_job(db, new_job(images=2, free_quota=5, price_micros=0), now=T0)
    assert (r.charged_to, r.images, r.free_remaining) == ("sandbox", 0, 5)
    await storage.complete_job(db, r.job_id, 2, now=T0)
    assert await storage.check(db, now=T0) == []  # nothing kept, and the books say so


async def test_admin_settings_are_audited_and_validated(db):
    config = await storage.set_guild_budget(db, GUILD, 5_000_000, "week", actor_id=7, now=T0)
    assert (config.budget_micros, config.budget_period, config.cap_micros) == (5_000_000, "week", None)
    config = await storage.set_user_cap(db, GUILD, 1_000_000, actor_id=7, now=T0)
    assert (config.budget_micros, config.cap_micros) == (5_000_000, 1_000_000)
    team = await storage.set_team(db, GUILD, ART, "  Art  ", 2_000_000, actor_id=7, now=T0)
    renamed = await storage.set_team(db, GUILD, ART, "Artists", 3_000_000, actor_id=8, now=T0)
    assert renamed.id == team.id and renamed.name == "Artists"
    assert [t.name for t in await storage.list_teams(db, GUILD)] == ["Artists"]
    assert (await storage.get_guild_config(db, 12345)).budget_micros == 0
    actions = [(e.action, e.actor_id) for e in await storage.audit_log(db, GUILD)]
    assert actions == [("team", 8), ("team", 7), ("cap", 7), ("budget", 7)]
    for bad in (
        storage.set_guild_budget(db, GUILD, -1),
        storage.set_guild_budget(db, GUILD, 1, "year"),
        storage.set_team(db, GUILD, ART, " ", 1),
        storage.set_free_quota(db, GUILD, "m", -2),
    ):
        with pytest.raises(ValueError):
            await bad


async def test_changing_a_period_keeps_what_was_already_spent(db):
    await storage.set_guild_budget(db, GUILD, 3 * PRICE, "month", now=T0)
    await storage.accept_job(db, new_job(images=2, free_quota=0), now=T0)
    await storage.set_guild_budget(db, GUILD, 3 * PRICE, "week", now=T0)  # today is in both windows
    assert (await storage.accept_job(db, new_job(free_quota=0), now=T0)).charged_to == "guild"
    with pytest.raises(QuotaRefused) as refused:
        await storage.accept_job(db, new_job(free_quota=0), now=T0)
    assert shortfall(refused, "guild")[:2] == (0, 3 * PRICE)
    next_week = datetime(2025, 3, 17, tzinfo=UTC)
    assert (await storage.accept_job(db, new_job(free_quota=0), now=next_week)).charged_to == "guild"
