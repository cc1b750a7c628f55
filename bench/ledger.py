"""Benchmark 4: ledger throughput. Reserve + settle pairs per second (storage.accept_job +
storage.complete_job) on a file database in WAL mode, in one process; and 500 contenders at once
for a free quota of 100, which must grant exactly 100. The same pairs on PostgreSQL beside it
(a fresh database per repetition on the server at KONTEXT_BENCH_POSTGRES, by default
postgresql://postgres@127.0.0.1:5432/postgres), and on both with 4 processes sharing the database.

Figures: pairs/s awaited one after another (the latency-bound case) and with 32 pairs in flight
(how the bot runs: many jobs at once, one writer thread). Durability: WAL with synchronous=NORMAL
on every side -- a COMMIT is durable against a crash of the process; a power loss may lose the
last commits before the next checkpoint, never consistency (SQLite's documented WAL guarantee).

Baselines compare like with like (the same number of COMMITs per pair on both sides):
- one at a time: plain aiosqlite, one INSERT in one transaction and one UPDATE in another (two
  COMMITs per pair, as accept + settle are): the floor any async design over aiosqlite pays. Also
  shown (info): the very same storage transactions (storage.settle._accept / _complete inside
  storage.sqlite._in_transaction) called directly on a plain sqlite3 connection, no thread hop,
  no event loop -- the ceiling our SQL itself allows -- and where a direct pair's time goes.
- 32 in flight: the bot group-commits, so its baseline is the same SQL run directly with 32
  operations per BEGIN IMMEDIATE ... COMMIT, each in a SAVEPOINT -- the ceiling of group commit.

Jobs are user jobs within a large free quota (the free-quota path: policy read, balance read, job
insert, ledger insert + balances trigger; settle: job read, ledger read, ledger insert, job update).

    python -m bench.ledger [--pairs 2000] [--reps 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Result, finite, median, print_results

GUILD = 100
MODEL = "bench-model"
PRICE = 40_000
IN_FLIGHT = 32
PROCESSES = 4
TARGET_SEQUENTIAL = 4000  # pairs/s (issue 14, item 3)
TARGET_IN_FLIGHT = 10000


def _job(i: int, free_quota: int = 10**9, user: int | None = None, guild: int = GUILD) -> Any:
    import storage

    return storage.NewJob(
        model=MODEL,
        prompt=f"a red fox #{i}",
        images=1,
        price_micros=PRICE,
        free_quota=free_quota,
        user_id=user if user is not None else i % 97 + 1,
        guild_id=guild,
        channel_id=7,
        params={"seed": i, "aspect_ratio": "1:1"},
        meta={"input_refs": [], "source": "bench"},
        kind="text-to-image",
    )


async def _open(target: Path | str) -> Any:
    from storage import open_database

    return await open_database(target)


async def pairs_per_second(
    target: Path | str, pairs: int, in_flight: int = 1, *, guild: int = GUILD, start: Any = None
) -> float:
    """accept_job + complete_job pairs per second, ``in_flight`` pairs at a time (a SQLite path or
    a PostgreSQL URL). ``start``: an awaitable to wait on once warmed up (the multi-process run)."""
    import storage

    db = await _open(target)
    try:
        for i in range(20):  # warm the caches and the connection threads (and pool)
            r = await storage.accept_job(db, _job(i, guild=guild))
            await storage.complete_job(db, r.job_id, 1)

        async def lane(first: int) -> None:
            for i in range(first, pairs, in_flight):
                r = await storage.accept_job(db, _job(i, guild=guild))
                await storage.complete_job(db, r.job_id, 1)

        if start is not None:
            await start
        t0 = time.perf_counter()
        await asyncio.gather(*(lane(k) for k in range(in_flight)))
        return pairs / (time.perf_counter() - t0)
    finally:
        await db.close()


async def _migrate(path: Path) -> None:
    db = await _open(path)
    await db.close()


def _sync_connection(path: Path) -> sqlite3.Connection:
    from storage.sqlite import configure

    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    configure(conn)
    return conn


def sync_pairs_per_second(path: Path, pairs: int) -> float:
    """Baseline: the same two transactions, driven straight on a sqlite3 connection."""
    from storage.jobs import new_job_id
    from storage.periods import utc
    from storage.settle import _accept, _complete
    from storage.sqlite import _in_transaction

    asyncio.run(_migrate(path))
    conn = _sync_connection(path)
    try:

        def pair(i: int) -> None:
            job_id = new_job_id()
            _in_transaction(conn, "BEGIN IMMEDIATE", _accept, (_job(i), job_id, utc(None)), {})
            _in_transaction(conn, "BEGIN IMMEDIATE", _complete, (job_id, 1, None, [], utc(None)), {})

        for i in range(20):
            pair(i)
        t0 = time.perf_counter()
        for i in range(pairs):
            pair(i)
        return pairs / (time.perf_counter() - t0)
    finally:
        conn.close()


async def aiosqlite_pairs_per_second(path: Path, pairs: int) -> float:
    """Floor baseline: plain aiosqlite on the same schema, one INSERT into jobs in one transaction
    and one UPDATE of it in another (two COMMITs per pair, like accept + settle)."""
    import aiosqlite

    from storage.sqlite import configure

    await _migrate(path)
    conn = await aiosqlite.connect(str(path), isolation_level=None)
    await conn._execute(configure, conn._conn)
    insert = (
        "INSERT INTO jobs (id, created_at, updated_at, user_id, guild_id, model, prompt, images_requested, "
        "price_micros, estimated_micros, status, reservation, deadline_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, 'queued', 'open', ?)"
    )
    try:

        async def pair(i: int) -> None:
            from storage.jobs import new_job_id
            from storage.periods import to_db, utc

            job_id, stamp = new_job_id(), to_db(utc(None))
            await conn.execute("BEGIN IMMEDIATE")
            await conn.execute(
                insert, (job_id, stamp, stamp, i % 97 + 1, GUILD, MODEL, f"fox {i}", PRICE, PRICE, stamp)
            )
            await conn.execute("COMMIT")
            await conn.execute("BEGIN IMMEDIATE")
            await conn.execute(
                "UPDATE jobs SET status = 'succeeded', updated_at = ? WHERE id = ?", (stamp, job_id)
            )
            await conn.execute("COMMIT")

        for i in range(20):
            await pair(i)
        t0 = time.perf_counter()
        for i in range(pairs):
            await pair(i)
        return pairs / (time.perf_counter() - t0)
    finally:
        await conn.close()


def grouped_pairs_per_second(path: Path, pairs: int, group: int = IN_FLIGHT) -> float:
    """Experiment (a ceiling, not the product): the same transactions, ``group`` of them per
    BEGIN IMMEDIATE ... COMMIT, each inside its own SAVEPOINT so one failing operation would roll back
    alone -- what a group-committing writer thread would do with the operations queued on it."""
    from storage.conn import SqliteConn, drive
    from storage.jobs import new_job_id
    from storage.periods import utc
    from storage.settle import _accept, _complete

    asyncio.run(_migrate(path))
    conn = _sync_connection(path)
    ops_conn = SqliteConn(conn)

    def batch(ops: list[tuple[Any, tuple[Any, ...]]]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        for fn, args in ops:
            conn.execute("SAVEPOINT op")
            drive(fn(ops_conn, *args))
            conn.execute("RELEASE op")
        conn.execute("COMMIT")

    try:
        t0 = time.perf_counter()
        for start in range(0, pairs, group):
            ids = [(i, new_job_id()) for i in range(start, min(pairs, start + group))]
            batch([(_accept, (_job(i), job_id, utc(None))) for i, job_id in ids])
            batch([(_complete, (job_id, 1, None, [], utc(None))) for _, job_id in ids])
        return pairs / (time.perf_counter() - t0)
    finally:
        conn.close()


class _TimedConnection:
    """Wraps a sqlite3 connection for ``sql_breakdown``: times each execute by its first words."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.seconds: dict[str, float] = {}
        self.count = 0

    def _timed(self, method: Any, sql: str, args: tuple[Any, ...]) -> Any:
        key = "COMMIT" if sql.startswith("COMMIT") else "BEGIN" if sql.startswith("BEGIN") else "other SQL"
        t0 = time.perf_counter()
        try:
            return method(sql, *args)
        finally:
            self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - t0
            self.count += 1

    def execute(self, sql: str, *args: Any) -> Any:
        return self._timed(self._conn.execute, sql, args)

    def executemany(self, sql: str, *args: Any) -> Any:
        return self._timed(self._conn.executemany, sql, args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def sql_breakdown(path: Path, pairs: int = 500) -> dict[str, float]:
    """Where one pair's time goes when run directly: microseconds per pair in COMMIT, BEGIN, the
    other statements, and Python (decide, row -> dataclass, JSON, time formatting); statements/pair."""
    from storage.jobs import new_job_id
    from storage.periods import utc
    from storage.settle import _accept, _complete
    from storage.sqlite import _in_transaction

    asyncio.run(_migrate(path))
    raw = _sync_connection(path)
    conn = _TimedConnection(raw)
    try:
        t0 = time.perf_counter()
        for i in range(pairs):
            job_id = new_job_id()
            _in_transaction(conn, "BEGIN IMMEDIATE", _accept, (_job(i), job_id, utc(None)), {})  # type: ignore[arg-type]
            _in_transaction(conn, "BEGIN IMMEDIATE", _complete, (job_id, 1, None, [], utc(None)), {})  # type: ignore[arg-type]
        total = time.perf_counter() - t0
    finally:
        raw.close()
    out = {k: v / pairs * 1e6 for k, v in conn.seconds.items()}
    out["python"] = total / pairs * 1e6 - sum(out.values())
    out["total"] = total / pairs * 1e6
    out["statements"] = conn.count / pairs
    return out


async def contention(path: Path, contenders: int = 500, quota: int = 100) -> dict[str, Any]:
    """``contenders`` reservations at once by one member for a free quota of ``quota`` (and no
    budget), spread over two connections to the file, so SQLite's own lock is contended too."""
    import storage

    db, other = await _open(path), await _open(path)
    try:
        await storage.set_free_quota(db, GUILD, MODEL, quota)

        async def one(i: int) -> bool:
            try:
                await storage.accept_job(db if i % 2 else other, _job(i, free_quota=5, user=4242))
                return True
            except storage.QuotaRefused:
                return False

        t0 = time.perf_counter()
        granted = sum(await asyncio.gather(*(one(i) for i in range(contenders))))
        seconds = time.perf_counter() - t0
        problems = await storage.check(db)
        return {"granted": granted, "seconds": seconds, "consistent": not problems}
    finally:
        await other.close()
        await db.close()


def measure(pairs: int = 2000, reps: int = 5, contenders: int = 500, quota: int = 100) -> dict[str, Any]:
    from bench import ledger_shared  # it imports this module

    seq, conc, base, grouped, procs, floor = [], [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="kontext-bench-ledger-") as tmp:
        for rep in range(reps):
            # A fresh file per repetition and per mode: every figure starts from the same table sizes.
            seq.append(asyncio.run(pairs_per_second(Path(tmp) / f"seq{rep}.db", pairs)))
            conc.append(asyncio.run(pairs_per_second(Path(tmp) / f"conc{rep}.db", pairs, IN_FLIGHT)))
            base.append(sync_pairs_per_second(Path(tmp) / f"sync{rep}.db", pairs))
            floor.append(asyncio.run(aiosqlite_pairs_per_second(Path(tmp) / f"floor{rep}.db", pairs)))
            grouped.append(grouped_pairs_per_second(Path(tmp) / f"group{rep}.db", pairs))
            procs.append(
                ledger_shared.processes_pairs_per_second(Path(tmp) / f"procs{rep}.db", pairs // PROCESSES)
            )
        breakdown = sql_breakdown(Path(tmp) / "breakdown.db")
        fight = asyncio.run(contention(Path(tmp) / "contention.db", contenders, quota))
    return {
        "sequential": median(seq),
        "in_flight": median(conc),
        "processes": median(procs),
        "sync": median(base),
        "aiosqlite": median(floor),
        "grouped": median(grouped),
        "breakdown": breakdown,
        "contention": fight,
        "quota": quota,
        "contenders": contenders,
        "postgres": ledger_shared.measure_postgres(pairs, reps),
    }


def results(m: dict[str, Any]) -> list[Result]:
    from bench import ledger_shared

    c, b = m["contention"], m["breakdown"]
    return [
        Result(
            "ledger pairs/s, one at a time",
            m["sequential"],
            "/s",
            m["aiosqlite"],
            "plain aiosqlite INSERT + UPDATE, 2 COMMITs",
            f">= {TARGET_SEQUENTIAL:,} /s",
            m["sequential"] >= TARGET_SEQUENTIAL,
            f"{1e6 / m['sequential']:.0f} us per pair awaited vs {1e6 / m['sync']:.0f} us for the same SQL "
            f"direct; direct pair split: COMMIT {b['COMMIT']:.0f} us, BEGIN {b.get('BEGIN', 0):.0f} us, "
            f"other SQL {b['other SQL']:.0f} us, Python {b['python']:.0f} us "
            f"({b['statements']:.0f} statements/pair); WAL, synchronous=NORMAL",
        ),
        Result(
            "ledger pairs/s, same SQL direct on sqlite3, one at a time",
            m["sync"],
            "/s",
            m["aiosqlite"],
            "plain aiosqlite INSERT + UPDATE, 2 COMMITs",
            "info",
            None,
        ),
        Result(
            f"ledger pairs/s, {IN_FLIGHT} in flight",
            m["in_flight"],
            "/s",
            m["grouped"],
            f"same SQL direct, {IN_FLIGHT} per COMMIT",
            f">= {TARGET_IN_FLIGHT:,} /s",
            m["in_flight"] >= TARGET_IN_FLIGHT,
            "both sides group-commit (one COMMIT per batch, a SAVEPOINT per operation)",
        ),
        Result(
            f"ledger grants, {m['contenders']} contenders for quota {m['quota']}",
            c["granted"],
            "",
            m["quota"],
            "quota",
            f"exactly {m['quota']}",
            c["granted"] == m["quota"] and c["consistent"],
            f"{c['seconds']:.2f} s for all {m['contenders']}; db check "
            f"{'clean' if c['consistent'] else 'FOUND PROBLEMS'}",
        ),
        Result(
            f"ledger pairs/s, {PROCESSES} processes x {IN_FLIGHT} in flight",
            m["processes"],
            "/s",
            m["in_flight"],
            "1 process",
            "info",
            None,
            "one SQLite file, one writer at a time across processes (its lock and busy timeout)",
        ),
        *ledger_shared.postgres_results(m),
    ]


def run(pairs: int = 2000, reps: int = 5) -> list[Result]:
    m = measure(pairs, reps)
    assert finite(m["sequential"], m["in_flight"], m["sync"])
    return results(m)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger", description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    print_results(run(args.pairs, args.reps))


if __name__ == "__main__":
    main()
