"""The worker on the durable queue, with real services over a database file and the provider
emulator: who is told what, stops that hand jobs back, cancels and admin refunds that stop a running
job, and a worker that lost its lease."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import storage
from bot.config import load_settings
from bot.outcomes import JobFailed, JobResult
from bot.requests import Delivery, JobRequest, Stage
from bot.services import Services, open_services
from bot.worker import Posted
from storage import queue
from tests.emulator import ProviderEmulator, make_png

GUILD, USER = 7, 42
PRO = "black-forest-labs/flux-kontext-pro"
MAX_T2I = "black-forest-labs/flux-kontext-max/text-to-image"


class Recorder:
    """A face that remembers what it was told (stands in for the Discord presenter)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Stage]] = []
        self.finished: dict[str, JobResult | JobFailed] = {}
        self.done = asyncio.Event()
        self.fail_next = False

    async def update(self, job: storage.Job, event) -> None:
        self.events.append((job.id, event.stage))

    async def finish(self, job: storage.Job, outcome: JobResult | JobFailed) -> Posted | None:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("Discord is down")
        self.finished[job.id] = outcome
        self.done.set()
        return Posted(channel_id=1, message_id=1000 + len(self.finished))

    async def wait(self, job_id: str, timeout: float = 10.0) -> JobResult | JobFailed:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while job_id not in self.finished:
                self.done.clear()
                await self.done.wait()
        return self.finished[job_id]


def settings_for(tmp: Path, emulator: ProviderEmulator, *, only: str | None = None, **limits: float):
    config = tmp / "kontext.toml"
    text = "".join(f"[providers.{p}]\npoll_interval = 0.05\n" for p in ProviderEmulator.KEYS)
    text += "[limits]\njob_lease = 3\nshutdown_grace = 0.01\nallow_private_results = true\n" + "".join(
        f"{k} = {v}\n" for k, v in limits.items()
    )
    config.write_text(text)
    env = {"KONTEXT_DB": str(tmp / "k.db"), "KONTEXT_CONFIG": str(config), **emulator.env()}
    if only:
        env.update({f"{p.upper()}_API_KEY": "" for p in ProviderEmulator.KEYS if p != only})
    return load_settings(env)


@contextlib.asynccontextmanager
async def serving(settings, recorder: Recorder) -> AsyncIterator[Services]:
    async with open_services(settings) as svc:
        svc.worker.observer = recorder
        await svc.worker.start(claim_all=True)
        yield svc


def discord_job(model: str = PRO, images=None, **params) -> tuple[JobRequest, Delivery]:
    req = JobRequest(
        model=model,
        prompt="a red fox",
        images=list(images if images is not None else [make_png(300, 200)]),
        params=params,
        user_id=USER,
        guild_id=GUILD,
        channel_id=1,
    )
    delivery = Delivery(
        application_id=1,
        token="tok",
        token_expires_at=datetime.now(UTC) + timedelta(minutes=15),
        channel_id=1,
        guild_id=GUILD,
        user_id=USER,
        message_id=5,
    )
    return req, delivery


