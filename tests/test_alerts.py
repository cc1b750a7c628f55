"""The alert checker (bot/alerts.py) over a real database on each backend, with its clock injected:
each threshold once per period, overruns once, a report once per ended period; restarts and a
second checker post nothing twice. The Discord side is tests/e2e/test_alerts.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

import storage
from bot.accounts import AccountService
from bot.alerts import AlertService, Notice
from bot.catalog import Catalog
from storage import Database, NewJob, open_database

T0 = datetime(2025, 3, 12, 12, 0, tzinfo=UTC)  # a Wednesday
NEXT_MONDAY = datetime(2025, 3, 17, 0, 0, 1, tzinfo=UTC)
GUILD, CHANNEL = 100, 555
PRICE = 300_000  # $0.30 a job against a $1.00 weekly budget
CATALOG = Catalog.default()


@pytest.fixture
async def db(db_target) -> AsyncIterator[Database]:
    database = await open_database(db_target)
    try:
        yield database
    finally:
        await database.close()


def checker(db: Database, owner: str = "p1", now: datetime = T0) -> AlertService:
    clock = [now]
    service = AlertService(db, AccountService(db, CATALOG), owner=owner, clock=lambda: clock[0])
    service.move = lambda moment: clock.__setitem__(0, moment)  # type: ignore[attr-defined]
    return service


async def paid_job(
    db: Database, user: int = 1, cost: int | None = None, roles=(), now=T0, price: int = PRICE
) -> str:
    job = NewJob(
        model="m", prompt="p", images=1, price_micros=price, free_quota=0, user_id=user,
        guild_id=GUILD, channel_id=7, roles=roles,
    )  # fmt: skip
    r = await storage.accept_job(db, job, now=now)
    await storage.complete_job(db, r.job_id, 1, actual_micros=cost, now=now)
    return r.job_id


async def post(service: AlertService, message_id: int = 1) -> list[Notice]:
    """What a poster does: take what is due and mark it sent."""
    notices = await service.due()
    for n in notices:
        await service.sent(n, message_id)
    return notices


async def test_each_threshold_is_alerted_once_per_period(db):
    await storage.set_guild_budget(db, GUILD, 1_000_000, "week", now=T0)
    alerts = checker(db)
    await alerts.configure(GUILD, channel_id=CHANNEL, at="50,80,100")
    await paid_job(db, user=1)
    assert await post(alerts) == []  # 30%
    await paid_job(db, user=2)
    await paid_job(db, user=2, cost=10_000)  # 61%
    (n,) = await post(alerts)
    assert (n.kind, n.channel_id, [k.threshold for k in n.keys]) == ("budget", CHANNEL, [50])
    assert "The server budget passed **50%** this week: $0.61 of $1.00 spent (61%)." in n.text
    assert "Top spenders: <@2> $0.31, <@1> $0.30." in n.text
    assert f"<t:{int(datetime(2025, 3, 17, tzinfo=UTC).timestamp())}:f>" in n.text  # when it resets
    assert await post(alerts) == []
    await paid_job(db, user=3, cost=390_000, price=390_000)  # to exactly 100%
    (n,) = await post(alerts)
    assert n.kind == "budget"  # 80 and 100 at once: one message
    assert [k.threshold for k in n.keys] == [80, 100] and "passed **100%** (also 80%)" in n.text
    assert n.text.startswith("🚨")
    assert await post(checker(db, "p2")) == []  # a restart (another process) posts nothing again
    alerts.move(NEXT_MONDAY)  # a new period: nothing spent yet, nothing to say
    assert await post(alerts) == []
    await paid_job(db, user=1, now=NEXT_MONDAY)
    await paid_job(db, user=1, now=NEXT_MONDAY)
    (n,) = await post(alerts)
    assert [k.threshold for k in n.keys] == [50]  # the same threshold, once more: a new period


async def test_a_team_budget_is_alerted_by_name(db):
    await storage.set_team(db, GUILD, 501, "Art", 600_000, "month", now=T0)
    alerts = checker(db)
    await alerts.configure(GUILD, channel_id=CHANNEL, at="100")
    await paid_job(db, user=1, roles=(501,))
    await paid_job(db, user=1, roles=(501,))
    (n,) = await post(alerts)
    assert "Team **Art**'s budget passed **100%** this month: $0.60 of $0.60 spent (100%)." in n.text


async def test_two_checkers_at_once_claim_each_alert_once(db_target):
    one, two = await open_database(db_target), await open_database(db_target)
    try:
        await storage.set_guild_budget(one, GUILD, 1_000_000, "week", now=T0)
        await checker(one).configure(GUILD, channel_id=CHANNEL, at="10,20,50")
        await paid_job(one)
        got = await asyncio.gather(*(checker(d, f"p{i}").due() for i, d in enumerate((one, two) * 3)))
    finally:
        await one.close()
        await two.close()
    notices = [n for batch in got for n in batch]
    assert len(notices) == 1 and [k.threshold for k in notices[0].keys] == [10, 20]


async def test_a_failed_post_is_tried_again_and_a_dead_posters_claim_taken_over(db):
    await storage.set_guild_budget(db, GUILD, 1_000_000, "week", now=T0)
    alerts = checker(db)
    await alerts.configure(GUILD, channel_id=CHANNEL, at="20")
    await paid_job(db)
    (n,) = await alerts.due()
    await alerts.failed(n)  # e.g. Discord answered 500
    (again,) = await alerts.due()
    assert again.keys == n.keys
    # Claimed but never marked sent (the poster died): another process takes it after 10 minutes.
    other = checker(db, "p2", T0 + timedelta(minutes=5))
    assert await other.due() == []
    other.move(T0 + timedelta(minutes=11))
    (taken,) = await post(other)
    assert taken.keys == n.keys
    assert await alerts.due() == []


async def test_an_overrun_is_alerted_once(db):
    await storage.set_guild_budget(db, GUILD, 10_000_000, "month", now=T0)
    alerts = checker(db)
    await alerts.configure(GUILD, channel_id=CHANNEL, at="90")
    job = await paid_job(db, user=4, cost=450_000)
    (n,) = await post(alerts)
    assert n.kind == "overrun" and job in n.text
    assert "$0.45, $0.15 more than the $0.30 reserved for it" in n.text and "<@4>" in n.text
    assert "charged to the server budget" in n.text
    assert await post(alerts) == [] and await post(checker(db, "p2")) == []


async def test_overruns_before_alerts_were_turned_on_are_history(db):
    await storage.set_guild_budget(db, GUILD, 10_000_000, "month", now=T0)
    await paid_job(db, cost=450_000, now=T0 - timedelta(hours=1))
    alerts = checker(db)
    await alerts.configure(GUILD, channel_id=CHANNEL, at="90")
    assert await alerts.due() == []


async def test_a_weekly_report_is_posted_once_when_the_week_ends(db):
    alerts = checker(db)
    await alerts.configure(GUILD, channel_id=CHANNEL, at="off", report="weekly")
    await storage.set_guild_budget(db, GUILD, 10_000_000, "month", now=T0)
    await paid_job(db, user=1)
    await paid_job(db, user=2, cost=100_000)
    assert await post(alerts) == []  # the week before reports were on is not reported
    alerts.move(NEXT_MONDAY - timedelta(seconds=2))
    assert await post(alerts) == []  # not over yet
    alerts.move(NEXT_MONDAY)
    (n,) = await post(alerts)
    assert n.kind == "report" and n.report is not None
    assert n.text == "📈 **Weekly usage report**, 2025-03-10 to 2025-03-16 (UTC)"
    assert {r.key: r.cost_micros for r in n.report.by_user.rows} == {"1": PRICE, "2": 100_000}
    assert [r.key for r in n.report.by_day.rows] == ["2025-03-12"]
    assert await post(alerts) == [] and await post(checker(db, "p2", NEXT_MONDAY)) == []
    alerts.move(NEXT_MONDAY + timedelta(days=7))
    (n,) = await post(alerts)  # the next week, with nothing in it, is reported too
    assert n.report is not None and n.report.by_user.rows == ()


async def test_alerts_off_posts_nothing(db):
    await storage.set_guild_budget(db, GUILD, 1_000_000, "week", now=T0)
    alerts = checker(db)
    await alerts.configure(GUILD, channel_id=CHANNEL, at="10", report="weekly")
    await alerts.configure(GUILD, off=True)
    await paid_job(db)
    alerts.move(NEXT_MONDAY)
    assert await alerts.due() == []
