"""A process that runs image jobs through the real services and queue, to be killed and started again.

    python -m tests.reliability.crash_runner run JOBS   queue JOBS jobs and run them; print READY once
                                                        every one is at its provider, then wait
    python -m tests.reliability.crash_runner resume     run a worker until every job has ended and
                                                        been told; print one JSON summary

Settings come from the environment exactly as for ``kontext-bot`` (KONTEXT_DB, KONTEXT_CONFIG,
<PROVIDER>_API_KEY / _BASE_URL). Jobs are queued the way the Discord face queues them (not pinned to
this process: any worker may take them over) and rotate over the routes (vtrix, wavespeed: tasks
that can be resumed; modelverse: synchronous, lost with the process), over ten members and over a
free and a paid model. SIGTERM stops the way ``kontext-bot run`` does (the worker's shutdown grace,
then hand back); SIGKILL is whatever the operating system leaves.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from datetime import UTC, datetime, timedelta

import storage
from bot.config import load_settings
from bot.jobs import JobRequest
from bot.outcomes import JobFailed, JobResult
from bot.requests import Delivery, JobEvent
from bot.services import Services, open_services
from bot.worker import Posted
from tests.emulator import make_png

GUILD = 9001
MEMBERS = tuple(range(5001, 5011))
MODELS = ("black-forest-labs/flux-kontext-pro", "black-forest-labs/flux-kontext-max")
ROUTES = ("vtrix", "wavespeed", "vtrix", "wavespeed", "modelverse")  # 2 in 5 resumable by each API


def job_plan(count: int) -> list[JobRequest]:
    image = make_png(256, 256)
    return [
        JobRequest(
            model=MODELS[i % 2],
            prompt=f"job {i}: make the sky purple",
            images=[image],
            provider=ROUTES[i % len(ROUTES)],
            user_id=MEMBERS[i % len(MEMBERS)],
            guild_id=GUILD,
            channel_id=1000 + i,
            source="slash",
        )
        for i in range(count)
    ]


class Recorder:
    """The face a worker tells: records each job's outcome and refuses to be told twice."""

    def __init__(self) -> None:
        self.outcomes: dict[str, str] = {}
        self.messages: dict[str, str] = {}
        self.twice: list[str] = []
        self.told = asyncio.Event()
        self.expected: set[str] = set()

    async def update(self, job: storage.Job, event: JobEvent) -> None:
        return None

    async def finish(self, job: storage.Job, outcome: JobResult | JobFailed) -> Posted | None:
        if job.id in self.outcomes:
            self.twice.append(job.id)
        if isinstance(outcome, JobResult):
            self.outcomes[job.id] = "succeeded" if outcome.images else "empty"
        else:
            self.outcomes[job.id] = "refunded"
            self.messages[job.id] = outcome.user_message
        if self.expected and self.expected <= set(self.outcomes):
            self.told.set()
        return Posted(channel_id=job.channel_id, message_id=len(self.outcomes))


async def _at_provider(svc: Services, count: int) -> bool:
    """True when every job is running: those on a task API with their task id recorded."""
    jobs = await storage.unfinished_jobs(svc.db)
    ready = [j for j in jobs if j.status == "running" and (j.task_id or j.provider == "modelverse")]
    return len(ready) == count


async def run(count: int) -> int:
    settings = load_settings()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with open_services(settings) as svc:
        await svc.accounts.set_budget(GUILD, "100")
        svc.worker.observer = Recorder()
        expires = datetime.now(UTC) + timedelta(minutes=15)
        for req in job_plan(count):
            where = Delivery(1, "interaction-token", expires, req.channel_id, GUILD, req.user_id)
            await svc.jobs.submit(req, delivery=where)
        await svc.worker.start(claim_all=True)
        for _ in range(1200):  # a minute at most; the test gives up long before
            if await _at_provider(svc, count):
                break
            await asyncio.sleep(0.05)
        print("READY", flush=True)
        await stop.wait()
        handed = len(svc.worker.active)
    # Leaving open_services stops the worker: what cannot finish within the grace is handed back.
    after = await _states(settings)
    print("STOPPED " + json.dumps({"running_at_stop": handed, **after}), flush=True)
    return 0


async def _states(settings) -> dict[str, int]:
    async with open_services(settings) as svc:
        jobs = await storage.list_jobs(svc.db, limit=100_000)
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.status] = counts.get(job.status, 0) + 1
    return dict(sorted(counts.items()))


async def resume() -> int:
    settings = load_settings()
    recorder = Recorder()
    async with open_services(settings) as svc:
        pending = [j for j in await storage.list_jobs(svc.db, limit=100_000) if j.delivered_at is None]
        recorder.expected = {j.id for j in pending}
        svc.worker.observer = recorder
        await svc.worker.start(claim_all=True)
        if recorder.expected:
            try:
                await asyncio.wait_for(recorder.told.wait(), 60)
            except TimeoutError:
                left = recorder.expected - set(recorder.outcomes)
                for job in await storage.list_jobs(svc.db, limit=100_000):
                    if job.id in left:
                        print(
                            f"NOT TOLD {job.id} {job.status} {job.provider} {job.task_id} {job.error}",
                            file=sys.stderr,
                        )
                raise
        await asyncio.sleep(0.2)  # a second telling of any job would land here and fail the run
    summary = {"outcomes": recorder.outcomes, "messages": recorder.messages, "twice": recorder.twice}
    print(json.dumps(summary), flush=True)
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["run"]:
        return asyncio.run(run(int(argv[1])))
    if argv[:1] == ["resume"]:
        return asyncio.run(resume())
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
