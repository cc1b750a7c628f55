"""The durable queue: fair claims with provider slots, leases that guard every settle and refund,
backpressure that keeps a job's place, cancels, and recovery of what a dead worker left."""

from __future__ import annotations

from datetime import timedelta

import pytest

import storage
from storage import capacity, leases, queue, recovery, roles, waiting
from tests.storage.conftest import GUILD, PRICE, T0, new_job

WS = queue.RouteChoice("wavespeed", "wavespeed-ai/flux-kontext-pro", PRICE)
VX = queue.RouteChoice("vtrix", "flux_kontext_pro", PRICE)
CEILINGS = {"wavespeed": 2, "vtrix": 2}
DELIVERY = {"channel_id": 7, "token": "t"}


async def put(db, user=1, *, at=T0, routes=(WS,), **kw):
    r = await queue.enqueue(db, new_job(user_id=user, **kw), routes=list(routes), delivery=DELIVERY, now=at)
    return r.job_id


async def claim(db, worker="w1", n=10, at=T0, per_user=3, ceilings=CEILINGS, **kw):
    got = await queue.claim(db, worker, max_jobs=n, per_user=per_user, ceilings=ceilings, now=at, **kw)
    return [j.id for j in got.jobs]


def later(seconds: float):
    return T0 + timedelta(seconds=seconds)


async def test_claims_serve_members_by_turn_then_age(db):
    a1 = await put(db, 1, at=later(0))
    a2 = await put(db, 1, at=later(1))
    a3 = await put(db, 1, at=later(2))
    b1 = await put(db, 2, at=later(3))
    c1 = await put(db, 3, at=later(4))
    line = await waiting.positions(db)
    assert [j for j, _ in sorted(line.items(), key=lambda kv: kv[1])] == [a1, b1, c1, a2, a3]
    got = await claim(db, n=3, ceilings={"wavespeed": 10}, at=later(5))
    assert got == [a1, b1, c1]
    assert (await waiting.positions(db)) == {a2: 1, a3: 2}


async def test_the_per_member_limit_and_the_provider_limit_hold_at_claim(db):
    mine = [await put(db, 1, at=later(i)) for i in range(3)]
    other = await put(db, 2, at=later(5))
    got = await claim(db, n=10, per_user=1, ceilings={"wavespeed": 5}, at=later(6))
    assert got == [mine[0], other]  # member 1's second job waits for their first
    assert await claim(db, n=10, per_user=1, ceilings={"wavespeed": 5}, at=later(6)) == []
    # The provider's cap counts every running job, whoever claimed it.
    more = [await put(db, u, at=later(7 + u)) for u in (3, 4, 5)]
    assert await claim(db, "w2", n=10, per_user=1, ceilings={"wavespeed": 3}, at=later(9)) == more[:1]


async def test_a_busy_first_route_spills_over_to_a_route_with_room(db):
    ids = [await put(db, u, at=later(u), routes=(WS, VX)) for u in range(1, 6)]
    got = await queue.claim(db, "w1", max_jobs=10, per_user=3, ceilings=CEILINGS, now=later(9))
    providers = {j.id: j.provider for j in got.jobs}
    assert [providers[i] for i in ids[:4]] == ["wavespeed", "wavespeed", "vtrix", "vtrix"]
    assert ids[4] not in providers  # both routes full: it waits, keeping its place
    job = await storage.get_job(db, ids[2])
    assert (job.status, job.provider, job.provider_model, job.lease_owner) == (
        "running",
        "vtrix",
        VX.provider_model,
        "w1",
    )


async def test_a_paused_or_throttled_provider_gets_nothing_until_it_has_room(db):
    jid = await put(db, 1)
    await capacity.adjust_capacity(
        db,
        "wavespeed",
        ceiling=2,
        rule=lambda s, open_now, waiting: type(s)(s.provider, 1, s.ceiling, later(30), None, 1),
        now=T0,
    )
    assert await claim(db, at=later(10)) == []  # paused
    assert await claim(db, at=later(31)) == [jid]
    second = await put(db, 2, at=later(31))
    assert await claim(db, at=later(32)) == []  # learned limit 1, one running
    assert (await capacity.capacities(db))[0].limit == 1
    await leases.settle(db, jid, "w1", images_delivered=1, actual_micros=None, now=later(33))
    assert await claim(db, at=later(34)) == [second]


