"""JobService: the one path every job takes. A real database on each backend (SQLite file,
PostgreSQL schema), real HTTP to the emulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import storage
from bot.config import load_settings
from bot.errors import QuotaExceeded, ValidationError
from bot.jobs import JobFailed, JobRequest, Stage
from bot.services import Services, open_services
from tests.emulator import ProviderEmulator, make_png

GUILD, USER = 7, 42
PRO = "black-forest-labs/flux-kontext-pro"
PRO_T2I = "black-forest-labs/flux-kontext-pro/text-to-image"
MAX_T2I = "black-forest-labs/flux-kontext-max/text-to-image"


def settings_for(tmp: Path, emulator: ProviderEmulator | None, db: str | None = None, **limits: float):
    config = tmp / "kontext.toml"
    text = "".join(f"[providers.{p}]\npoll_interval = 0.05\n" for p in ProviderEmulator.KEYS)
    text += "[limits]\nallow_private_results = true\n"  # the emulator serves results on loopback
    text += "".join(f"{k} = {v}\n" for k, v in limits.items())
    config.write_text(text)
    env = {"KONTEXT_DB": db or str(tmp / "k.db"), "KONTEXT_CONFIG": str(config)}
    if emulator is not None:
        env.update(emulator.env())
    return load_settings(env)


@pytest.fixture
async def svc(tmp_path, emulator, db_target) -> AsyncIterator[Services]:
    async with open_services(settings_for(tmp_path, emulator, db_target)) as services:
        yield services


def member(model: str, prompt: str = "a red fox", images=(), provider=None, **params) -> JobRequest:
    return JobRequest(
        model=model,
        prompt=prompt,
        images=list(images),
        params=params,
        user_id=USER,
        guild_id=GUILD,
        channel_id=1,
        provider=provider,
    )


async def test_a_member_job_is_recorded_charged_to_free_quota_and_settled(svc):
    events = []

    async def on_event(event):
        events.append(event.stage)

    result = await svc.jobs.run(member(PRO, images=[make_png(300, 200)]), on_event)
    assert result.provider == "modelverse" and len(result.images) == 1
    assert result.charged_to == "free" and result.free_remaining == 4 and result.charged_micros == 0
    assert Stage.RUNNING in events
    job = await svc.jobs.get(result.job_id)
    assert job.status == "succeeded" and job.reservation == "settled" and job.images_delivered == 1
    assert job.params["seed"] == result.seed and result.seed >= 0  # the bot picked a seed it can show
    assert await storage.check(svc.db) == []


async def test_paid_jobs_use_the_guild_budget_and_the_reported_cost(svc, emulator):
    await svc.accounts.set_budget(GUILD, "1.00")
    result = await svc.jobs.run(member(MAX_T2I, provider="vtrix"))  # max has no free images
    assert result.charged_to == "guild"
    assert result.charged_micros == 80_000  # Vtrix's usage.cost "0.08", not the list price guess
    quota = await svc.accounts.quota(USER, GUILD)
    assert quota.status.guild.spent_micros == 80_000


async def test_nothing_can_pay_refuses_before_any_provider_call(svc, emulator):
    before = len(emulator.requests)
    with pytest.raises(QuotaExceeded) as info:
        await svc.jobs.run(member(MAX_T2I))
    assert "no budget" in info.value.user_message and "would cost" in info.value.user_message
    assert len(emulator.requests) == before


async def test_a_broken_rule_costs_nothing_and_is_not_recorded(svc, emulator):
    with pytest.raises(ValidationError):
        await svc.jobs.run(member(PRO))  # no input image
    assert await svc.jobs.history(USER, GUILD) == []
    assert emulator.requests == []


async def test_fewer_images_than_asked_gives_the_difference_back(svc, emulator):
    await svc.accounts.set_budget(GUILD, "1.00")

    real_run = svc.runner.run

    async def run_dropping_one(route, req, **kw):
        output = await real_run(route, req, **kw)
        return type(output)(output.images[:1], output.task_id, None, output.seed, output.provider)

    svc.runner.run = run_dropping_one  # the emulator always delivers n; emulate a short answer
    result = await svc.jobs.run(member(MAX_T2I, n=3))
    assert len(result.images) == 1
    assert result.charged_micros == 97_223  # one image at the UModelverse price, not three
    assert await storage.check(svc.db) == []


async def test_flagged_output_is_refused_and_refunded_where_not_allowed(svc, emulator):
    emulator.fault("wavespeed", "nsfw")
    req = member(PRO_T2I, provider="wavespeed")
    req = type(req)(**{**req.__dict__, "nsfw_allowed": False})
    with pytest.raises(JobFailed) as info:
        await svc.jobs.run(req)
    assert "age-restricted" in info.value.user_message and "not charged" in info.value.user_message
    job = await svc.jobs.get(info.value.job_id)
    assert job.status == "refused" and job.reservation == "refunded"
    quota = await svc.accounts.quota(USER, GUILD)
    assert next(f for f in quota.status.free if f.model == PRO_T2I).used == 0


async def test_cancelling_a_job_refunds_it(svc, emulator):
    emulator.fault("modelverse", "hang", seconds=5)
    task = asyncio.create_task(svc.jobs.run(member(PRO_T2I)))
    for _ in range(200):
        await asyncio.sleep(0.01)
        if emulator.requests:
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (job,) = await svc.jobs.history(USER, GUILD)
    assert job.status == "cancelled" and job.reservation == "refunded"


async def test_sandbox_jobs_are_free_and_spend_no_free_image(tmp_path, db_target):
    async with open_services(settings_for(tmp_path, None, db_target)) as svc:
        result = await svc.jobs.run(member(PRO, images=[make_png(200, 200)]))
        assert result.sandbox and result.provider == "sandbox" and result.cost_micros == 0
        assert result.free_remaining == 5
        again = await svc.jobs.run(member(PRO, images=[make_png(200, 200)], seed=result.seed))
        assert again.images[0].data == result.images[0].data  # same seed, same prompt: same image


async def test_reroll_inputs_are_kept_after_the_job(svc):
    src = make_png(320, 240)
    result = await svc.jobs.run(member(PRO, images=[src]))
    job = await svc.jobs.get(result.job_id)
    (stored,) = await svc.jobs.stored_inputs(job)
    assert stored[:3] == b"\xff\xd8\xff"  # the normalised JPEG the provider got, not the original


async def test_raw_inputs_are_handed_over_and_freed_once_normalised(svc):
    uploads = [make_png(300, 200)]
    req = JobRequest(model=PRO, prompt="a hat", images=uploads, user_id=USER, guild_id=GUILD)
    result = await svc.jobs.run(req)
    assert uploads == []  # a deep queue must not hold every member's camera file
    assert len(result.images) == 1
    (stored,) = await svc.jobs.stored_inputs(await svc.jobs.get(result.job_id))
    assert stored[:3] == b"\xff\xd8\xff"  # what the provider got came back from the input store


async def test_input_loaders_are_read_and_normalised_a_few_at_a_time(tmp_path, monkeypatch):
    from bot import images

    active = peak = loaded = 0
    real_prepare = images.prepare_input

    async def prepare(data, limits, executor=None):
        nonlocal active
        try:
            return await real_prepare(data, limits, executor)
        finally:
            active -= 1  # this input's raw bytes are done with

    def loader(width: int):
        async def load() -> bytes:
            nonlocal active, peak, loaded
            active += 1
            peak = max(peak, active)
            loaded += 1
            await asyncio.sleep(0.02)  # a download takes a while: others would pile in if let
            return make_png(width, 100)

        return load

    monkeypatch.setattr(images, "prepare_input", prepare)
    async with open_services(settings_for(tmp_path, None, max_inputs_in_flight=2)) as svc:
        handed = [[loader(100 + i)] for i in range(8)]
        handed.append([loader(200), loader(201), loader(202)])  # one job's inputs are gated one by one
        reqs = [
            JobRequest(model=PRO, prompt="a hat", images=imgs, user_id=USER + i, guild_id=GUILD)
            for i, imgs in enumerate(handed[:-1])
        ]
        reqs.append(
            JobRequest(model=f"{PRO}/multi", prompt="together", images=handed[-1], user_id=1, guild_id=GUILD)
        )
        results = await asyncio.gather(*(svc.jobs.run(r) for r in reqs))
    assert loaded == 11 and active == 0
    assert peak == 2  # never more than max_inputs_in_flight raw uploads at once, and the gate was full
    assert all(len(r.images) >= 1 for r in results)
    assert all(imgs == [] for imgs in handed)  # handed over, like raw bytes


async def test_a_failing_loader_refuses_the_job_before_anything_is_recorded(svc, emulator):
    from bot.errors import UserError

    async def gone() -> bytes:
        raise UserError("Could not read the attached image from Discord; please attach it again.")

    with pytest.raises(UserError, match="Could not read the attached image"):
        await svc.jobs.run(member(PRO, images=[gone]))
    assert await svc.jobs.history(USER, GUILD) == []
    assert emulator.requests == []
