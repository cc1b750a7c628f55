"""The words for a refused reservation: storage gives the figures (tests/storage/test_quota.py),
bot/refusals.py says them, the same sentence on Discord and in the terminal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import storage
from bot.errors import QuotaExceeded
from bot.refusals import refusal_text
from bot.storage_errors import QuotaRefusal, worded
from tests.storage.conftest import GUILD, PRICE, T0, new_job

ART = 501


@pytest.fixture
async def db(tmp_path):
    async with await storage.open_database(tmp_path / "k.db") as database:
        yield database


async def _refused(db, job, now=T0) -> QuotaRefusal:
    """The refusal as a service hands it to a face."""
    with pytest.raises(QuotaExceeded) as err, worded():
        await storage.accept_job(db, job, now=now)
    assert isinstance(err.value, QuotaRefusal)
    return err.value


async def test_a_refusal_says_what_is_left_what_it_costs_and_when_it_resets(db):
    await storage.set_guild_budget(db, GUILD, 100_000, now=T0)
    await storage.accept_job(db, new_job(images=2, free_quota=0), now=T0)  # $0.08 of $0.10
    e = await _refused(db, new_job(images=2, free_quota=1))
    assert e.user_message == (
        "Not enough quota for this job: 2 image(s) with m would cost $0.08. "
        "Free images left: 1 of 1 (resets 2025-04-01 00:00 UTC). "
        "Server budget: $0.02 left of $0.10 (resets 2025-04-01 00:00 UTC)."
    )
    job = await storage.get_job(db, e.job_id)
    assert job.status == "refused" and e.refusal.estimate_micros == 2 * PRICE


async def test_without_a_budget_an_admin_can_set_one(db):
    e = await _refused(db, new_job(free_quota=0))
    assert e.user_message == (
        "Not enough quota for this job: 1 image(s) with m would cost $0.04. m has no free images here. "
        "This server has no budget for paid images; an admin can set one."
    )


async def test_the_cap_and_each_team_are_named(db):
    await storage.set_guild_budget(db, GUILD, 10 * PRICE, now=T0)
    await storage.set_team(db, GUILD, ART, "Art", PRICE, "week", now=T0)
    await storage.accept_job(db, new_job(free_quota=0, roles=(ART,)), now=T0)  # Art is spent
    await storage.set_user_cap(db, GUILD, 3 * PRICE, "day", now=T0)
    await storage.accept_job(db, new_job(images=2, free_quota=0, roles=(ART,)), now=T0)  # the guild pays
    capped = await _refused(db, new_job(free_quota=0, roles=(ART,)))
    assert "Your spending cap: $0.00 left of $0.12 (resets 2025-03-13 00:00 UTC)." in capped.user_message
    await storage.set_user_cap(db, GUILD, None, now=T0)
    big = await _refused(db, new_job(images=9, free_quota=0, roles=(ART,)))
    assert "Team Art: $0.00 left (resets 2025-03-17 00:00 UTC)." in big.user_message
    assert "Server budget: $0.32 left of $0.40 (resets 2025-04-01 00:00 UTC)." in big.user_message
    assert big.user_message.index("Team Art") < big.user_message.index("Server budget")


def test_the_sentence_is_built_from_the_figures_alone():
    april = datetime(2025, 4, 1, tzinfo=UTC)
    refusal = storage.Refusal(
        "x",
        3,
        120_000,
        0,
        (
            storage.Shortfall("free", 0, 5, april),
            storage.Shortfall("guild", 48_612, 100_000, april - timedelta(days=19)),
        ),
        april - timedelta(days=19),
    )
    assert refusal_text(refusal) == (
        "Not enough quota for this job: 3 image(s) with x would cost $0.12. "
        "Free images left: 0 of 5 (resets 2025-04-01 00:00 UTC). "
        "Server budget: $0.05 left of $0.10 (resets 2025-03-13 00:00 UTC)."  # totals to the cent
    )