async def test_only_the_lease_holder_settles_refunds_or_requeues(db):
    jid = await put(db, 1)
    assert await claim(db, "w1") == [jid]
    assert await leases.set_task(db, jid, "w2", "t-1") is False
    assert await leases.settle(db, jid, "w2", images_delivered=1, actual_micros=None) is None
    assert await leases.fail(db, jid, "w2", status="failed", error="x: y") is False
    assert await leases.requeue(db, jid, "w2") is False
    assert await leases.set_task(db, jid, "w1", "t-1") is True
    s = await leases.settle(db, jid, "w1", images_delivered=1, actual_micros=None, result_refs=["r1"])
    assert s is not None and s.status == "succeeded"
    job = await storage.get_job(db, jid)
    assert (job.lease_owner, job.result_refs, job.delivered_at) == ("w1", ("r1",), None)
    await leases.delivered(db, jid, channel_id=7, message_id=99, now=later(5))
    job = await storage.get_job(db, jid)
    assert (job.lease_owner, job.delivered_at, job.posted_message_id) == (None, later(5), 99)
    assert await storage.check(db) == []


async def test_a_requeued_job_keeps_its_place_and_skips_the_provider_that_failed_it(db):
    first = await put(db, 1, at=later(0), routes=(WS, VX))
    second = await put(db, 2, at=later(1), routes=(WS, VX))
    assert await claim(db, n=1, at=later(2)) == [first]
    assert await leases.requeue(db, first, "w1", tried="wavespeed", reason="failover", now=later(3))
    assert (await waiting.positions(db))[first] == 1  # still ahead of the younger job
    got = await queue.claim(db, "w1", max_jobs=1, per_user=3, ceilings=CEILINGS, now=later(4))
    assert [(j.id, j.provider) for j in got.jobs] == [(first, "vtrix")]
    # Held back by a busy provider: not claimable before not_before, place kept.
    assert await claim(db, n=1, at=later(5)) == [second]
    assert await leases.requeue(
        db, second, "w1", reason="provider_busy:wavespeed", not_before=later(20), now=later(6)
    )
    got = await queue.claim(db, "w1", max_jobs=5, per_user=3, ceilings=CEILINGS, now=later(7))
    assert got.jobs == [] and got.next_at == later(20)
    line = await waiting.waiting(db)
    assert [(w.job_id, w.waiting_reason) for w in line] == [(second, "provider_busy:wavespeed")]
    assert await claim(db, n=1, at=later(21)) == [second]


async def test_cancel_refunds_at_once_and_the_worker_can_no_longer_settle(db):
    await storage.set_guild_budget(db, GUILD, 1_000_000, now=T0)
    jid = await put(db, 1, free_quota=0)
    assert await claim(db) == [jid]
    before = await queue.cancel(db, jid, actor=1, error="cancelled: by the member", now=later(1))
    assert before is not None and before.status == "running"
    assert await leases.settle(db, jid, "w1", images_delivered=1, actual_micros=None) is None
    job = await storage.get_job(db, jid)
    assert (job.status, job.reservation) == ("cancelled", "refunded")
    assert await queue.cancel(db, jid, error="cancelled: again") is None
    with pytest.raises(storage.JobNotFound):
        await queue.cancel(db, "nosuchjob00", error="x: y")
    status = await storage.quota_status(db, 1, GUILD, {"m": 0}, now=later(2))
    assert status.guild.spent_micros == 0
    assert await storage.check(db, now=later(2)) == []


async def test_renew_extends_held_leases_and_reports_what_was_lost(db):
    a, b = await put(db, 1), await put(db, 2)
    assert sorted(await claim(db, "w1", lease_s=30)) == sorted([a, b])
    await queue.cancel(db, b, error="cancelled: x", now=later(1))
    statuses = await leases.renew(db, "w1", [a, b, "gone0000000"], lease_s=30, now=later(10))
    assert statuses == {a: "running", b: "cancelled"}
    assert (await storage.get_job(db, a)).lease_expires_at == later(40)


