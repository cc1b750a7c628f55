"""Benchmark 6: reports at scale, and the ledger beside a big history (issue 14, items 4 and 6).

Builds a database of N jobs (bulk insert straight into the real schema, migrations applied first:
SQLite through one executemany transaction, PostgreSQL through COPY), a year of history over 100
guilds with one big guild (10% of all jobs), every finished job with its reserve and settle/refund
ledger rows (2 per job, through the balances trigger), then times through storage's own functions:

- a guild's month by user, team, model and day (``storage.usage``; the biggest guild, its
  busiest month): the median of 5 after one warm-up. Baseline, same database: the query as it was,
  with the catch-all ``(:g IS NULL OR guild_id = :g)`` WHERE that defeats the index.
- a member's history (``storage.list_jobs(user, guild, 10)``: the busiest member of the big guild).
  Baseline: the old catch-all query.
- info: every guild's month by day (no guild: a scan of the month's rows).
- quota lookups while a report runs (SQLite): ``storage.quota_status`` p50 alone and while an
  all-guild report loops on the report connection; reports never hold them up.
- the scale curve: reserve+settle pairs/s (one at a time, 32 in flight) on databases of 0, 50k and
  500k jobs (0, 100k and 1M ledger rows).

Targets: month report <= 20 ms, history <= 2 ms, on both backends, with 1M jobs.

    python -m bench.reports [--jobs 1000000] [--curve 0,50000,500000] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import Result, median, print_results

GUILDS = 100
BIG_GUILD = 1  # 10% of all jobs
USERS = 20_000
MODELS = ("flux-kontext-pro", "flux-kontext-max", "gpt-image-1", "seedream-4")
NOW = datetime(2026, 12, 1, tzinfo=UTC)  # history runs for the year before this
MONTH = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
REPS = 5
TARGET_MONTH_MS = 20.0
TARGET_HISTORY_MS = 2.0
GROUPINGS = ("user", "team", "model", "day")

JOB_COLUMNS = (
    "id, created_at, updated_at, user_id, guild_id, channel_id, model, kind, prompt, input_count, "
    "images_requested, price_micros, estimated_micros, status, reservation, charged_to, finished_at, "
    "deadline_at, images_delivered, actual_micros, error"
).split(", ")
LEDGER_COLUMNS = "at, entry, account, bucket, day, guild_id, user_id, model, job_id, images, micros".split(
    ", "
)

# The queries as they were before 0005_report_indexes.sql (the baseline).
OLD_USAGE_WHERE = (
    "WHERE (CAST(:g AS BIGINT) IS NULL OR guild_id = :g) "
    "AND (CAST(:since AS TEXT) IS NULL OR created_at >= :since) "
    "AND (CAST(:until AS TEXT) IS NULL OR created_at < :until)"
)
OLD_HISTORY = (
    "SELECT * FROM jobs WHERE (CAST(:u AS BIGINT) IS NULL OR user_id = :u) "
    "AND (CAST(:g AS BIGINT) IS NULL OR guild_id = :g) ORDER BY created_at DESC, id DESC LIMIT :n"
)


# --- building ----------------------------------------------------------------------------------


def _stamp(moment: datetime) -> str:
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _job_id(ms: int, n: int) -> str:
    alphabet, text = "0123456789abcdefghijklmnopqrstuvwxyz", ""
    while ms:
        ms, digit = divmod(ms, 36)
        text = alphabet[digit] + text
    tail = ""
    for _ in range(4):
        n, digit = divmod(n, 36)
        tail = alphabet[digit] + tail
    return text + tail


def generate(jobs: int, seed: int = 14) -> tuple[list[tuple], list[tuple]]:
    """(job rows, ledger rows), oldest first. Deterministic for a given size and seed."""
    rng = random.Random(seed)
    start = NOW - timedelta(days=365)
    step = 365 * 86400 / max(1, jobs)
    job_rows, ledger_rows = [], []
    members = {
        g: rng.sample(range(1, USERS + 1), 4000 if g == BIG_GUILD else 200) for g in range(1, GUILDS + 1)
    }
    for i in range(jobs):
        moment = start + timedelta(seconds=i * step)
        stamp, day = _stamp(moment), _stamp(moment)[:10]
        guild = BIG_GUILD if rng.random() < 0.10 else rng.randint(2, GUILDS)
        # A few members do most of the work (a long tail), as in any server.
        user = members[guild][min(int(rng.paretovariate(1.2)) - 1, len(members[guild]) - 1)]
        model = MODELS[rng.randrange(len(MODELS))]
        r = rng.random()
        status = "succeeded" if r < 0.85 else "failed" if r < 0.90 else "refused" if r < 0.95 else "cancelled"
        payer = (
            None
            if status == "refused"
            else ("free" if rng.random() < 0.6 else rng.choice(("guild", "team:art")))
        )
        price = 40_000
        delivered = 1 if status == "succeeded" else 0
        cost = price if status == "succeeded" else 0
        job_id = _job_id(int(moment.timestamp() * 1000), i % 36**4)
        job_rows.append(
            (
                job_id, stamp, stamp, user, guild, 7, model, "edit", f"a fox #{i}", 1, 1, price, price,
                status, "none" if payer is None else "settled" if delivered else "refunded", payer,
                stamp, stamp, delivered, None if payer is None else cost,
                "quota_refused: bench" if payer is None else None,
            )
        )  # fmt: skip
        if payer is None:
            continue
        if payer == "free":
            account, bucket, images, micros = "free", f"free:{guild}:{user}:{model}", 1, 0
        else:
            account = "guild" if payer == "guild" else "team"
            bucket, images, micros = (f"guild:{guild}" if payer == "guild" else "team:1"), 0, price
        close = "settle" if delivered else "refund"
        keep_images, keep_micros = (images if delivered else 0), (micros if delivered else 0)
        ledger_rows.append(
            (stamp, "reserve", account, bucket, day, guild, user, model, job_id, images, micros)
        )
        ledger_rows.append(
            (
                stamp,
                close,
                account,
                bucket,
                day,
                guild,
                user,
                model,
                job_id,
                keep_images - images,
                keep_micros - micros,
            )
        )
    return job_rows, ledger_rows


def _insert_sql(table: str, columns: list[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"


async def build_sqlite(path: Path, jobs: int) -> float:
    """The database at ``path`` with ``jobs`` jobs; seconds it took."""
    from storage import open_database

    t0 = time.perf_counter()
    await (await open_database(path)).close()  # the real schema, every migration
    job_rows, ledger_rows = generate(jobs)
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")  # the build only: a crash here loses a bench file
        conn.execute("BEGIN")
        conn.executemany(_insert_sql("jobs", JOB_COLUMNS), job_rows)
        conn.executemany(_insert_sql("ledger", LEDGER_COLUMNS), ledger_rows)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return time.perf_counter() - t0


async def build_postgres(url: str, jobs: int) -> float:
    import asyncpg

    from storage import open_database

    t0 = time.perf_counter()
    await (await open_database(url)).close()
    job_rows, ledger_rows = generate(jobs)
    conn = await asyncpg.connect(url)
    try:
        await conn.copy_records_to_table("jobs", records=job_rows, columns=JOB_COLUMNS)
        await conn.copy_records_to_table("ledger", records=ledger_rows, columns=LEDGER_COLUMNS)
        await conn.execute("VACUUM ANALYZE")  # what autovacuum does soon after: index-only scans need it
    finally:
        await conn.close()
    return time.perf_counter() - t0


# --- measuring ---------------------------------------------------------------------------------


async def _timed(fn: Any, reps: int = REPS) -> tuple[float, Any]:
    result = await fn()  # warm-up: the pages in the cache, the statement prepared
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        result = await fn()
        times.append(time.perf_counter() - t0)
    return median(times) * 1000, result


async def _old_usage(db: Any, guild: int | None, by: str) -> list:
    from storage.reports import GROUPINGS as EXPRESSIONS
    from storage.reports import _count, _fetchall

    sql = (
        f"SELECT {EXPRESSIONS[by]} AS key, count(*) AS jobs, {_count('succeeded')} AS succeeded, "
        "CAST(sum(CASE WHEN status = 'succeeded' THEN images_delivered ELSE 0 END) AS BIGINT) AS images, "
        "CAST(sum(CASE WHEN status = 'succeeded' THEN coalesce(actual_micros, 0) ELSE 0 END) AS BIGINT) "
        f"AS cost_micros FROM jobs {OLD_USAGE_WHERE} GROUP BY key"
    )
    params = {"g": guild, "since": _stamp(MONTH[0]), "until": _stamp(MONTH[1])}
    return await db.read(_fetchall, sql, params)


async def _old_history(db: Any, user: int, guild: int) -> list:
    from storage.jobs import Job
    from storage.reports import _fetchall

    # The same work as list_jobs: the rows and their Job records.
    return [Job.from_row(r) for r in await db.read(_fetchall, OLD_HISTORY, {"u": user, "g": guild, "n": 10})]


async def _busiest_member(db: Any) -> int:
    from storage.reports import _fetchall

    rows = await db.read(
        _fetchall,
        "SELECT user_id, count(*) AS n FROM jobs WHERE guild_id = ? GROUP BY user_id ORDER BY n DESC LIMIT 1",
        [BIG_GUILD],
    )
    return int(rows[0][0]) if rows else 1


async def measure_reports(target: Path | str, baseline: bool = True) -> dict[str, Any]:
    import storage

    db = await storage.open_database(target)
    try:
        out: dict[str, Any] = {"month": {}, "old_month": {}}
        for by in GROUPINGS:
            ms, rows = await _timed(
                lambda by=by: storage.usage(db, guild_id=BIG_GUILD, since=MONTH[0], until=MONTH[1], by=by)
            )
            out["month"][by] = ms
            out["month_jobs"] = sum(r.jobs for r in rows)
            if baseline:
                out["old_month"][by] = (await _timed(lambda by=by: _old_usage(db, BIG_GUILD, by), reps=1))[0]
        out["all_by_day"] = (
            await _timed(lambda: storage.usage(db, since=MONTH[0], until=MONTH[1], by="day"), reps=1)
        )[0]
        user = await _busiest_member(db)
        out["history"], got = await _timed(
            lambda: storage.list_jobs(db, user_id=user, guild_id=BIG_GUILD), reps=25
        )
        out["history_rows"] = len(got)
        if baseline:
            out["old_history"] = (await _timed(lambda: _old_history(db, user, BIG_GUILD), reps=3))[0]
        if db.dialect == "sqlite":
            out["quota"] = await _quota_beside_reports(db, user)
        return out
    finally:
        await db.close()


async def _quota_beside_reports(db: Any, user: int) -> dict[str, float]:
    """quota_status p50 alone, and while all-guild reports loop on the report connection."""
    import storage

    models = dict.fromkeys(MODELS, 10)

    async def lookups(n: int = 200) -> float:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            await storage.quota_status(db, user, BIG_GUILD, models, now=NOW)
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1000

    alone = await lookups()
    stop = asyncio.Event()

    async def reports() -> int:
        n = 0
        while not stop.is_set():
            await storage.usage(db, since=MONTH[0] - timedelta(days=300), until=MONTH[1], by="day")
            n += 1
        return n

    task = asyncio.create_task(reports())
    await asyncio.sleep(0.05)  # the first report is under way
    beside = await lookups()
    stop.set()
    await task
    return {"alone_ms": alone, "beside_ms": beside}


def scale_curve(sizes: list[int], pairs: int = 2000) -> list[dict[str, Any]]:
    from bench import ledger

    curve = []
    with tempfile.TemporaryDirectory(prefix="kontext-bench-curve-") as tmp:
        for n in sizes:
            path = Path(tmp) / f"curve{n}.db"
            asyncio.run(build_sqlite(path, n))
            rows = _ledger_rows(path)  # before the pairs add theirs
            seq = asyncio.run(ledger.pairs_per_second(path, pairs))
            conc = asyncio.run(ledger.pairs_per_second(path, pairs, ledger.IN_FLIGHT))
            rep = asyncio.run(measure_reports(path, baseline=False))
            curve.append({"jobs": n, "ledger_rows": rows, "sequential": seq, "in_flight": conc, **rep})
            path.unlink()
    return curve


def _ledger_rows(path: Path) -> int:
    conn = sqlite3.connect(str(path))
    try:
        return int(conn.execute("SELECT count(*) FROM ledger").fetchone()[0])
    finally:
        conn.close()


def measure(
    jobs: int = 1_000_000, curve: tuple[int, ...] = (0, 50_000, 500_000), postgres: bool = True
) -> dict:
    m: dict[str, Any] = {"jobs": jobs}
    with tempfile.TemporaryDirectory(prefix="kontext-bench-reports-") as tmp:
        path = Path(tmp) / "big.db"
        m["sqlite_build_s"] = asyncio.run(build_sqlite(path, jobs))
        m["sqlite_mb"] = path.stat().st_size / 2**20
        m["sqlite"] = asyncio.run(measure_reports(path))
    if postgres:
        from bench.ledger_shared import _postgres_server, postgres_databases

        try:
            with postgres_databases(_postgres_server()) as fresh:
                url = fresh()
                m["postgres_build_s"] = asyncio.run(build_postgres(url, jobs))
                m["postgres"] = asyncio.run(measure_reports(url))
        except (OSError, ImportError) as e:
            m["postgres"] = {"error": f"not measured: {type(e).__name__}"}
    m["curve"] = scale_curve(list(curve)) if curve else []
    return m


def results(m: dict[str, Any]) -> list[Result]:
    rows: list[Result] = []
    n = f"{m['jobs'] / 1e6:g}M" if m["jobs"] >= 1e6 else f"{m['jobs']:,}"
    for backend in ("sqlite", "postgres"):
        r = m.get(backend)
        name = "SQLite" if backend == "sqlite" else "PostgreSQL"
        if not r or "error" in r:
            rows.append(
                Result(f"reports, {name}", 0, "", None, (r or {}).get("error", "not measured"), "info", None)
            )
            continue
        worst = max(r["month"].values())
        old = max(r["old_month"].values()) if r["old_month"] else None
        rows.append(
            Result(
                f"usage, a guild's month (worst of by user/team/model/day), {n} jobs, {name}",
                worst,
                "ms",
                old,
                "old catch-all WHERE",
                f"<= {TARGET_MONTH_MS:g} ms",
                worst <= TARGET_MONTH_MS,
                f"{r['month_jobs']:,} jobs in the month; "
                + ", ".join(f"by {k} {v:.1f} ms" for k, v in r["month"].items())
                + (f" (old: {', '.join(f'{v:.0f}' for v in r['old_month'].values())} ms)" if old else "")
                + f"; built in {m.get(backend + '_build_s', 0):.0f} s",
            )
        )
        rows.append(
            Result(
                f"history, a member's last 10 in a guild, {n} jobs, {name}",
                r["history"],
                "ms",
                r.get("old_history"),
                "old catch-all WHERE",
                f"<= {TARGET_HISTORY_MS:g} ms",
                r["history"] <= TARGET_HISTORY_MS,
            )
        )
        rows.append(
            Result(
                f"usage, every guild's month by day, {n} jobs, {name}",
                r["all_by_day"],
                "ms",
                None,
                "—",
                "info",
                None,
                "no guild: the month's rows are scanned (no index covers every guild's jobs by time)",
            )
        )
        if "quota" in r:
            q = r["quota"]
            rows.append(
                Result(
                    f"quota lookup p50 while reports run, {name}",
                    q["beside_ms"],
                    "ms",
                    q["alone_ms"],
                    "no report running",
                    "info (reports never hold them up)",
                    None,
                    "reports on their own reader connection; the ratio is GIL sharing on 2 cores",
                )
            )
    for c in m.get("curve", []):
        rows.append(
            Result(
                f"ledger pairs/s with {c['ledger_rows']:,} ledger rows, one at a time / 32 in flight",
                c["sequential"],
                "/s",
                c["in_flight"],
                "32 in flight",
                "info (scale curve)",
                None,
                f"{c['jobs']:,} jobs: month report {max(c['month'].values()):.1f} ms, history "
                f"{c['history']:.2f} ms",
            )
        )
    return rows


def run(jobs: int = 1_000_000) -> list[Result]:
    return results(measure(jobs))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.reports", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument(
        "--curve", default="0,50000,500000", help="job counts for the scale curve ('' for none)"
    )
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    curve = tuple(int(x) for x in args.curve.split(",") if x.strip())
    print_results(results(measure(args.jobs, curve, postgres=not args.no_postgres)))


if __name__ == "__main__":
    main()
