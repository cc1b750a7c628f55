"""AccountService: the quota JSON contract, usage formats, and admin input checks."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest

import storage
from bot.accounts import AccountService
from bot.catalog import Catalog
from bot.errors import NotFound, UserError, ValidationError
from tests.storage.conftest import GUILD, T0

PRO = "black-forest-labs/flux-kontext-pro"
MAX = "black-forest-labs/flux-kontext-max"


@pytest.fixture
def accounts(db) -> AccountService:
    return AccountService(db, Catalog.default())


def _job(model: str, user: int = 1, images: int = 1, price: int = 40_000, free: int = 5) -> storage.NewJob:
    return storage.NewJob(model, "a cat", images, price, free, user_id=user, guild_id=GUILD)


async def test_quota_json_has_the_documented_shape(accounts, db):
    await accounts.set_cap(GUILD, "2.50", actor_id=9)
    r = await storage.accept_job(db, _job(PRO, images=2), now=datetime.now(UTC))
    await storage.complete_job(db, r.job_id, 2)
    report = await accounts.quota(1, GUILD)
    data = json.loads(json.dumps(report.to_json()))  # plain JSON types only
    assert set(data) >= {"models", "spent_usd", "cap_usd", "resets_at"}
    pro = data["models"][PRO]
    assert (pro["free_limit"], pro["free_used"], pro["free_remaining"]) == (5, 2, 3)
    assert data["models"][MAX]["free_limit"] == 0  # the catalog gives max no free images
    assert (data["spent_usd"], data["cap_usd"]) == (0, 2.5)
    assert data["resets_at"].endswith("Z") and data["guild_budget"]["budget_usd"] == 0
    assert f"{PRO}: 3 of 5 left" in report.to_text()


async def test_quota_without_a_guild_is_guild_zero(accounts):
    data = (await accounts.quota(1)).to_json()
    assert data["guild_id"] == 0 and data["cap_usd"] is None


async def test_usage_in_every_format(accounts, db):
    await accounts.set_budget(GUILD, 5)
    for user in (1, 2, 2):
        r = await storage.accept_job(db, _job(PRO, user=user, free=0), now=T0)
        await storage.complete_job(db, r.job_id, 1, now=T0)
    report = await accounts.usage(GUILD, since="2025-03-12", until="2025-03-12", by="user")
    assert [(r["user"], r["jobs"], r["cost_usd"]) for r in report.records()] == [
        ("2", 2, 0.08),
        ("1", 1, 0.04),
    ]
    assert json.loads(report.to_json())[0]["images"] == 2
    rows = list(csv.reader(io.StringIO(report.to_csv())))
    assert rows[0] == [
        "user",
        "jobs",
        "succeeded",
        "images",
        "cost_usd",
        "refused",
        "failed",
        "cancelled",
        "overrun_micros",
    ]
    assert rows[1] == ["2", "2", "2", "2", "0.080000", "0", "0", "0", "0"]
    table = report.to_table().splitlines()
    assert table[0].split() == rows[0][:-1] and "$0.08" in table[1]  # no overrun: no column for it
    assert (await accounts.usage(GUILD, since="2025-03-13")).records() == []
    assert "no jobs" in (await accounts.usage(GUILD, since="2025-03-13")).to_table()


@pytest.mark.parametrize(
    ("call", "field", "message"),
    [
        (lambda a: a.set_budget(GUILD, "-3"), "usd", "usd must be an amount in USD"),
        (lambda a: a.set_budget(GUILD, "lots"), "usd", "usd must be an amount in USD"),
        (lambda a: a.set_budget(GUILD, "1e15"), "usd", r"usd must be at most \$1,000,000 per period"),
        (lambda a: a.set_budget(GUILD, "1000000.01"), "usd", "usd must be at most"),
        (lambda a: a.set_budget(GUILD, "1e999999999"), "usd", "usd must be an amount in USD"),
        (lambda a: a.set_budget(GUILD, "1" * 25), "usd", "usd must be an amount in USD"),
        (lambda a: a.set_team(GUILD, 5, "Art", "2e6"), "usd", "usd must be at most"),
        (lambda a: a.set_cap(GUILD, "5000000"), "usd", "usd must be at most"),
        (lambda a: a.set_budget(GUILD, 5, "year"), "period", "period must be one of day, week, month"),
        (lambda a: a.set_budget("abc", 5), "guild", "guild must be a Discord id"),
        (lambda a: a.set_budget(2**63, 5), "guild", "guild must be a Discord id"),
        (lambda a: a.set_free_quota(GUILD, "flux-9000", 3), None, "Unknown model"),
        (lambda a: a.set_free_quota(GUILD, PRO, -1), "images", "images must be a whole number from 0 to"),
        (lambda a: a.set_free_quota(GUILD, PRO, 100_001), "images", "from 0 to 100,000"),
        (lambda a: a.set_free_quota(GUILD, PRO, 3, "hour"), "period", "day, week, month, off"),
        (lambda a: a.set_team(GUILD, 0, "Art", 5), "role", "role must be a Discord id"),
        (lambda a: a.set_team(GUILD, 5, "", 5), "name", "name must be 1 to 100 characters"),
        (lambda a: a.grant(GUILD, 1, PRO, 0), "images", "images must be a whole number from 1 to"),
        (lambda a: a.grant(GUILD, 1, PRO, 10_001), "images", "from 1 to 10,000"),
        (lambda a: a.grant(GUILD, 1, PRO, "1e15"), "images", "images must be a whole number"),
        (lambda a: a.grant(GUILD, 0, PRO, 2), "user", "user must be a Discord id"),
        (lambda a: a.usage(by="weekday"), "by", "by must be one of user, team, model, day"),
        (lambda a: a.usage(since="yesterday"), "since", "since must be a date like 2025-01-31"),
        (lambda a: a.usage(since="2025-03-02", until="2025-03-01"), "until", "until must not be before"),
        (lambda a: a.refund(" "), None, "Give the id of the job"),
        (lambda a: a.update_settings(1, aspect_ratio="5:4"), "aspect_ratio", "aspect_ratio must be one of"),
    ],
)
async def test_bad_admin_input_is_refused_clearly(accounts, call, field, message):
    with pytest.raises(ValidationError, match=message) as caught:
        await call(accounts)
    assert caught.value.field == field
    if field is not None:  # each face spells the field its own way; the rest of the sentence is shared
        flagged = caught.value.render(lambda name: "--" + name.replace("_", "-"))
        assert flagged.startswith("--" + field.replace("_", "-") + " ")
        assert flagged.removeprefix("--" + field.replace("_", "-")) == caught.value.user_message.removeprefix(
            field
        )


async def test_the_largest_allowed_amounts_and_counts_are_taken(accounts, db):
    config = await accounts.set_budget(GUILD, "1000000")
    assert config.budget_micros == 1_000_000 * 1_000_000
    await accounts.set_free_quota(GUILD, PRO, 100_000)
    await accounts.grant(GUILD, 3, PRO, 10_000)
    assert (await accounts.quota(3, GUILD)).to_json()["models"][PRO]["free_limit"] == 110_000
    assert await accounts.check() == []


async def test_admin_operations_reach_storage(accounts, db):
    config = await accounts.set_budget(GUILD, "12.5", "week", actor_id=7)
    assert (config.budget_micros, config.budget_period) == (12_500_000, "week")
    assert (await accounts.set_cap(GUILD, "off")).cap_micros is None
    team = await accounts.set_team(GUILD, 55, "Art", "3", actor_id=7)
    assert (team.role_id, team.budget_micros) == (55, 3_000_000)
    await accounts.set_free_quota(GUILD, "flux-kontext-pro", 9, "day", actor_id=7)  # short names work
    await accounts.set_free_quota(GUILD, MAX, 4, "off", actor_id=7)
    await accounts.set_free_quota(GUILD, "all", 1, actor_id=7)
    quotas = await storage.list_free_quotas(db, GUILD)
    assert (quotas[PRO].images, quotas[PRO].period, quotas[MAX].images, quotas["*"].images) == (
        9,
        "day",
        0,
        1,
    )
    await accounts.grant(GUILD, 3, PRO, "2", actor_id=7)
    assert (await accounts.quota(3, GUILD)).to_json()["models"][PRO]["free_limit"] == 11
    r = await storage.accept_job(db, _job(PRO))
    refund = await accounts.refund(r.job_id, actor_id=7, reason="test")
    assert refund.returned_images == 1
    with pytest.raises(NotFound, match="No job 'missing'"):
        await accounts.refund("missing")
    with pytest.raises(NotFound, match="in this server"):
        await accounts.refund(r.job_id, guild_id=GUILD + 1)
    assert await accounts.set_channel(GUILD, 77, actor_id=7) == {77}
    settings = await accounts.update_settings(4, default_model="flux-kontext-max", aspect_ratio="16:9")
    assert (settings.default_model, settings.aspect_ratio) == (MAX, "16:9")
    assert await accounts.settings(4) == settings
    assert await accounts.check() == []
    assert {e.actor_id for e in await storage.audit_log(db, GUILD)} == {7, None}


async def test_copy_database_moves_a_server_and_words_its_refusals(db, tmp_path):
    await storage.set_guild_budget(db, GUILD, 5_000_000, now=T0)
    target = tmp_path / "moved.db"
    report = await AccountService.copy_database(db.target.value, str(target))  # no service database needed
    assert report.rows["guild_config"] == 1 and report.rows["audit"] == 1
    with pytest.raises(UserError, match="already holds data"):
        await AccountService.copy_database(db.target.value, str(target))
    with pytest.raises(ValidationError, match=r"^target must be a SQLite path or a postgresql:// URL\.$"):
        await AccountService.copy_database(db.target.value, " ")
    with pytest.raises(ValidationError, match="not a mysql:// URL") as err:
        await AccountService.copy_database("mysql://u@h/db", db.target.value)
    assert err.value.field == "source"
