"""Kill the process running 50 jobs (SIGKILL), or stop it (SIGTERM), and start it again: every job
is resumed from its recorded task and delivered, or refunded; the books balance; nothing is charged
twice and no task is submitted twice.

The process is tests/reliability/crash_runner.py: the real services and queue (open_services) in a
subprocess, against the provider emulator in another subprocess (``python -m tests.emulator``), so
the tasks outlive the process that started them. The emulator holds every result (latency 1000 s)
until the test releases them after the kill.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

import storage
from tests.emulator import PROVIDERS, ProviderEmulator
from tests.reliability.conftest import stack_env
from tests.reliability.crash_runner import GUILD, MEMBERS, ROUTES, Recorder

ROOT = Path(__file__).resolve().parents[2]
JOBS = 50
FAILED_TASKS = 3  # vtrix tasks that fail at the provider: refunded when the restart learns it
BY_ROUTE = Counter(ROUTES[i % len(ROUTES)] for i in range(JOBS))  # vtrix 20, wavespeed 20, modelverse 10


class Emulator:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10)

    def control(self, what: str, **body: object) -> None:
        self.http.post(f"/_emulator/{what}", json=body).raise_for_status()

    def requests(self) -> list[dict]:
        return self.http.get("/_emulator/requests").json()

    def env(self) -> dict[str, str]:
        out = {}
        for name in PROVIDERS:
            out[f"{name.upper()}_API_KEY"] = ProviderEmulator.KEYS[name]
            out[f"{name.upper()}_BASE_URL"] = self.url
        return out


async def _line(stream: asyncio.StreamReader, wait: float = 30) -> str:
    return (await asyncio.wait_for(stream.readline(), wait)).decode().strip()


@pytest.fixture
async def emulator_process() -> AsyncIterator[Emulator]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.emulator", "--latency", "1000", "--polls", "1",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        line = await _line(proc.stdout)
        assert line.startswith("EMULATOR_URL="), line
        emu = Emulator(line.split("=", 1)[1])
        yield emu
        emu.http.close()
    finally:
        proc.terminate()
        await proc.wait()


def _runner_env(emu: Emulator, tmp_path: Path) -> dict[str, str]:
    env = stack_env(
        emu.env(),
        tmp_path,
        # 10 members x 5 jobs: all 50 at their provider at once. A short lease: a killed process's
        # jobs are taken over within seconds; a short grace: a stopping one hands them back at once.
        limits={"user_jobs_in_flight": 5, "job_lease": 2.0, "shutdown_grace": 0.3},
        providers={name: {"max_concurrency": 64, "poll_interval": 0.1} for name in PROVIDERS},
    )
    return {**os.environ, "PYTHONPATH": str(ROOT), **env}


def _snapshot(db: Path) -> dict[str, tuple[str, str | None, str | None]]:
    """job id -> (status, provider, task id), read beside the running process."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT id, status, provider, task_id FROM jobs").fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _submits(emu: Emulator) -> int:
    return len([r for r in emu.requests() if r["method"] == "POST" and r["provider"] in PROVIDERS])


async def _resume(env: dict[str, str]) -> dict:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.reliability.crash_runner", "resume",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0
    return json.loads(out)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
async def test_every_job_in_flight_is_resumed_or_refunded_after_a_restart(
    how: signal.Signals, emulator_process: Emulator, tmp_path: Path
) -> None:
    emu = emulator_process
    emu.control("fault", provider="vtrix", kind="task_failed", times=FAILED_TASKS)
    env = _runner_env(emu, tmp_path)
    db_path = tmp_path / "kontext.db"
    runner = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.reliability.crash_runner", "run", str(JOBS),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert await _line(runner.stdout) == "READY"
        before = _snapshot(db_path)
        runner.send_signal(how)
        stopped = await _line(runner.stdout) if how == signal.SIGTERM else ""
        code = await asyncio.wait_for(runner.wait(), 30)
    finally:
        if runner.returncode is None:
            runner.kill()
            await runner.wait()
    assert code == (0 if how == signal.SIGTERM else -signal.SIGKILL)
    assert len(before) == JOBS and Counter(s for s, _, _ in before.values()) == {"running": JOBS}
    assert Counter(p for _, p, task in before.values() if task) == {"vtrix": 20, "wavespeed": 20}
    assert _submits(emu) == JOBS

    after = _snapshot(db_path)
    resumable = BY_ROUTE["vtrix"] + BY_ROUTE["wavespeed"]
    if how == signal.SIGKILL:  # nothing written after the kill: every job where the process left it
        assert after == before
    else:  # handed back: tasks back in line (kept), synchronous calls cut off refunded
        states = {"running_at_stop": JOBS, "failed": BY_ROUTE["modelverse"], "queued": resumable}
        assert stopped.startswith("STOPPED ") and json.loads(stopped.split(" ", 1)[1]) == states
        assert {j: (s, p, t) for j, (s, p, t) in after.items() if t} == {
            j: ("queued", p, t) for j, (_, p, t) in before.items() if t
        }

    # Start again: the providers finish the tasks now.
    emu.control("config", latency=0)
    summary = await _resume(env)
    assert summary["twice"] == []
    assert len(summary["outcomes"]) == JOBS
    assert Counter(summary["outcomes"].values()) == {
        "succeeded": resumable - FAILED_TASKS,
        "refunded": BY_ROUTE["modelverse"] + FAILED_TASKS,
    }
    told = Counter(m.split(" (job ")[0] for m in summary["messages"].values())
    cut_off = "stopped" if how == signal.SIGTERM else "restarted"
    assert told == {
        f"The bot {cut_off} before the provider answered for this job; it was not sent again, since "
        "it may already have started.": BY_ROUTE["modelverse"],
        "The Vtrix task failed: Image generation failed: worker error": FAILED_TASKS,
    }
    # Resuming only polled: not one task was submitted again.
    assert _submits(emu) == JOBS
    # A second start finds nothing left to do or tell.
    assert await _resume(env) == {"outcomes": {}, "messages": {}, "twice": []}

    async with await storage.open_database(db_path) as db:
        assert await storage.check(db) == []
        jobs = await storage.list_jobs(db, limit=1000)
        assert len(jobs) == JOBS and all(j.finished and j.delivered_at for j in jobs)
        won = [j for j in jobs if j.status == "succeeded"]
        assert {j.id for j in won} == {k for k, v in summary["outcomes"].items() if v == "succeeded"}
        assert all(j.reservation == "settled" and j.images_delivered == 1 for j in won)
        assert all(j.reservation == "refunded" for j in jobs if j.status != "succeeded")
        # Charged exactly once: the budget spent is the sum of the paid jobs' own costs, and each
        # member's free images used are their succeeded free jobs.
        paid = sum(j.actual_micros for j in won if j.charged_to == "guild")
        quota = {m: await storage.quota_status(db, m, GUILD, {}) for m in MEMBERS}
        assert next(iter(quota.values())).guild.spent_micros == paid > 0
        assert sum(q.spent_micros for q in quota.values()) == paid
        report = await storage.usage(db, guild_id=GUILD, by="user")
        assert sum(r.succeeded for r in report) == len(won)
        assert sum(r.cost_micros for r in report) == sum(j.actual_micros for j in won)


