"""Hundreds of reservations at once, over one connection, two connections and two processes:
never a free image or a micro-dollar more than was granted."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import storage
from bot.errors import QuotaExceeded
from storage import open_database
from tests.storage.conftest import GUILD, PRICE, T0, new_job

ROOT = Path(__file__).resolve().parents[2]


async def _try(db, job) -> str | None:
    try:
        return (await storage.accept_job(db, job, now=T0)).charged_to
    except QuotaExceeded:
        return None


async def test_hundreds_of_concurrent_reservations_never_exceed_the_free_quota(db):
    await storage.set_free_quota(db, GUILD, "m", 50, now=T0)
    results = await asyncio.gather(*(_try(db, new_job()) for _ in range(300)))
    assert results.count("free") == 50 and results.count(None) == 250
    status = await storage.quota_status(db, 1, GUILD, {"m": 5}, now=T0)
    assert status.free[0].used == 50
    assert await storage.check(db, now=T0) == []


async def test_hundreds_of_users_never_exceed_the_guild_budget(db):
    await storage.set_guild_budget(db, GUILD, 37 * PRICE, now=T0)
    jobs = [new_job(user_id=u, free_quota=0) for u in range(1, 31) for _ in range(10)]
    results = await asyncio.gather(*(_try(db, j) for j in jobs))
    assert results.count("guild") == 37
    status = await storage.quota_status(db, 1, GUILD, {}, now=T0)
    assert status.guild.spent_micros == 37 * PRICE


async def test_reserve_settle_and_refund_racing_keep_the_books(db):
    await storage.set_guild_budget(db, GUILD, 40 * PRICE, now=T0)
    await storage.set_team(db, GUILD, 9, "Nine", 10 * PRICE, now=T0)
    rng = random.Random(7)

    async def one(i: int) -> int:
        try:
            r = await storage.accept_job(
                db, new_job(user_id=i % 13 + 1, images=2, roles=(9,) * (i % 2)), now=T0
            )
        except QuotaExceeded:
            return 0
        await asyncio.sleep(0)
        if rng.random() < 0.3:
            await storage.fail_job(db, r.job_id, now=T0)
            return 0
        s = await storage.complete_job(db, r.job_id, rng.choice([1, 2]), now=T0)
        return s.charged_micros

    charged = sum(await asyncio.gather(*(one(i) for i in range(250))))
    status = await storage.quota_status(db, 1, GUILD, {}, roles=(9,), now=T0)
    assert status.guild.spent_micros <= 40 * PRICE and status.teams[0].spent_micros <= 10 * PRICE
    assert status.guild.spent_micros + status.teams[0].spent_micros == charged
    assert await storage.check(db, now=T0) == []


async def test_two_connections_on_one_file_grant_exactly_the_quota(db):
    await storage.set_free_quota(db, GUILD, "m", 60, now=T0)
    await storage.set_guild_budget(db, GUILD, 25 * PRICE, now=T0)
    async with await open_database(db.path) as other:
        tasks = [_try(db if i % 2 else other, new_job()) for i in range(200)]
        results = await asyncio.gather(*tasks)
    assert results.count("free") == 60 and results.count("guild") == 25 and results.count(None) == 115
    assert await storage.check(db, now=T0) == []


_WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import UTC, datetime
    import storage
    from bot.errors import QuotaExceeded

    async def main(path, count):
        now = datetime(2025, 3, 12, 12, tzinfo=UTC)
        granted = 0
        async with await storage.open_database(path) as db:
            print("ready", flush=True)
            sys.stdin.readline()  # both processes start reserving together
            for _ in range(count):
                job = storage.NewJob("m", "p", 1, 40_000, 0, user_id=1, guild_id=100)
                try:
                    await storage.accept_job(db, job, now=now)
                    granted += 1
                except QuotaExceeded:
                    pass
        print(granted, flush=True)

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


def _run_workers(path: Path, processes: int, count: int) -> list[int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(path), str(count)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    granted = [int(p.communicate(timeout=60)[0]) for p in procs]
    assert [p.returncode for p in procs] == [0] * processes
    return granted


async def test_two_processes_grant_exactly_the_budget(db):
    await storage.set_guild_budget(db, GUILD, 150 * PRICE, now=T0)
    granted = await asyncio.to_thread(_run_workers, db.path, 2, 120)
    assert sum(granted) == 150 and min(granted) > 0
    status = await storage.quota_status(db, 1, GUILD, {}, now=T0)
    assert status.guild.spent_micros == 150 * PRICE
    assert await storage.check(db, now=T0) == []
