"""Hundreds of reservations at once, over one connection, two connections, two and twelve OS
processes, on each backend: never a free image or a micro-dollar more than was granted."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import storage
from storage import QuotaRefused, open_database
from tests.storage.conftest import GUILD, PRICE, T0, new_job

ROOT = Path(__file__).resolve().parents[2]


async def _try(db, job) -> str | None:
    try:
        return (await storage.accept_job(db, job, now=T0)).charged_to
    except QuotaRefused:
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
        except QuotaRefused:
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


async def test_two_connections_on_one_database_grant_exactly_the_quota(db):
    await storage.set_free_quota(db, GUILD, "m", 60, now=T0)
    await storage.set_guild_budget(db, GUILD, 25 * PRICE, now=T0)
    async with await open_database(db.target) as other:
        tasks = [_try(db if i % 2 else other, new_job()) for i in range(200)]
        results = await asyncio.gather(*tasks)
    assert results.count("free") == 60 and results.count("guild") == 25 and results.count(None) == 115
    assert await storage.check(db, now=T0) == []


# One process of a race: opens the database, says "ready", then for each phase named on stdin makes
# ``tries`` reservations at once and prints how many were granted.
_WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import UTC, datetime
    import storage

    JOBS = {  # phase -> (model, price, catalog free quota, user, guild, roles)
        "free": ("m", 40_000, 5, 1, 300, ()),
        "guild": ("g", 40_000, 0, 2, 100, ()),
        "team": ("t", 40_000, 0, 3, 200, (9,)),
    }

    async def one(db, phase, now):
        model, price, free, user, guild, roles = JOBS[phase]
        job = storage.NewJob(model, "p", 1, price, free, user_id=user, guild_id=guild, roles=roles)
        try:
            await storage.accept_job(db, job, now=now)
            return 1
        except storage.QuotaRefused:
            return 0

    async def main(target, tries):
        now = datetime(2025, 3, 12, 12, tzinfo=UTC)
        async with await storage.open_database(target) as db:
            print("ready", flush=True)
            for line in sys.stdin:
                if line.strip() == "quit":
                    break
                granted = await asyncio.gather(*(one(db, line.strip(), now) for _ in range(tries)))
                print(sum(granted), flush=True)

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


class _Racers:
    """``processes`` OS processes on one database, started together for each phase."""

    def __init__(self, target: str, processes: int, tries: int) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-c", _WORKER, target, str(tries)],
                cwd=ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(processes)
        ]
        for p in self.procs:
            assert p.stdout.readline().strip() == "ready"

    def race(self, phase: str) -> list[int]:
        for p in self.procs:  # every process is waiting on its stdin: they start within microseconds
            p.stdin.write(phase + "\n")
            p.stdin.flush()
        return [int(p.stdout.readline()) for p in self.procs]

    def close(self) -> None:
        for p in self.procs:
            p.stdin.write("quit\n")
            p.stdin.flush()
            p.wait(timeout=60)
        assert [p.returncode for p in self.procs] == [0] * len(self.procs)


async def test_twelve_processes_race_for_free_images_a_guild_budget_and_a_team_budget(db):
    # Three races, each where nothing else could pay: a member's 5 free images (the catalog's, in
    # a guild without a budget), a guild budget of 7 paid images, a team budget of 6.
    await storage.set_guild_budget(db, GUILD, 7 * PRICE, now=T0)  # 7 paid images for the guild
    await storage.set_team(db, 200, 9, "Nine", 6 * PRICE, now=T0)
    racers = await asyncio.to_thread(_Racers, db.target.value, 12, 2)
    try:
        won = {phase: await asyncio.to_thread(racers.race, phase) for phase in ("free", "guild", "team")}
    finally:
        await asyncio.to_thread(racers.close)
    assert {phase: sum(w) for phase, w in won.items()} == {"free": 5, "guild": 7, "team": 6}
    assert await storage.check(db, now=T0) == []
    member = await storage.quota_status(db, 1, 300, {"m": 5}, now=T0)
    assert (member.free[0].used, member.free[0].remaining) == (5, 0)
    assert (await storage.quota_status(db, 2, GUILD, {}, now=T0)).guild.spent_micros == 7 * PRICE
    team = await storage.quota_status(db, 3, 200, {}, roles=(9,), now=T0)
    assert team.teams[0].spent_micros == 6 * PRICE and team.guild.spent_micros == 0
    refused = [j for j in await storage.list_jobs(db, limit=100) if j.status == "refused"]
    assert len(refused) == 3 * 24 - 18  # every loser is recorded as refused, charged nothing
