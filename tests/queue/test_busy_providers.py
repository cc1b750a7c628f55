"""A busy provider account is a queue, not a failure (issue 16): the learned limit, spill-over to a
free route, Retry-After holding the provider back for everyone, and the deadline as the only end.

Against the emulator's account knob: an account that runs N tasks at once and answers 429 beyond.
The two targets are timed in units of the emulator's task latency L (the one place these tests
read a clock: the issue sets its targets in rounds of L)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

import storage
from bot.config import load_settings
from bot.jobs import JobFailed, JobRequest
from bot.services import open_services
from storage import capacity
from tests.cli_support import run_cli
from tests.emulator import ProviderEmulator, make_png

PRO = "black-forest-labs/flux-kontext-pro"
GUILD = 7
L = 0.6  # seconds a task takes at the provider


def settings_for(tmp: Path, emulator: ProviderEmulator, enabled: tuple[str, ...], **limits: float):
    config = tmp / "kontext.toml"
    text = "".join(f"[providers.{p}]\npoll_interval = 0.05\n" for p in ProviderEmulator.KEYS)
    text += "[limits]\nallow_private_results = true\n" + "".join(f"{k} = {v}\n" for k, v in limits.items())
    text += f'[models."{PRO}"]\nroutes = ["wavespeed", "vtrix", "modelverse"]\n'
    config.write_text(text)
    env = {"KONTEXT_DB": str(tmp / "k.db"), "KONTEXT_CONFIG": str(config), **emulator.env()}
    env.update({f"{p.upper()}_API_KEY": "" for p in ProviderEmulator.KEYS if p not in enabled})
    return load_settings(env)


def edit(user: int) -> JobRequest:
    return JobRequest(model=PRO, prompt="a hat", images=[make_png(256, 256)], user_id=user, guild_id=GUILD)


def wavespeed_submits(emulator: ProviderEmulator) -> list[float]:
    return [r.at for r in emulator.requests if r.provider == "wavespeed" and r.method == "POST"]


async def test_ten_jobs_on_an_account_that_runs_two_all_arrive_at_the_accounts_own_pace(tmp_path, emulator):
    account = emulator.account("wavespeed", concurrency=2, latency=L)
    async with open_services(settings_for(tmp_path, emulator, ("wavespeed",))) as svc:
        started = time.monotonic()
        results = await asyncio.gather(*(svc.jobs.run(edit(100 + i)) for i in range(10)))
        took = time.monotonic() - started
        assert all(len(r.images) == 1 and r.provider == "wavespeed" for r in results)
        assert account.peak_open <= 2
        assert account.busy <= 10, f"{account.busy} busy answers"
        rounds = took / L
        print(f"10 jobs on a 2-task account: {rounds:.2f} rounds of L (target <= 7.5), {account.busy} busy")
        assert rounds <= 1.5 * 5
        (learned,) = await capacity.capacities(svc.db)
        assert (learned.provider, learned.limit, learned.ceiling) == ("wavespeed", 2, 8)
        assert learned.busy_total == account.busy
        assert await storage.check(svc.db) == []
    # Remembered: the next process starts from what this one learned, and both faces show it.
    async with open_services(settings_for(tmp_path, emulator, ("wavespeed",))) as svc:
        assert [c.limit for c in await capacity.capacities(svc.db)] == [2]
    env = {
        "KONTEXT_DB": str(tmp_path / "k.db"),
        "KONTEXT_CONFIG": str(tmp_path / "kontext.toml"),
        **{k: v for k, v in emulator.env().items() if not k.startswith(("VTRIX", "MODELVERSE"))},
    }
    code, out, _ = await run_cli("models", "--json", env=env, cwd=tmp_path)
    assert code == 0
    (ws,) = json.loads(out)["providers"]
    assert (ws["provider"], ws["limit"], ws["max_concurrency"], ws["learned"]) == ("wavespeed", 2, 8, True)
    assert ws["busy_answers"] == account.busy
    code, out, _ = await run_cli("models", env=env, cwd=tmp_path)
    assert "WaveSpeedAI: 2 at once (learned; at most 8)" in out


async def test_with_a_second_provider_free_the_overflow_goes_there_at_once(tmp_path, emulator):
    busy = emulator.account("wavespeed", concurrency=2, latency=L)
    emulator.account("vtrix", latency=L)
    async with open_services(settings_for(tmp_path, emulator, ("wavespeed", "vtrix"))) as svc:
        started = time.monotonic()
        results = await asyncio.gather(*(svc.jobs.run(edit(200 + i)) for i in range(10)))
        took = time.monotonic() - started
        assert len(results) == 10 and busy.peak_open <= 2
        served = {p: sum(r.provider == p for r in results) for p in ("wavespeed", "vtrix")}
        assert served["wavespeed"] >= 2 and served["vtrix"] >= 1 and sum(served.values()) == 10
        print(f"10 jobs, wavespeed busy beyond 2, vtrix free: {took / L:.2f} rounds of L (target <= 2)")
        assert took <= 2 * L + 1.0  # + start-up: inputs normalised, first claims
        assert await storage.check(svc.db) == []


async def test_retry_after_holds_the_provider_back_for_every_job(tmp_path, emulator):
    emulator.fault("wavespeed", "rate_limit", retry_after=1.0)
    async with open_services(settings_for(tmp_path, emulator, ("wavespeed",))) as svc:
        first = asyncio.create_task(svc.jobs.run(edit(300)))
        while not any(r.status == 429 for r in emulator.requests):  # noqa: ASYNC110 -- no event to wait on
            await asyncio.sleep(0.01)
        told_busy = next(r.at for r in emulator.requests if r.status == 429)
        others = [svc.jobs.run(edit(301 + i)) for i in range(2)]  # jobs of other members, after it
        results = await asyncio.gather(first, *others)
        assert len(results) == 3
    later = [at for at in wavespeed_submits(emulator) if at > told_busy]
    # Nobody's submit went into the pause the busy answer asked for: it held the provider back for all.
    assert len(later) == 3 and all(at - told_busy >= 1.0 for at in later)


async def test_a_provider_busy_until_the_deadline_fails_the_job_then_and_says_so(tmp_path, emulator):
    emulator.fault("wavespeed", "rate_limit", times=-1, retry_after=0.2)
    async with open_services(settings_for(tmp_path, emulator, ("wavespeed",), job_deadline=1.5)) as svc:
        with pytest.raises(JobFailed) as info:
            await svc.jobs.run(edit(400))
        assert info.value.user_message.startswith("WaveSpeedAI was still busy when this job's time ran out")
        job = await svc.jobs.get(info.value.job_id)
        assert (job.status, job.reservation) == ("failed", "refunded")
        assert await storage.check(svc.db) == []
    # Asked again only after each pause, not hammered: at most one submit per 0.2 s pause.
    assert 2 <= len(wavespeed_submits(emulator)) <= 1.5 / 0.2 + 1