# --- a long stop: the job keeps the deadline it was accepted with ----------------------------------


async def _stop_at_provider(svc, req) -> str:
    """Queue a job the way the Discord face does, wait until its task id is recorded, then stop
    (leaving open_stack stops the worker, which hands the job back with its task)."""
    from datetime import UTC, datetime, timedelta

    from bot.requests import Delivery

    svc.worker.observer = Recorder()
    where = Delivery(1, "token", datetime.now(UTC) + timedelta(minutes=15), 1, GUILD, req.user_id)
    job_id = (await svc.jobs.submit(req, delivery=where)).job_id
    await svc.worker.start(claim_all=True)
    for _ in range(500):
        await asyncio.sleep(0.01)
        job = await svc.jobs.get(job_id)
        if job.task_id:
            return job_id
    raise AssertionError("the job never reached its provider")


def _age(db: Path, job_id: str, minutes: int) -> None:
    """The bot was down ``minutes``: move the job's clock back (its ledger rows are untouched)."""
    from datetime import timedelta

    from storage.periods import from_db, to_db

    with sqlite3.connect(db) as conn:
        created, deadline = conn.execute(
            "SELECT created_at, deadline_at FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        back = timedelta(minutes=minutes)
        conn.execute(
            "UPDATE jobs SET created_at = ?, deadline_at = ? WHERE id = ?",
            (to_db(from_db(created) - back), to_db(from_db(deadline) - back), job_id),
        )


@pytest.mark.parametrize("finished", [True, False], ids=["task-finished-meanwhile", "task-still-running"])
async def test_after_a_long_stop_a_job_keeps_its_own_deadline(
    finished: bool, emulator: ProviderEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.jobs import JobRequest
    from tests.emulator import make_png
    from tests.reliability.conftest import open_stack

    monkeypatch.setattr("bot.execution.RESUME_GRACE", 0.5)
    emulator.polls_until_done = 10_000  # pending while the first process runs
    if not finished:
        emulator.fault("vtrix", "never_finish")
    req = JobRequest(
        "black-forest-labs/flux-kontext-pro", "a hat", [make_png(256, 256)], provider="vtrix",
        user_id=MEMBERS[0], guild_id=GUILD, channel_id=1,
    )  # fmt: skip
    limits = {"job_deadline": 600.0, "shutdown_grace": 0.1}
    async with open_stack(emulator, tmp_path, limits=limits) as svc:
        job_id = await _stop_at_provider(svc, req)
    _age(tmp_path / "kontext.db", job_id, minutes=20)  # down 20 minutes: 10 past the deadline
    emulator.polls_until_done = 1
    recorder = Recorder()
    recorder.expected = {job_id}

    async with open_stack(emulator, tmp_path, limits=limits, budget=None) as svc:
        assert any("past its deadline" in p for p in await storage.check(svc.db))  # overdue while down
        started = asyncio.get_running_loop().time()
        svc.worker.observer = recorder
        await svc.worker.start(claim_all=True)
        await asyncio.wait_for(recorder.told.wait(), 10)
        assert asyncio.get_running_loop().time() - started < 3  # not another 600 s
        job = await svc.jobs.get(job_id)
        if finished:  # collected in the grace: the result was paid for, so it is delivered
            assert recorder.outcomes == {job_id: "succeeded"} and job.status == "succeeded"
        else:
            assert recorder.outcomes == {job_id: "refunded"} and "took longer" in recorder.messages[job_id]
            assert job.status == "failed" and job.reservation == "refunded"
    # Told, and recorded as told before the worker stopped (the stop waits for a telling to land).
    async with await storage.open_database(tmp_path / "kontext.db") as db:
        assert (await storage.get_job(db, job_id)).delivered_at is not None
        assert await storage.check(db) == []
