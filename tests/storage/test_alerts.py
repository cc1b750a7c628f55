"""Alert settings, the figures an alert states, and claims that let one process post each alert once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

import storage
from storage import alerts, open_database
from storage.alerts import AlertKey
from storage.periods import to_db
from tests.storage.conftest import GUILD, PRICE, T0, new_job

CHANNEL = 555


async def test_settings_round_trip_and_off_clears_everything(db):
    assert await alerts.get_alert_settings(db, GUILD) == alerts.AlertSettings(GUILD)
    s = await alerts.set_alert_settings(db, GUILD, CHANNEL, (50, 80, 100), "weekly", actor_id=9, now=T0)
    assert (s.channel_id, s.thresholds, s.report, s.alerts_since, s.report_since) == (
        CHANNEL,
        (50, 80, 100),
        "weekly",
        T0,
        T0,
    )
    assert [a.guild_id for a in await alerts.active_alert_settings(db)] == [GUILD]
    # Changing the thresholds later keeps when alerts were turned on (old overruns stay history).
    later = T0 + timedelta(days=2)
    s = await alerts.set_alert_settings(db, GUILD, CHANNEL, (90,), "weekly", now=later)
    assert (s.thresholds, s.alerts_since, s.report_since) == ((90,), T0, T0)
    s = await alerts.set_alert_settings(db, GUILD, CHANNEL, (90,), "monthly", now=later)
    assert s.report_since == later  # a new kind of report starts counting now
    s = await alerts.set_alert_settings(db, GUILD, None, now=later)
    assert (s.channel_id, s.thresholds, s.report, s.alerts_since) == (None, (), "off", None)
    assert await alerts.active_alert_settings(db) == []
    actions = [e.action for e in await storage.audit_log(db, GUILD)]
    assert actions.count("alerts") == 4


@pytest.mark.parametrize(("thresholds", "report"), [((80, 50), "off"), ((0,), "off"), ((50,), "daily")])
async def test_settings_refuse_what_no_face_allows(db, thresholds, report):
    with pytest.raises(ValueError):
        await alerts.set_alert_settings(db, GUILD, CHANNEL, thresholds, report)


async def test_facts_state_each_budget_its_period_and_overruns(db):
    await storage.set_guild_budget(db, GUILD, 10 * PRICE, "week", now=T0)
    await storage.set_team(db, GUILD, 501, "Art", 4 * PRICE, now=T0)
    await storage.set_team(db, GUILD, 502, "Retired", 0, now=T0)
    team = await db.read(lambda conn: conn.fetchval("SELECT id FROM teams WHERE role_id = 501"))
    a = await storage.accept_job(db, new_job(free_quota=0), now=T0)  # the guild pays
    await storage.complete_job(db, a.job_id, 1, actual_micros=3 * PRICE, now=T0)  # billed 3x: overrun
    b = await storage.accept_job(db, new_job(user_id=2, free_quota=0, roles=(501,)), now=T0)
    await storage.complete_job(db, b.job_id, 1, now=T0)

    facts = await alerts.alert_facts(
        db, GUILD, stale_after=600, overruns_since=T0 - timedelta(hours=1), now=T0
    )
    by = {x.subject: x for x in facts.budgets}
    assert set(by) == {"guild", f"team:{team}"}  # a retired team has no budget to alert on
    g = by["guild"]
    # The budget is charged the reservation only; the rest is the job's overrun (storage.settle).
    assert (g.limit_micros, g.spent_micros, g.period) == (10 * PRICE, PRICE, "week")
    assert g.start == storage.period_at("week", T0).start and g.resets_at == storage.period_at("week", T0).end
    assert (by[f"team:{team}"].name, by[f"team:{team}"].spent_micros) == ("Art", PRICE)
    (o,) = facts.overruns
    assert (o.job_id, o.payer, o.user_id, o.reserved_micros, o.cost_micros, o.overrun_micros) == (
        a.job_id,
        "guild",
        1,
        PRICE,
        3 * PRICE,
        2 * PRICE,
    )
    assert (
        await alerts.alert_facts(db, GUILD, stale_after=600, overruns_since=T0 + timedelta(hours=1), now=T0)
    ).overruns == ()
    assert (await alerts.alert_facts(db, GUILD, stale_after=600, overruns_since=None, now=T0)).overruns == ()
    top = await alerts.top_spenders(db, GUILD, "guild", g.start, g.resets_at)
    assert top == [(1, 3 * PRICE)]


def _key(threshold: int = 50) -> AlertKey:
    return AlertKey(GUILD, "guild", to_db(storage.period_at("month", T0).start), threshold)


async def test_a_key_is_claimed_once_sent_once_and_released_for_a_retry(db):
    keys = [_key(50), _key(80)]
    assert await alerts.claim(db, keys, "p1", stale_after=600, now=T0) == keys
    assert await alerts.claim(db, keys, "p2", stale_after=600, now=T0) == []
    await alerts.mark_sent(db, [_key(50)], "p1", CHANNEL, 1234, now=T0)
    await alerts.release(db, [_key(80)], "p1")  # posting failed: someone may try again
    assert await alerts.claim(db, keys, "p2", stale_after=600, now=T0) == [_key(80)]
    # A claim whose poster died is taken over after stale_after, a sent one never.
    later = T0 + timedelta(seconds=601)
    assert await alerts.claim(db, keys, "p3", stale_after=600, now=later) == [_key(80)]
    await alerts.mark_sent(db, [_key(80)], "p2", CHANNEL, 99, now=later)  # not p2's any more: no effect
    sent = {s.key.threshold: s for s in await alerts.sent_alerts(db, GUILD)}
    assert (sent[50].claimed_by, sent[50].message_id, sent[50].sent_at) == ("p1", 1234, T0)
    assert (sent[80].claimed_by, sent[80].sent_at) == ("p3", None)
    facts = await alerts.alert_facts(db, GUILD, stale_after=600, overruns_since=None, now=T0)
    assert facts.sent == {("guild", _key(50).period_start, 50), ("guild", _key(80).period_start, 80)}


async def test_two_databases_handles_claiming_at_once_get_each_key_once(db_target):
    # Two processes' connections to one database, racing for the same ten keys.
    one, two = await open_database(db_target), await open_database(db_target)
    try:
        keys = [_key(t) for t in range(10, 110, 10)]
        got = await asyncio.gather(
            *(
                alerts.claim(d, keys, name, stale_after=600, now=T0)
                for d, name in ((one, "a"), (two, "b")) * 3
            )
        )
    finally:
        await one.close()
        await two.close()
    claimed = [k for batch in got for k in batch]
    assert sorted(claimed, key=lambda k: k.threshold) == keys