async def test_reap_resumes_polling_jobs_refunds_the_rest_and_leases_the_untold(db):
    polled = await put(db, 1, at=later(0))
    synchronous = await put(db, 2, at=later(1), routes=(queue.RouteChoice("modelverse", "m", PRICE),))
    stale = await put(db, 3, at=later(2))
    unsent = await put(db, 4, at=later(2))
    await claim(db, "dead", lease_s=30, at=later(3), ceilings={"wavespeed": 5, "modelverse": 5})
    for sent in (polled, synchronous, stale):  # the dead worker had begun sending these
        assert await leases.sending(db, sent, "dead", now=later(4))
    await leases.set_task(db, polled, "dead", "task-9", now=later(4))
    # Still leased: a live worker's jobs are never touched.
    early = await recovery.reap(db, "w2", resumable=["wavespeed"], lease_s=30, now=later(20))
    assert (early.requeued, early.refunded, early.finish) == ([], [], [])
    reaped = await recovery.reap(db, "w2", resumable=["wavespeed"], lease_s=30, now=later(40))
    # Resumed by its task id; and one no provider ever saw back in line, not refunded.
    assert reaped.requeued == [polled, unsent]
    assert sorted(reaped.refunded) == sorted([synchronous, stale])
    assert sorted(j.id for j in reaped.finish) == sorted([synchronous, stale])  # told by w2
    job = await storage.get_job(db, polled)
    assert (job.status, job.task_id, job.provider, job.lease_owner) == ("queued", "task-9", "wavespeed", None)
    # The resumed job goes back to its own provider, task id kept.
    got = await queue.claim(db, "w2", max_jobs=5, per_user=3, ceilings=CEILINGS, now=later(41))
    assert [(j.id, j.provider, j.task_id) for j in got.jobs] == [
        (polled, "wavespeed", "task-9"),
        (unsent, "wavespeed", None),
    ]
    assert (await storage.get_job(db, unsent)).sending_at is None  # a new attempt: not sent yet
    assert (await recovery.reap(db, "w3", resumable=["wavespeed"], now=later(45))).finish == []
    assert await storage.check(db, now=later(45)) == []


async def test_reap_refunds_jobs_past_their_deadline_and_jobs_whose_command_died(db):
    old = await put(db, 1, at=T0, deadline_s=60)
    pinned = await queue.enqueue(db, new_job(user_id=2), routes=[WS], pinned_to="cli", lease_s=30, now=T0)
    reaped = await recovery.reap(db, "w1", resumable=["wavespeed"], lease_s=30, now=later(61))
    assert sorted(reaped.refunded) == sorted([old, pinned.job_id])
    assert (await storage.get_job(db, old)).error.startswith("timeout:")
    assert (await storage.get_job(db, pinned.job_id)).error.startswith("interrupted:")
    assert [j.id for j in reaped.finish] == [old]  # a CLI job has nobody in Discord to tell


async def test_pinned_jobs_go_only_to_their_worker(db):
    mine = await queue.enqueue(db, new_job(user_id=1), routes=[WS], pinned_to="cli", lease_s=30, now=T0)
    other = await put(db, 2, at=later(1))
    assert await claim(db, "bot", at=later(2)) == [other]
    assert await claim(db, "cli", pinned_only=True, at=later(2)) == [mine.job_id]


async def test_a_full_queue_refuses_before_anything_is_recorded(db):
    await put(db, 1, at=later(0))
    with pytest.raises(queue.QueueFull):
        await queue.enqueue(db, new_job(user_id=2), routes=[WS], max_queue=1, now=later(1))
    assert len(await storage.list_jobs(db, limit=10)) == 1


async def test_stopping_hands_jobs_back_resumable_by_task_id(db):
    a, b = await put(db, 1), await put(db, 2)
    await claim(db, "w1")
    await leases.set_task(db, a, "w1", "task-a")
    assert sorted(await leases.release(db, "w1", [a, b, "unknown0000"])) == sorted([a, b])
    ja, jb = await storage.get_job(db, a), await storage.get_job(db, b)
    assert (ja.status, ja.task_id, ja.provider) == ("queued", "task-a", "wavespeed")
    assert (jb.status, jb.task_id, jb.provider) == ("queued", None, None)


