"""A process that runs image jobs through the real services, to be killed and started again.

    python -m tests.reliability.crash_runner run JOBS      start JOBS jobs; print READY once every
                                                           one is at its provider, then wait
    python -m tests.reliability.crash_runner recover       JobService.recover; print one JSON summary

Settings come from the environment exactly as for ``kontext-bot`` (KONTEXT_DB, KONTEXT_CONFIG,
<PROVIDER>_API_KEY / _BASE_URL). Jobs rotate over the routes (vtrix, wavespeed: tasks that can be
resumed; modelverse: synchronous, lost with the process), over ten members and over a free and a
paid model. SIGTERM is a clean stop the way KontextBot.close does it: ``begin_shutdown`` and cancel,
so every job keeps its recorded state; SIGKILL is whatever the operating system leaves.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import traceback
from collections import Counter

from bot.config import load_settings
from bot.jobs import JobFailed, JobRequest, JobResult
from bot.services import Services, open_services
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


async def _at_provider(svc: Services, count: int) -> bool:
    """True when every job is running: those on a task API with their task id recorded."""
    import storage

    jobs = await storage.unfinished_jobs(svc.db)
    ready = [j for j in jobs if j.status == "running" and (j.task_id or j.provider == "modelverse")]
    return len(ready) == count


async def run(count: int) -> int:
    settings = load_settings()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with open_services(settings) as svc:
        await svc.accounts.set_budget(GUILD, "100")
        tasks = [asyncio.create_task(svc.jobs.run(req)) for req in job_plan(count)]
        while not await _at_provider(svc, count):
            if any(t.done() for t in tasks):  # a job ended early: the test's premise is broken
                done = next(t for t in tasks if t.done())
                exc = done.exception()
                traceback.print_exception(exc)
                print(f"EARLY {exc!r}", flush=True)
                return 1
            await asyncio.sleep(0.05)
        print("READY", flush=True)
        await stop.wait()
        # Clean stop: what KontextBot.close() does.
        svc.jobs.begin_shutdown()
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        kinds = Counter(type(o).__name__ for o in outcomes)
    print("STOPPED " + json.dumps(kinds), flush=True)
    return 0


async def recover() -> int:
    settings = load_settings()
    delivered: dict[str, str] = {}
    messages: dict[str, str] = {}

    async def deliver(job_id: str, outcome: JobResult | JobFailed) -> None:
        if job_id in delivered:
            raise AssertionError(f"job {job_id} delivered twice")
        if isinstance(outcome, JobResult):
            delivered[job_id] = "succeeded" if outcome.images else "empty"
        else:
            delivered[job_id] = "refunded"
            messages[job_id] = outcome.user_message

    async with open_services(settings) as svc:
        count = await svc.jobs.recover(deliver)
        again = await svc.jobs.recover(deliver)
    print(
        json.dumps(
            {
                "recovered": count,
                "recovered_again": again,
                "outcomes": delivered,
                "messages": messages,
            }
        ),
        flush=True,
    )
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["run"]:
        return asyncio.run(run(int(argv[1])))
    if argv[:1] == ["recover"]:
        return asyncio.run(recover())
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
