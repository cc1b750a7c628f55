"""A job's life and its money: accept, run, complete or fail, exactly once; admin refunds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import storage
from storage import QuotaRefused
from tests.storage.conftest import GUILD, PRICE, T0, new_job


async def test_accept_records_every_field(db):
    job = new_job(
        images=2, params={"seed": 7, "aspect_ratio": "1:1"}, meta={"inputs": ["a.png"]}, kind="edit"
    )
    r = await storage.accept_job(db, job, now=T0)
    assert (r.charged_to, r.images, r.micros, r.estimate_micros, r.free_remaining) == (
        "free",
        2,
        0,
        2 * PRICE,
        3,
    )
    assert r.resets_at.isoformat() == "2025-04-01T00:00:00+00:00"
    row = await storage.get_job(db, r.job_id)
    assert row.status == "queued" and row.reservation == "open"
    assert (row.user_id, row.guild_id, row.channel_id, row.model) == (1, GUILD, 7, "m")
    assert row.params == {"seed": 7, "aspect_ratio": "1:1"} and row.meta == {"inputs": ["a.png"]}
    assert row.created_at == T0 and row.deadline_at == T0 + timedelta(seconds=600)
    assert row.estimated_micros == 2 * PRICE and row.kind == "edit"


async def test_running_then_success_settles_at_what_was_delivered(db):
    await storage.set_guild_budget(db, GUILD, 1_000_000, now=T0)
    r = await storage.accept_job(db, new_job(images=4, free_quota=0), now=T0)
    assert (r.charged_to, r.micros) == ("guild", 4 * PRICE)
    assert await storage.mark_running(db, r.job_id, "wavespeed", "wavespeed-ai/x", now=T0)
    assert await storage.set_task_id(db, r.job_id, "task-1", now=T0)
    s = await storage.complete_job(
        db, r.job_id, 3, result_urls=["u1", "u2", "u3"], now=T0 + timedelta(seconds=9)
    )
    assert (s.status, s.charged_to, s.images_delivered) == ("succeeded", "guild", 3)
    assert (s.cost_micros, s.charged_micros, s.returned_micros, s.overrun_micros) == (
        3 * PRICE,
        3 * PRICE,
        PRICE,
        0,
    )
    job = await storage.get_job(db, r.job_id)
    assert (job.provider, job.task_id, job.attempts, job.result_urls) == (
        "wavespeed",
        "task-1",
        1,
        ("u1", "u2", "u3"),
    )
    assert job.started_at == T0 and job.finished_at == T0 + timedelta(seconds=9)
    status = await storage.quota_status(db, 1, GUILD, {"m": 0}, now=T0)
    assert status.guild.spent_micros == 3 * PRICE and status.spent_micros == 3 * PRICE
    assert await storage.check(db, now=T0) == []


async def test_fewer_free_images_give_the_rest_back(db):
    r = await storage.accept_job(db, new_job(images=3), now=T0)
    s = await storage.complete_job(db, r.job_id, 1, now=T0)
    assert (s.charged_to, s.returned_images, s.charged_micros, s.cost_micros) == ("free", 2, 0, PRICE)
    assert r.free_remaining + s.returned_images == 4
    status = await storage.quota_status(db, 1, GUILD, {"m": 5}, now=T0)
    assert status.free[0].used == 1 and status.free[0].remaining == 4


async def test_the_providers_reported_cost_wins(db):
    await storage.set_guild_budget(db, GUILD, 1_000_000, now=T0)
    r = await storage.accept_job(db, new_job(images=2, free_quota=0), now=T0)
    s = await storage.complete_job(db, r.job_id, 2, actual_micros=61_234, now=T0)
    assert (s.cost_micros, s.charged_micros, s.returned_micros) == (61_234, 61_234, 2 * PRICE - 61_234)
    assert await storage.check(db, now=T0) == []


async def test_a_cost_above_the_reservation_charges_the_reservation_and_records_the_overrun(db):
    # Vtrix reporting usage.cost "250" for a $0.04 job, against a $1 budget and a $0.50 cap.
    await storage.set_guild_budget(db, GUILD, 1_000_000, now=T0)
    await storage.set_user_cap(db, GUILD, 500_000, now=T0)
    r = await storage.accept_job(db, new_job(free_quota=0), now=T0)
    s = await storage.complete_job(db, r.job_id, 1, actual_micros=250_000_000, now=T0)
    assert (s.cost_micros, s.charged_micros, s.overrun_micros) == (250_000_000, PRICE, 250_000_000 - PRICE)
    status = await storage.quota_status(db, 1, GUILD, {"m": 0}, now=T0)
    assert status.guild.spent_micros == PRICE and status.spent_micros == PRICE  # no limit passed
    job = await storage.get_job(db, r.job_id)
    assert (job.actual_micros, job.overrun_micros) == (250_000_000, 250_000_000 - PRICE)
    (row,) = await storage.usage(db, guild_id=GUILD)
    assert (row.cost_micros, row.overrun_micros) == (250_000_000, 250_000_000 - PRICE)
    assert await storage.overrun_total(db, GUILD, T0 - timedelta(days=1)) == 250_000_000 - PRICE
    assert await storage.overrun_total(db, GUILD, T0 + timedelta(days=1)) == 0
    assert await storage.check(db, now=T0) == []
    again = await storage.complete_job(db, r.job_id, 1, actual_micros=250_000_000, now=T0)
    assert again.already and again.overrun_micros == s.overrun_micros


async def test_failover_to_a_dearer_route_is_settled_at_its_price(db):
    await storage.set_guild_budget(db, GUILD, 1_000_000, now=T0)
    r = await storage.accept_job(db, new_job(free_quota=0), now=T0)
    await storage.mark_running(db, r.job_id, "modelverse", "m", "t1", now=T0)
    await storage.mark_running(db, r.job_id, "vtrix", "m", "t2", price_micros=PRICE + 100, now=T0)
    s = await storage.complete_job(db, r.job_id, 1, now=T0)
    assert (s.cost_micros, s.overrun_micros) == (PRICE + 100, 100)
    assert (await storage.get_job(db, r.job_id)).attempts == 2


@pytest.mark.parametrize("status", ["failed", "refused", "cancelled"])
async def test_a_failed_job_costs_nothing(db, status):
    await storage.set_guild_budget(db, GUILD, 1_000_000, now=T0)
    free = await storage.accept_job(db, new_job(images=2), now=T0)
    paid = await storage.accept_job(db, new_job(images=4, free_quota=0, model="p"), now=T0)
    assert await storage.fail_job(db, free.job_id, status, "provider said no", now=T0)
    assert await storage.fail_job(db, paid.job_id, status, "timed out", now=T0)
    status_now = await storage.quota_status(db, 1, GUILD, {"m": 5, "p": 0}, now=T0)
    assert (
        status_now.free[0].used == 0 and status_now.guild.spent_micros == 0 and status_now.spent_micros == 0
    )
    job = await storage.get_job(db, paid.job_id)
    assert (job.status, job.reservation, job.error, job.actual_micros) == (status, "refunded", "timed out", 0)
    assert await storage.check(db, now=T0) == []


async def test_settle_and_refund_happen_exactly_once(db):
    r = await storage.accept_job(db, new_job(images=2), now=T0)
    first = await storage.complete_job(db, r.job_id, 2, now=T0)
    again = await storage.complete_job(db, r.job_id, 0, actual_micros=1, now=T0)
    assert again.already and not first.already
    assert (again.images_delivered, again.cost_micros, again.returned_images) == (2, 2 * PRICE, 0)
    assert not await storage.fail_job(db, r.job_id, now=T0)  # too late to fail a finished job
    assert (await storage.get_job(db, r.job_id)).status == "succeeded"

    f = await storage.accept_job(db, new_job(), now=T0)
    assert await storage.fail_job(db, f.job_id, now=T0)
    assert not await storage.fail_job(db, f.job_id, now=T0)
    late = await storage.complete_job(db, f.job_id, 1, now=T0)  # a result after a timeout is not charged
    assert late.already and late.status == "failed" and late.charged_micros == 0
    assert not await storage.mark_running(db, f.job_id, "x", "y", now=T0)
    assert not await storage.set_task_id(db, f.job_id, "t", now=T0)
    assert await storage.check(db, now=T0) == []


async def test_the_ledger_refuses_a_second_settle_even_behind_our_back(db):
    r = await storage.accept_job(db, new_job(), now=T0)
    await storage.complete_job(db, r.job_id, 1, now=T0)

    async def settle_again(conn):
        await conn.execute(
            "INSERT INTO ledger (at, entry, account, bucket, day, guild_id, job_id, images) "
            "SELECT at, 'settle', account, bucket, day, guild_id, job_id, -1 FROM ledger "
            "WHERE job_id = ? AND entry = 'reserve'",
            (r.job_id,),
        )

    with pytest.raises(storage.IntegrityViolation):
        await db.write(settle_again)

    async def rewrite_history(conn):
        await conn.execute("UPDATE ledger SET images = 0")

    async def erase_history(conn):
        await conn.execute("DELETE FROM ledger")

    for statement in (rewrite_history, erase_history):
        with pytest.raises(storage.IntegrityViolation, match="append-only"):
            await db.write(statement)
    if db.dialect == "postgres":

        async def truncate(conn):
            await conn.execute("TRUNCATE ledger CASCADE")

        with pytest.raises(storage.IntegrityViolation, match="append-only"):
            await db.write(truncate)
    assert await storage.check(db, now=T0) == []


async def test_refusal_records_the_job_and_says_what_is_left(db):
    await storage.set_guild_budget(db, GUILD, 100_000, now=T0)
    await storage.accept_job(db, new_job(images=2, free_quota=0), now=T0)  # $0.08 of $0.10
    with pytest.raises(QuotaRefused) as err:
        await storage.accept_job(db, new_job(images=2, free_quota=1), now=T0)
    e = err.value
    r = e.refusal
    assert (r.model, r.images, r.estimate_micros, r.free_left) == ("m", 2, 2 * PRICE, 1)
    april = datetime(2025, 4, 1, tzinfo=UTC)
    assert r.shortfalls == (
        storage.Shortfall("free", 1, 1, april),
        storage.Shortfall("guild", 20_000, 100_000, april),
    )
    assert (e.cost_micros, e.free_remaining, e.resets_at) == (2 * PRICE, 1, april)
    job = await storage.get_job(db, e.job_id)
    assert (job.status, job.reservation, job.charged_to) == ("refused", "none", None)
    assert job.error == f"quota_refused: {r.summary()}" and "guild 20000/100000" in job.error
    assert await storage.check(db, now=T0) == []


async def test_without_a_budget_the_refusal_says_there_is_none(db):
    with pytest.raises(QuotaRefused) as err:
        await storage.accept_job(db, new_job(free_quota=0), now=T0)
    (free, guild) = err.value.refusal.shortfalls
    assert (guild.kind, guild.left, guild.limit) == ("guild", 0, 0)  # bot/refusals.py: "no budget"
    assert err.value.refusal.resets_at == free.resets_at  # no budget has nothing to reset


async def test_operator_jobs_are_costed_but_never_limited(db):
    r = await storage.accept_job(db, new_job(user_id=None, guild_id=None, images=4, free_quota=0), now=T0)
    assert (r.charged_to, r.micros, r.free_remaining, r.resets_at) == ("operator", 4 * PRICE, None, None)
    s = await storage.complete_job(db, r.job_id, 4, now=T0)
    assert s.charged_micros == 4 * PRICE
    job = await storage.get_job(db, r.job_id)
    assert job.guild_id == 0 and job.user_id is None
    assert await storage.check(db, now=T0) == []


async def test_admin_refund_of_a_finished_job_reverses_it_once(db):
    await storage.set_guild_budget(db, GUILD, 1_000_000, now=T0)
    r = await storage.accept_job(db, new_job(images=2, free_quota=0), now=T0)
    await storage.complete_job(db, r.job_id, 2, now=T0)
    refund = await storage.refund_job(db, r.job_id, actor_id=42, reason="blurry", now=T0)
    assert (refund.returned_micros, refund.already) == (2 * PRICE, False)
    assert (await storage.refund_job(db, r.job_id, actor_id=42, now=T0)).already
    status = await storage.quota_status(db, 1, GUILD, {"m": 0}, now=T0)
    assert status.guild.spent_micros == 0 and status.spent_micros == 0
    job = await storage.get_job(db, r.job_id)
    assert (job.status, job.reservation) == ("succeeded", "reversed")
    entries = await storage.audit_log(db, GUILD)
    assert entries[0].action == "refund" and entries[0].actor_id == 42
    assert entries[0].details == {"job_id": r.job_id, "reason": "blurry"}
    assert await storage.check(db, now=T0) == []


async def test_admin_refund_of_a_running_job_cancels_it(db):
    r = await storage.accept_job(db, new_job(images=2), now=T0)
    refund = await storage.refund_job(db, r.job_id, actor_id=42, now=T0)
    assert (refund.returned_images, refund.already) == (2, False)
    job = await storage.get_job(db, r.job_id)
    assert (job.status, job.error) == ("cancelled", "cancelled: Refunded by an admin.")
    assert (await storage.complete_job(db, r.job_id, 2, now=T0)).already  # its late result is free
    with pytest.raises(storage.JobNotFound):
        await storage.refund_job(db, "nope", now=T0)
    assert await storage.check(db, now=T0) == []


async def test_what_did_i_run(db):
    ids = []
    for i in range(4):
        r = await storage.accept_job(db, new_job(prompt=f"p{i}"), now=T0 + timedelta(minutes=i))
        ids.append(r.job_id)
    other = await storage.accept_job(db, new_job(user_id=2), now=T0 + timedelta(seconds=30))
    await storage.set_posted(db, ids[0], 7, 555, now=T0)
    mine = await storage.list_jobs(db, user_id=1, limit=3)
    assert [j.prompt for j in mine] == ["p3", "p2", "p1"]
    assert len(await storage.list_jobs(db, guild_id=GUILD, limit=10)) == 5
    assert (await storage.get_job(db, ids[0])).posted_message_id == 555
    assert await storage.get_job(db, "missing") is None
    with pytest.raises(storage.JobNotFound):
        await storage.set_posted(db, "missing", 1, 2, now=T0)
    unfinished = await storage.unfinished_jobs(db)  # oldest first
    assert [j.id for j in unfinished] == [ids[0], other.job_id, *ids[1:]]


async def test_bad_arguments_are_programming_errors(db):
    with pytest.raises(ValueError):
        await storage.accept_job(db, new_job(images=0), now=T0)
    r = await storage.accept_job(db, new_job(), now=T0)
    with pytest.raises(ValueError):
        await storage.complete_job(db, r.job_id, -1, now=T0)
    with pytest.raises(ValueError):
        await storage.fail_job(db, r.job_id, "succeeded", now=T0)
    with pytest.raises(storage.JobNotFound):
        await storage.complete_job(db, "nope", 1, now=T0)


async def test_an_id_drawn_twice_in_one_millisecond_is_drawn_again(db, monkeypatch):
    import storage.jobs

    first = await storage.accept_job(db, new_job(), now=T0)
    drawn = iter([first.job_id, first.job_id, "zzzzzzzzzzzz"])
    monkeypatch.setattr(storage.jobs, "new_job_id", lambda: next(drawn))
    second = await storage.accept_job(db, new_job(), now=T0)
    assert second.job_id == "zzzzzzzzzzzz"
    assert (await storage.get_job(db, first.job_id)).status == "queued"  # the first is untouched
    assert await storage.check(db, now=T0) == []