async def test_only_one_process_holds_a_role_until_it_lapses(db):
    assert await roles.hold_role(db, "waiting-room", "p1", ttl=10, now=T0)
    assert not await roles.hold_role(db, "waiting-room", "p2", ttl=10, now=later(5))
    assert await roles.hold_role(db, "waiting-room", "p1", ttl=10, now=later(5))  # kept by renewing
    assert await roles.hold_role(db, "waiting-room", "p2", ttl=10, now=later(16))


async def test_a_process_with_no_face_leaves_the_telling_to_one_that_has_one(db):
    jid = await put(db, 1, at=T0, deadline_s=60)
    reaped = await recovery.reap(db, "cli", resumable=["wavespeed"], tell=False, now=later(61))
    assert reaped.refunded == [jid] and reaped.finish == []
    assert (await storage.get_job(db, jid)).lease_owner is None
    told = await recovery.reap(db, "bot", resumable=["wavespeed"], now=later(62))
    assert [j.id for j in told.finish] == [jid]


async def test_a_stop_refunds_a_job_being_sent_and_gives_back_the_others(db):
    unsent, sending, tasked = await put(db, 1), await put(db, 2), await put(db, 3)
    assert len(await claim(db, "w1", lease_s=30, at=later(1), ceilings={"wavespeed": 5})) == 3
    for job in (sending, tasked):
        assert await leases.sending(db, job, "w1", now=later(2))
    await leases.set_task(db, tasked, "w1", "task-1", now=later(3))
    # The record decides, not how far the stopping process believes a job got: the one being sent
    # may be at the provider with no task id to ask about, so it is refunded, not sent again.
    given = await leases.release(db, "w1", [unsent, sending, tasked], now=later(4))
    assert sorted(given) == sorted([unsent, tasked])
    states = {j: (await storage.get_job(db, j)) for j in (unsent, sending, tasked)}
    assert (states[unsent].status, states[unsent].task_id) == ("queued", None)
    assert (states[tasked].status, states[tasked].task_id) == ("queued", "task-1")
    assert (states[sending].status, states[sending].reservation) == ("failed", "refunded")
    assert states[sending].error.startswith("interrupted: the bot stopped before the provider answered")
    assert await storage.check(db, now=later(4)) == []


async def test_a_job_whose_workers_keep_dying_before_sending_it_is_refunded_at_last(db):
    job = await put(db, 1, at=T0)
    step = 0.0
    for attempt in range(1, recovery.MAX_UNSENT_ATTEMPTS + 1):
        assert await claim(db, f"dead{attempt}", lease_s=30, at=later(step)) == [job]
        reaped = await recovery.reap(db, "w", resumable=["wavespeed"], lease_s=30, now=later(step + 31))
        step += 40
        if attempt < recovery.MAX_UNSENT_ATTEMPTS:
            assert (reaped.requeued, reaped.refunded) == ([job], [])  # never sent: run it again
    assert (reaped.requeued, reaped.refunded) == ([], [job])
    record = await storage.get_job(db, job)
    assert (record.status, record.reservation, record.attempts) == ("failed", "refunded", 3)
    assert await storage.check(db, now=later(step)) == []


async def test_a_job_handed_back_with_its_task_keeps_its_providers_slot(db):
    tasked = await put(db, 1, at=later(0))
    assert await claim(db, "w1", ceilings={"wavespeed": 1}, at=later(1)) == [tasked]
    assert await leases.sending(db, tasked, "w1", now=later(2))
    await leases.set_task(db, tasked, "w1", "task-7", now=later(2))
    assert await leases.release(db, "w1", [tasked], now=later(3)) == [tasked]
    # A CLI's own job, which only its worker may claim: it would be a new submit to the provider,
    # whose one slot the handed-back task still holds (the task is open there until polled).
    mine = await queue.enqueue(db, new_job(user_id=2), routes=[WS], pinned_to="cli", lease_s=30, now=later(4))
    assert await claim(db, "cli", ceilings={"wavespeed": 1}, at=later(5), pinned_only=True) == []
    # The task's job itself is resumed without a new slot, and once it has ended the slot is free.
    assert await claim(db, "w2", ceilings={"wavespeed": 1}, at=later(6)) == [tasked]
    await storage.complete_job(db, tasked, 1, now=later(7))
    assert await claim(db, "cli", ceilings={"wavespeed": 1}, at=later(8), pinned_only=True) == [mine.job_id]