async def until(check, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 -- the database has no change event to wait on
            await asyncio.sleep(0.02)


async def test_a_discord_job_is_run_settled_told_and_marked_delivered(tmp_path, emulator):
    rec = Recorder()
    async with serving(settings_for(tmp_path, emulator, only="wavespeed"), rec) as svc:
        req, delivery = discord_job()
        sub = await svc.jobs.submit(req, delivery=delivery)
        outcome = await rec.wait(sub.job_id)
        assert isinstance(outcome, JobResult) and outcome.provider == "wavespeed" and len(outcome.images) == 1
        assert outcome.user_id == USER and outcome.waited >= 0 and outcome.elapsed > 0
        assert (sub.job_id, Stage.RUNNING) in rec.events

        async def marked() -> bool:
            job = await svc.jobs.get(sub.job_id)
            return job.delivered_at is not None

        await until(marked)
        job = await svc.jobs.get(sub.job_id)
        assert (job.status, job.lease_owner, job.posted_message_id) == ("succeeded", None, 1001)
        assert await storage.check(svc.db) == []


async def test_a_face_that_fails_to_tell_gets_another_try_after_the_lease(tmp_path, emulator):
    rec = Recorder()
    rec.fail_next = True
    async with serving(settings_for(tmp_path, emulator, only="wavespeed"), rec) as svc:
        req, delivery = discord_job()
        sub = await svc.jobs.submit(req, delivery=delivery)
        outcome = await rec.wait(sub.job_id, timeout=15)  # the reaper delivers it from the stores
        assert isinstance(outcome, JobResult) and len(outcome.images) == 1
        assert outcome.images[0].width > 0
        assert len(emulator.generations) == 1  # delivered again, never generated again


async def test_a_stop_hands_a_polled_job_back_and_the_next_worker_resumes_its_task(tmp_path, emulator):
    emulator.latency = 1.5
    settings = settings_for(tmp_path, emulator, only="wavespeed")
    first = Recorder()
    async with serving(settings, first) as svc:
        req, delivery = discord_job()
        sub = await svc.jobs.submit(req, delivery=delivery)

        async def has_task() -> bool:
            return (await svc.jobs.get(sub.job_id)).task_id is not None

        await until(has_task)
    async with await storage.open_database(tmp_path / "k.db") as db:
        job = await storage.get_job(db, sub.job_id)
    assert (job.status, job.lease_owner) == ("queued", None) and job.task_id
    second = Recorder()
    async with serving(settings, second) as svc:
        outcome = await second.wait(sub.job_id)
        assert isinstance(outcome, JobResult)
        submits = [r for r in emulator.requests if r.method == "POST" and r.provider == "wavespeed"]
        assert len(submits) == 1  # resumed by its task id, never submitted twice
        assert await storage.check(svc.db) == []
    assert first.finished == {}


async def test_cancel_stops_a_running_job_refunds_it_and_tells_its_face(tmp_path, emulator):
    emulator.latency = 5
    rec = Recorder()
    async with serving(settings_for(tmp_path, emulator, only="wavespeed"), rec) as svc:
        await svc.accounts.set_budget(GUILD, "1.00")
        req, delivery = discord_job(MAX_T2I, images=[])  # paid: no free images of max
        sub = await svc.jobs.submit(req, delivery=delivery)

        async def running() -> bool:
            return (await svc.jobs.get(sub.job_id)).task_id is not None

        await until(running)
        await svc.jobs.cancel(sub.job_id, user_id=USER, is_admin=False)
        outcome = await rec.wait(sub.job_id)
        assert isinstance(outcome, JobFailed) and outcome.cause.code == "cancelled"
        job = await svc.jobs.get(sub.job_id)
        assert (job.status, job.reservation, job.actual_micros) == ("cancelled", "refunded", 0)
        await until(lambda: _idle(svc))
        quota = await svc.accounts.quota(USER, GUILD)
        assert quota.status.guild.spent_micros == 0
        assert await storage.check(svc.db) == []


async def test_an_admin_refund_of_a_running_job_cancels_it_and_nothing_is_posted(tmp_path, emulator):
    emulator.latency = 5
    rec = Recorder()
    async with serving(settings_for(tmp_path, emulator, only="wavespeed"), rec) as svc:
        req, delivery = discord_job()
        sub = await svc.jobs.submit(req, delivery=delivery)

        async def running() -> bool:
            return (await svc.jobs.get(sub.job_id)).task_id is not None

        await until(running)
        refund = await svc.accounts.refund(sub.job_id, reason="wrong channel")
        assert refund.returned_images == 1
        outcome = await rec.wait(sub.job_id)
        assert isinstance(outcome, JobFailed)
        assert "admin" in outcome.user_message.lower()
        emulator.latency = 0
        await asyncio.sleep(0.3)
        job = await svc.jobs.get(sub.job_id)
        assert (job.status, job.images_delivered) == ("cancelled", 0)
        assert await storage.check(svc.db) == []


async def test_another_process_cancelling_a_job_stops_it_here_through_the_notification(tmp_path, emulator):
    emulator.latency = 5
    rec = Recorder()
    settings = settings_for(tmp_path, emulator, only="wavespeed")
    async with serving(settings, rec) as svc:
        req, delivery = discord_job()
        sub = await svc.jobs.submit(req, delivery=delivery)

        async def running() -> bool:
            return (await svc.jobs.get(sub.job_id)).task_id is not None

        await until(running)
        # Another process (its own connection to the database) cancels.
        other = await storage.open_database(tmp_path / "k.db")
        try:
            await queue.cancel(other, sub.job_id, error="cancelled: cancelled by the member")
        finally:
            await other.close()
        outcome = await rec.wait(sub.job_id, timeout=10)  # noticed at the next lease renewal
        assert isinstance(outcome, JobFailed)
        await until(lambda: _idle(svc))


async def test_a_worker_that_lost_its_lease_drops_the_job_without_a_word(tmp_path, emulator):
    emulator.latency = 3
    rec = Recorder()
    async with serving(settings_for(tmp_path, emulator, only="wavespeed"), rec) as svc:
        req, delivery = discord_job()
        sub = await svc.jobs.submit(req, delivery=delivery)

        async def running() -> bool:
            return (await svc.jobs.get(sub.job_id)).task_id is not None

        await until(running)
        # As if this worker had stalled and another took the job over.
        await svc.db.write(_steal, sub.job_id)

        await until(lambda: _idle(svc))
        assert sub.job_id not in rec.finished
        job = await svc.jobs.get(sub.job_id)
        assert (job.status, job.lease_owner) == ("running", "another")


async def _steal(conn, job_id):
    await conn.execute("UPDATE jobs SET lease_owner = 'another' WHERE id = ?", (job_id,))


@pytest.mark.parametrize("stage", ["before the task", "with a task"])
async def test_run_waits_for_its_own_job_and_a_cancelled_caller_cancels_it(tmp_path, emulator, stage):
    emulator.latency = 5
    async with open_services(settings_for(tmp_path, emulator, only="wavespeed")) as svc:
        req, _ = discord_job()
        task = asyncio.create_task(svc.jobs.run(req))
        await until(lambda: _has_jobs(svc))
        if stage == "with a task":
            await until(lambda: _has_task(svc))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        (job,) = await storage.list_jobs(svc.db)
        assert (job.status, job.reservation) == ("cancelled", "refunded")
        assert await storage.check(svc.db) == []


async def _has_jobs(svc: Services) -> bool:
    return bool(await storage.list_jobs(svc.db))


async def _has_task(svc: Services) -> bool:
    jobs = await storage.list_jobs(svc.db)
    return bool(jobs) and jobs[0].task_id is not None


async def _idle(svc: Services) -> bool:
    return not svc.worker.active


async def test_queued_jobs_survive_a_stop_and_run_when_a_worker_is_back(tmp_path, emulator):
    settings = settings_for(tmp_path, emulator, only="wavespeed")
    async with open_services(settings) as svc:  # a gateway with no worker: jobs only queue
        ids = []
        for _ in range(3):
            req, delivery = discord_job()
            ids.append((await svc.jobs.submit(req, delivery=delivery)).job_id)
    rec = Recorder()
    async with serving(settings, rec) as svc:
        for job_id in ids:
            assert isinstance(await rec.wait(job_id), JobResult)
        assert await storage.check(svc.db) == []


async def test_a_job_queued_by_an_older_release_is_refunded_and_told(tmp_path, emulator):
    settings = settings_for(tmp_path, emulator, only="wavespeed")
    async with open_services(settings) as svc:
        reservation = await storage.accept_job(
            svc.db,
            storage.NewJob(
                model=PRO,
                prompt="x",
                images=1,
                price_micros=40_000,
                free_quota=5,
                user_id=USER,
                guild_id=GUILD,
                channel_id=1,
            ),
        )
        await svc.db.write(_give_delivery, reservation.job_id)
    rec = Recorder()
    async with serving(settings, rec) as svc:
        outcome = await rec.wait(reservation.job_id)
        assert isinstance(outcome, JobFailed) and "upgraded" in outcome.user_message
        assert await storage.check(svc.db) == []
        assert emulator.requests == []


async def _give_delivery(conn, job_id):
    await conn.execute("UPDATE jobs SET delivery = ? WHERE id = ?", ('{"user_id": 42}', job_id))
