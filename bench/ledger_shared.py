"""Benchmark 4, on a shared database: the ledger pairs with several processes on one database,
and on PostgreSQL (a fresh database per repetition on the server at KONTEXT_BENCH_POSTGRES, by
default postgresql://postgres@127.0.0.1:5432/postgres). bench/ledger.py prints these rows beside
its SQLite ones; ``python -m bench.ledger_shared --worker TARGET ...`` is one process of a run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench.common import Result, median
from bench.ledger import GUILD, IN_FLIGHT, PROCESSES, pairs_per_second

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


def processes_pairs_per_second(
    target: Path | str, pairs: int, processes: int = PROCESSES, in_flight: int = IN_FLIGHT
) -> float:
    """``processes`` OS processes on one database, each ``in_flight`` pairs at a time for its own
    guild, started together once all are warm: total pairs per second of wall time."""
    procs = [
        subprocess.Popen(
            [
                *(
                    sys.executable,
                    "-m",
                    "bench.ledger_shared",
                    "--worker",
                    str(target),
                    "--pairs",
                    str(pairs),
                ),
                *("--in-flight", str(in_flight), "--guild", str(GUILD + k)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        for k in range(processes)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        t0 = time.perf_counter()
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "done"
        seconds = time.perf_counter() - t0
    finally:
        for p in procs:
            p.wait(timeout=120)
    assert all(p.returncode == 0 for p in procs)
    return pairs * processes / seconds


async def _worker(target: str, pairs: int, in_flight: int, guild: int) -> None:
    loop = asyncio.get_running_loop()

    async def go() -> None:
        print("ready", flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)

    await pairs_per_second(target, pairs, in_flight, guild=guild, start=go())
    print("done", flush=True)


def _postgres_server() -> str:
    return os.environ.get("KONTEXT_BENCH_POSTGRES") or DEFAULT_POSTGRES


@contextlib.contextmanager
def postgres_databases(server: str) -> Iterator[Any]:
    """``fresh()`` -> the URL of a new empty database on ``server``; all dropped at the end."""
    import asyncpg

    made: list[str] = []

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(server, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def fresh() -> str:
        name = f"kontext_bench_{os.getpid()}_{secrets.token_hex(3)}"
        asyncio.run(admin(f"CREATE DATABASE {name}"))
        made.append(name)
        parts = urlsplit(server)
        return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))

    try:
        yield fresh
    finally:
        for name in made:
            asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def measure_postgres(pairs: int, reps: int, server: str | None = None) -> dict[str, Any]:
    """The pairs on PostgreSQL: one at a time, 32 in flight, 4 processes; or why not measured."""
    server = server or _postgres_server()
    seq, conc, procs = [], [], []
    try:
        with postgres_databases(server) as fresh:
            for _ in range(reps):
                seq.append(asyncio.run(pairs_per_second(fresh(), pairs)))
                conc.append(asyncio.run(pairs_per_second(fresh(), pairs, IN_FLIGHT)))
                procs.append(processes_pairs_per_second(fresh(), pairs // PROCESSES))
    except (OSError, ImportError) as e:  # no server, or no asyncpg: say so, measure the rest
        from storage.targets import redact

        return {"error": f"not measured: {type(e).__name__} at {redact(server)}"}
    return {"sequential": median(seq), "in_flight": median(conc), "processes": median(procs)}


def postgres_results(m: dict[str, Any]) -> list[Result]:
    pg = m["postgres"]
    rows = [
        ("one at a time", "sequential", m["sequential"], "SQLite, same run"),
        (f"{IN_FLIGHT} in flight", "in_flight", m["in_flight"], "SQLite, same run"),
        (
            f"{PROCESSES} processes x {IN_FLIGHT} in flight",
            "processes",
            pg.get("in_flight"),
            "PostgreSQL, 1 process",
        ),
    ]
    note = pg.get(
        "error",
        "one guild per process (a guild's reservations take turns on its advisory lock; guilds run "
        "side by side)",
    )
    return [
        Result(
            f"ledger pairs/s, {label}, PostgreSQL",
            pg.get(key, 0.0),
            "/s",
            baseline,
            baseline_label,
            "info",
            None,
            note if key == "processes" or "error" in pg else "",
        )
        for label, key, baseline, baseline_label in rows
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ledger_shared", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--worker", metavar="TARGET", required=True, help="the database of the run")
    parser.add_argument("--pairs", type=int, required=True, help="pairs this process makes")
    parser.add_argument("--in-flight", type=int, default=IN_FLIGHT, help="pairs at a time")
    parser.add_argument("--guild", type=int, default=GUILD, help="the guild this process's jobs are for")
    args = parser.parse_args(argv)
    asyncio.run(_worker(args.worker, args.pairs, args.in_flight, args.guild))


if __name__ == "__main__":
    main()
