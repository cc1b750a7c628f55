"""A process killed between reserve and settle: on restart, resume or refund; books balanced."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import storage
from tests.storage.conftest import GUILD, PRICE, T0

ROOT = Path(__file__).resolve().parents[2]

# Reserves a resumable job (sent, with a task id) and one that never reached a provider, then
# dies: at once (os._exit), or while holding the write lock in the middle of a third reservation
# (SIGKILL from the test).
_BOT = textwrap.dedent(
    """
    import asyncio, os, sys, time
    from datetime import UTC, datetime
    import storage, storage.periods

    async def main(path, how):
        now = datetime(2025, 3, 12, 12, tzinfo=UTC)
        db = await storage.open_database(path)
        await storage.set_guild_budget(db, 100, 1_000_000, now=now)
        free = storage.NewJob("m", "p", 2, 40_000, 5, user_id=1, guild_id=100)
        paid = storage.NewJob("m", "p", 3, 40_000, 0, user_id=2, guild_id=100)
        sent = await storage.accept_job(db, free, now=now)
        await storage.mark_running(db, sent.job_id, "wavespeed", "wavespeed-ai/x", "task-1", now=now)
        await storage.accept_job(db, paid, now=now)
        if how == "exit":
            os._exit(0)

        async def stuck(conn):
            at = storage.periods.to_db(now)
            await conn.execute("INSERT INTO audit (at, action) VALUES (?, 'half')", (at,))
            print("in-transaction", flush=True)
            if conn.dialect == "sqlite":
                time.sleep(60)  # on the writer thread, holding SQLite's write lock
            else:
                await asyncio.sleep(60)  # inside the open transaction

        await db.write(stuck)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


def _run_bot(target: str, how: str) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _BOT, target, how], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    if how == "kill":
        assert proc.stdout.readline().strip() == "in-transaction"
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return proc.returncode


async def _recover(db) -> list[str]:
    """What the job service does on start: resume jobs with a task id, refund the rest."""
    done = []
    for job in await storage.unfinished_jobs(db):
        if job.task_id:
            # Polled to the end: the provider made 2 images.
            await storage.complete_job(db, job.id, 2, result_urls=["a", "b"], now=T0)
            done.append(f"resumed {job.task_id}")
        else:
            await storage.fail_job(
                db, job.id, "failed", "Interrupted by a restart before it was sent.", now=T0
            )
            done.append("refunded")
    return done


@pytest.mark.parametrize("how", ["exit", "kill"])
async def test_a_killed_bot_is_recovered_with_the_books_balanced(db_target, how):
    returncode = await asyncio.to_thread(_run_bot, db_target, how)
    assert returncode == (0 if how == "exit" else -signal.SIGKILL)

    async with await storage.open_database(db_target) as db:  # the dead process's lock is gone
        unfinished = await storage.unfinished_jobs(db)
        # Both were accepted at the same moment: no order between them is promised.
        assert sorted((j.status, j.task_id or "") for j in unfinished) == [
            ("queued", ""),
            ("running", "task-1"),
        ]
        assert [e.action for e in await storage.audit_log(db)] == ["budget"]  # the half write is gone
        assert sorted(await _recover(db)) == ["refunded", "resumed task-1"]
        assert await _recover(db) == []  # a second restart finds nothing to do
        assert await storage.check(db, now=T0) == []

        one = await storage.quota_status(db, 1, GUILD, {"m": 5}, now=T0)
        two = await storage.quota_status(db, 2, GUILD, {"m": 0}, now=T0)
        assert one.free[0].used == 2 and two.spent_micros == 0 and two.guild.spent_micros == 0
        failed = [j for j in await storage.list_jobs(db, user_id=2) if j.status == "failed"]
        assert failed and failed[0].error.startswith("Interrupted")
        # The database takes new work at once.
        r = await storage.accept_job(
            db, storage.NewJob("m", "p", 1, PRICE, 0, user_id=2, guild_id=GUILD), now=T0
        )
        assert r.charged_to == "guild"
