"""`db check` finds what would make the books disagree."""

from __future__ import annotations

from datetime import timedelta

import storage
from storage import Conn
from tests.storage.conftest import GUILD, T0, new_job, tamper


async def _busy_books(db):
    await storage.set_guild_budget(db, GUILD, 1_000_000, now=T0)
    ok = await storage.accept_job(db, new_job(images=2), now=T0)
    await storage.complete_job(db, ok.job_id, 1, now=T0)
    paid = await storage.accept_job(db, new_job(free_quota=0), now=T0)
    await storage.complete_job(db, paid.job_id, 1, now=T0)
    failed = await storage.accept_job(db, new_job(), now=T0)
    await storage.fail_job(db, failed.job_id, now=T0)
    await storage.grant_free_images(db, GUILD, 1, "m", 2, now=T0)
    return paid.job_id


async def test_balanced_books_pass(db):
    await _busy_books(db)
    assert await storage.check(db, now=T0) == []


async def test_a_cached_balance_that_disagrees_is_reported(db):
    await _busy_books(db)
    await tamper(db, "UPDATE balances SET micros = micros + 1 WHERE bucket LIKE 'guild:%'")
    problems = await storage.check(db, now=T0)
    assert len(problems) == 1 and "balance guild:100" in problems[0] and "ledger sums to" in problems[0]


async def test_a_charge_that_disagrees_with_the_job_is_reported(db):
    job_id = await _busy_books(db)
    await tamper(db, "UPDATE jobs SET actual_micros = 1 WHERE id = ?", job_id)
    problems = await storage.check(db, now=T0)
    assert any(f"job {job_id}" in p and "actual cost of 1" in p for p in problems)


async def test_a_finished_job_with_an_open_reservation_is_reported(db):
    r = await storage.accept_job(db, new_job(), now=T0)
    await tamper(db, "UPDATE jobs SET status = 'succeeded' WHERE id = ?", r.job_id)
    problems = await storage.check(db, now=T0)
    assert any("reservation should be settled or reversed" in p for p in problems)
    assert any("0 settle/refund rows" in p for p in problems)


async def test_a_reservation_held_past_the_deadline_is_reported(db):
    r = await storage.accept_job(db, new_job(deadline_s=60), now=T0)
    assert await storage.check(db, now=T0 + timedelta(minutes=5)) == []
    late = await storage.check(db, now=T0 + timedelta(minutes=7))
    assert len(late) == 1 and r.job_id in late[0] and "past its deadline" in late[0]
    await storage.fail_job(db, r.job_id, error="deadline", now=T0 + timedelta(minutes=7))
    assert await storage.check(db, now=T0 + timedelta(days=9)) == []


async def test_a_ledger_guard_turned_off_is_reported(db):
    await _busy_books(db)

    async def disable(conn: Conn) -> None:
        if conn.dialect == "sqlite":
            await conn.execute("DROP TRIGGER ledger_no_update")
        else:
            await conn.execute("ALTER TABLE ledger DISABLE TRIGGER ledger_no_update")

    await db.write(disable)
    problems = await storage.check(db, now=T0)
    assert problems == ["the ledger's guard triggers are missing or disabled: ledger_no_update"]
