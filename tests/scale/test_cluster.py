"""Many processes, one bot (issue 13), on SQLite and on PostgreSQL: two gateway shards and two
workers share one database and one provider limit; a worker killed mid-flight, a rolling restart of
every process and a full stop lose nothing, do nothing twice and charge exactly what was delivered.

These are the real ``kontext-bot`` processes against the fake Discord and the provider emulator,
each in a subprocess (tests/scale/cluster.py).
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path

from tests.scale.cluster import (
    GUILDS,
    PRICE_MICROS,
    PROVIDER_CAP,
    PROVIDERS,
    Cluster,
    cluster,
    guild_of,
    member,
)

MEMBERS = 50
JOBS = 200
PAID = 120  # the two guilds' budgets cover exactly this many jobs between them


async def _flood(
    group: Cluster, count: int, members: int, start: int = 0, guilds: tuple[int, ...] = GUILDS
) -> list[dict]:
    """``count`` /create from ``members`` members of ``guilds``, round-robin, all at once."""
    who = [i for i in range(members) if guild_of(i) in guilds]
    return await asyncio.gather(
        *(
            group.create(
                member(who[i % len(who)]), guild_of(who[i % len(who)]), f"job {start + i}: a lighthouse"
            )
            for i in range(count)
        )
    )


async def _books_balance(group: Cluster, delivered: int, cut_off: int = 0) -> None:
    """``delivered`` jobs charged their price once; ``cut_off`` more were sent to a provider by a
    process killed before it heard back (refunded: their task ids were never known)."""
    jobs = await group.jobs()
    won = [j for j in jobs if j.status == "succeeded"]
    assert len(won) == delivered
    assert all(j.reservation == "settled" and j.actual_micros == PRICE_MICROS for j in won)
    assert all(j.reservation in ("refunded", "none") for j in jobs if j.status != "succeeded")
    assert await group.problems() == []
    accounts = await group.accounts()
    # The provider limit held across both workers: never more open tasks than the account runs,
    # so no busy answer either; and no task was submitted twice.
    assert all(accounts[p]["peak_open"] <= PROVIDER_CAP for p in PROVIDERS), accounts
    assert sum(accounts[p]["busy"] for p in PROVIDERS) == 0, accounts
    # Each delivered job was submitted once; one cut off mid-send may or may not have reached the
    # provider (the kill can land between marking it sent and the request leaving): never twice.
    submits = sum(accounts[p]["submits"] for p in PROVIDERS)
    assert delivered <= submits <= delivered + cut_off, accounts


async def _told_once(group: Cluster, recs: list[dict]) -> Counter:
    """How each interaction ended, as its member saw it: one image, or a refusal and no image."""
    seen: Counter = Counter()
    for rec in recs:
        got = await group.interaction(rec)
        messages = [m for m in [got["original"], *got["followups"]] if m]
        files = [f for m in messages for f in m["files"]]
        seen["image" if files else "no image"] += 1
        assert len(files) <= 1, got  # delivered once: one job, one image, one message
        # Told: a refusal or a failure is a message with words in it, not a silent "thinking...".
        words = [m["payload"].get("content") or "" for m in messages]
        words += [
            e.get("description") or e.get("title") or ""
            for m in messages
            for e in m["payload"].get("embeds", [])
        ]
        assert any(w.strip() for w in words), got
    return seen


async def test_two_shards_two_workers_one_killed_every_job_delivered_once_or_refused(
    tmp_path: Path, new_db_target
) -> None:
    budget = f"{PAID // 2 * PRICE_MICROS / 1_000_000:.2f}"  # each guild pays for half of PAID
    async with cluster(tmp_path, new_db_target(), members=MEMBERS, budget_usd=budget) as group:
        await group.emulator("config", {"latency": 0.4})
        for name in ("gateway0", "gateway1", "worker1", "worker2"):
            await group.start(name)
        await group.wait_gateways()

        recs = await _flood(group, JOBS, MEMBERS)
        # Both shards served their guild's members.
        shards = Counter([(await group.interaction(r))["shards"][0] for r in recs])
        assert shards == {0: JOBS // 2, 1: JOBS // 2}

        # Kill one worker mid-flight: its jobs' leases lapse and the other worker resumes them by
        # their task ids.
        async with asyncio.timeout(60):
            while len([j for j in await group.jobs() if j.status == "succeeded"]) < PAID // 4:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        pid = group.procs["worker1"].pid
        held = [
            j.id for j in await group.jobs() if j.status == "running" and f":{pid}:" in (j.lease_owner or "")
        ]
        assert held, "the worker to be killed held no job"
        assert await group.stop("worker1", signal.SIGKILL) == -signal.SIGKILL

        jobs = await group.settled(JOBS)
        taken_over = [j for j in jobs if j.id in held]
        assert all(j.delivered_at for j in taken_over)  # the other worker finished and told them
        assert any(j.status == "succeeded" for j in taken_over), taken_over
        # A job the killed worker had sent but not yet heard back about (no task id recorded) cannot
        # be asked for again: it is refunded and its member told. Every other one is delivered.
        cut_off = [j for j in jobs if j.status == "failed"]
        assert all(j.error.startswith("interrupted: the bot restarted") for j in cut_off), cut_off
        assert len(cut_off) <= 4  # at most what the killed worker had in flight
        won = PAID - len(cut_off)
        statuses = Counter(j.status for j in jobs)
        assert statuses == +Counter({"succeeded": won, "refused": JOBS - PAID, "failed": len(cut_off)}), (
            statuses
        )
        assert await _told_once(group, recs) == {"image": won, "no image": JOBS - won}
        await _books_balance(group, won, len(cut_off))
        spent = Counter(j.guild_id for j in jobs if j.status in ("succeeded", "failed"))
        assert spent == {GUILDS[0]: PAID // 2, GUILDS[1]: PAID // 2}  # exactly the budgets allowed
        for name in ("gateway0", "gateway1", "worker2"):
            assert await group.stop(name) == 0, group.logs()
        assert group.tracebacks() == [], group.logs()


async def test_a_rolling_restart_then_a_full_stop_lose_nothing(tmp_path: Path, new_db_target) -> None:
    members = 12
    async with cluster(tmp_path, new_db_target(), members=members, budget_usd="100") as group:
        await group.emulator("config", {"latency": 0.5})
        names = ("gateway0", "gateway1", "worker1", "worker2")
        for name in names:
            await group.start(name)
        await group.wait_gateways()

        # Rolling restart with jobs flowing: each process in turn stops (SIGTERM) and starts again
        # while members keep sending jobs.
        recs = await _flood(group, 12, members)
        for step, name in enumerate(names):
            assert await group.stop(name) == 0, group.logs()
            up = GUILDS if name.startswith("worker") else (GUILDS[1 - int(name[-1])],)  # its shard is down
            recs += await _flood(group, 6, members, start=100 * (step + 1), guilds=up)
            if name.startswith("gateway"):
                await group.wait_gateway_gone(int(name[-1]))
            await group.start(name)
            if name.startswith("gateway"):
                await group.wait_gateways()
        rolled = len(recs)
        jobs = await group.settled(rolled)  # every job sent during the rolling restart: delivered
        assert Counter(j.status for j in jobs) == {"succeeded": rolled}

        # A full stop with jobs queued and running, then a start: all of them delivered. The tasks
        # take 30 s now, so the stop surely finds them at the provider (and others queued).
        await group.emulator("config", {"latency": 30})
        recs += await _flood(group, 24, members, start=1000)
        async with asyncio.timeout(30):
            while not [j for j in await group.jobs() if j.status == "running" and j.task_id]:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        for name in ("worker1", "worker2", "gateway0", "gateway1"):
            assert await group.stop(name) == 0, group.logs()
        left = Counter(j.status for j in await group.jobs() if not j.finished)
        assert left["queued"] == 24, left  # handed back with their tasks, or never claimed
        for shard in (0, 1):
            await group.wait_gateway_gone(shard)
        await group.emulator("config", {"latency": 0.5})  # the tasks are done when next asked about
        for name in names:
            await group.start(name)
        await group.wait_gateways()

        jobs = await group.settled(rolled + 24)
        assert Counter(j.status for j in jobs) == {"succeeded": len(recs)}
        assert await _told_once(group, recs) == {"image": len(recs)}
        await _books_balance(group, len(recs))
        assert group.tracebacks() == [], group.logs()
