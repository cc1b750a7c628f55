"""Benchmark: dispatch across worker processes (issue 13). N jobs queued at once on one database,
W ``kontext-bot worker``-like processes running them against a provider that answers after L.

Each worker is a fresh interpreter with the real services (open_services: queue claim, leases,
provider client, settle, the "told" record) and a face that posts nothing (no Discord): what a
worker process costs per job without the Discord upload. The jobs are queued first (text-to-image
on the synchronous UModelverse route, each from its own member, so each takes the free-quota
path), the workers open their services and wait; then all are told "go" at once and the clock runs
until the last job has succeeded, as its ``finished_at`` says. CPU per job is the workers' own
process time from "go" to the end, summed, over N. The emulator runs in its own process.

    python -m bench.workers [--latency 1.0] [--n 500 2000] [--workers 1 2 4] [--db sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import common

MODEL = "black-forest-labs/flux-kontext-pro/text-to-image"
GUILD = 4242
TARGET = 1.10  # wall / L at N = 500 (issue 13)


# --- one worker process ------------------------------------------------------------------------


class _Quiet:
    """A face that tells nobody: the worker records each job as told, as after a Discord post."""

    async def update(self, job: Any, event: Any) -> None:
        return None

    async def finish(self, job: Any, outcome: Any) -> Any:
        return None


async def _worker() -> None:
    from bot.config import load_settings
    from bot.services import open_services

    async with open_services(load_settings()) as svc:
        svc.worker.observer = _Quiet()
        print("READY", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "go"
        cpu = time.process_time()
        await svc.worker.start(claim_all=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "stop"
        cpu = time.process_time() - cpu
        done = len(svc.worker.active)
    print(json.dumps({"cpu_s": cpu, "still_running": done}), flush=True)


# --- the bench process -------------------------------------------------------------------------


async def _enqueue(settings: Any, n: int) -> None:
    from bot.jobs import JobRequest
    from bot.requests import Delivery
    from bot.services import open_services

    expires = datetime.now(UTC) + timedelta(minutes=15)
    async with open_services(settings) as svc:
        for i in range(n):
            user = 10_000 + i
            req = JobRequest(MODEL, f"job {i}", [], provider="modelverse", user_id=user, guild_id=GUILD)
            await svc.jobs.submit(req, delivery=Delivery(1, "t", expires, 1, GUILD, user))


async def _finished(settings: Any) -> tuple[int, datetime | None, int]:
    import storage
    from storage.opening import open_database

    async with await open_database(settings.db_path) as db:
        jobs = await storage.list_jobs(db, limit=1_000_000)
    won = [j for j in jobs if j.status == "succeeded" and j.delivered_at]
    failed = sum(1 for j in jobs if j.finished and j.status != "succeeded")
    last = max((j.delivered_at for j in won if j.delivered_at), default=None)
    return len(won), last, failed


@contextmanager
def _database(kind: str) -> Iterator[str | None]:
    """None: the SQLite file temp_settings made; else a fresh PostgreSQL database, dropped after."""
    if kind == "sqlite":
        yield None
        return
    import asyncpg

    base = os.environ.get("KONTEXT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"kontext_bench_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(base)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f"CREATE DATABASE {name}"))
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def measure(n: int, workers: int, latency: float = 1.0, db: str = "sqlite") -> dict[str, Any]:
    limits = {
        "max_running": n,  # per worker: the provider's limit (N) is what caps them together
        "user_jobs_in_flight": 1,
        "max_queue": n + 1,
        "queue_poll": 0.05,
        "job_deadline": 600.0,
    }
    with (
        common.emulator(latency=latency) as emu,
        common.temp_settings(emu.url, max_concurrency=n, limits=limits) as settings,
        _database(db) as url,
    ):
        if url is not None:
            from dataclasses import replace

            settings = replace(settings, db_path=url)
        env = {
            **os.environ,
            "KONTEXT_DB": settings.db_path,
            "KONTEXT_CONFIG": str(settings.config_file),
            "MODELVERSE_API_KEY": common.EMULATOR_KEY,
            "MODELVERSE_BASE_URL": emu.url,
            "PYTHONPATH": str(common.ROOT),
        }
        asyncio.run(_enqueue(settings, n))
        procs = [
            subprocess.Popen(
                [common.PYTHON, "-m", "bench.workers", "--worker"],
                cwd=common.ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(workers)
        ]
        try:
            for p in procs:
                assert p.stdout is not None and p.stdout.readline().strip() == "READY"
            start = datetime.now(UTC)
            for p in procs:
                assert p.stdin is not None
                p.stdin.write("go\n")
                p.stdin.flush()
            deadline = time.monotonic() + 60 + 5 * latency
            while True:
                won, last, failed = asyncio.run(_finished(settings))
                if won + failed >= n or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            outs = []
            for p in procs:
                assert p.stdin is not None and p.stdout is not None
                p.stdin.write("stop\n")
                p.stdin.flush()
                outs.append(json.loads(p.stdout.readline()))
                p.wait(timeout=30)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
    wall = (last - start).total_seconds() if last else float("nan")
    cpu = sum(o["cpu_s"] for o in outs)
    return {
        "n": n,
        "workers": workers,
        "db": db,
        "latency": latency,
        "done": won,
        "failed": failed,
        "wall_s": wall,
        "wall_over_l": wall / latency,
        "cpu_ms_per_job": 1000 * cpu / max(won, 1),
    }


def results(rows: Sequence[dict[str, Any]]) -> list[common.Result]:
    out = []
    for m in rows:
        name = f"dispatch {m['db']} N={m['n']} x{m['workers']} workers"
        met = m["wall_over_l"] <= TARGET if m["n"] == 500 else None
        note = f"{m['cpu_ms_per_job']:.2f} ms CPU/job; {m['done']} done, {m['failed']} failed"
        out.append(common.Result(name, m["wall_over_l"], "x L", 1.0, "L", f"<= {TARGET} at N=500", met, note))
    return out


def run(latency: float = 1.0) -> list[common.Result]:
    """What run_all records: N = 500 and 2000 over 1, 2 and 4 workers on SQLite, N = 500 over 1 and
    4 on PostgreSQL."""
    rows = [measure(n, w, latency, "sqlite") for n in (500, 2000) for w in (1, 2, 4)]
    rows += [measure(500, w, latency, "postgres") for w in (1, 4)]
    return results(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--n", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args(argv)
    if args.worker:
        asyncio.run(_worker())
        return
    rows = [measure(n, w, args.latency, args.db) for n in args.n for w in args.workers]
    for row in rows:
        print(json.dumps(row))
    common.print_results(results(rows))


if __name__ == "__main__":
    main()
