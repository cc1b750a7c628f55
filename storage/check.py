"""`kontext-bot db check`: prove the books balance. Each problem found is one line of text."""

from __future__ import annotations

from datetime import datetime, timedelta

from storage.conn import Conn
from storage.db import Database, _version
from storage.periods import from_db, utc
from storage.schema import latest_version

FAILURES = ("failed", "refused", "cancelled")
DEFAULT_GRACE = timedelta(minutes=5)  # the job service fails overdue jobs; give it time to
# The database's own guards of the books: the append-only ledger and the balances cache.
TRIGGERS = {
    "sqlite": {"ledger_no_update", "ledger_no_delete", "ledger_to_balances"},
    "postgres": {"ledger_no_update", "ledger_no_delete", "ledger_no_truncate", "ledger_to_balances"},
}


def _entries(entry: str) -> str:
    return f"CAST(sum(CASE WHEN l.entry = '{entry}' THEN 1 ELSE 0 END) AS BIGINT)"


async def _integrity(conn: Conn) -> list[str]:
    found: list[str] = []
    if conn.dialect == "sqlite":
        quick = await conn.fetchval("PRAGMA quick_check")
        if quick != "ok":
            found.append(f"SQLite quick_check: {quick}")
        for row in await conn.fetchall("PRAGMA foreign_key_check"):
            found.append(f"foreign key: a row of {row[0]} points at a missing row of {row[2]}")
        triggers = await conn.fetchall("SELECT name FROM sqlite_master WHERE type = 'trigger'")
    else:
        # PostgreSQL checks its pages and enforces foreign keys itself; a disabled trigger is the
        # one way around the ledger's guards, so look for that.
        triggers = await conn.fetchall(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = CAST('ledger' AS regclass) "
            "AND NOT tgisinternal AND tgenabled <> 'D'"
        )
    missing = TRIGGERS[conn.dialect] - {r[0] for r in triggers}
    if missing:
        found.append(f"the ledger's guard triggers are missing or disabled: {', '.join(sorted(missing))}")
    version = await _version(conn)
    if version != latest_version(conn.dialect):
        found.append(f"schema version {version} is not this release's")
    return found


async def _gather(conn: Conn) -> tuple[list[str], list, list, list]:
    found = await _integrity(conn)
    ledger_sums = await conn.fetchall(
        "SELECT bucket, day, "
        "CAST(sum(CASE WHEN entry = 'grant' THEN 0 ELSE images END) AS BIGINT), "
        "CAST(sum(micros) AS BIGINT), "
        "CAST(sum(CASE WHEN entry = 'grant' THEN images ELSE 0 END) AS BIGINT) "
        "FROM ledger GROUP BY bucket, day",
    )
    cached = await conn.fetchall("SELECT bucket, day, images, micros, granted FROM balances")
    per_job = await conn.fetchall(
        "SELECT j.id, j.status, j.reservation, j.images_requested, j.images_delivered, j.actual_micros, "
        "j.deadline_at, j.charged_to, j.overrun_micros, l.bucket, l.account, "
        f"{_entries('reserve')}, {_entries('settle')}, {_entries('refund')}, {_entries('reversal')}, "
        "CAST(sum(l.images) AS BIGINT), CAST(sum(l.micros) AS BIGINT) "
        "FROM jobs j LEFT JOIN ledger l ON l.job_id = j.id "
        "GROUP BY j.id, l.bucket, l.account ORDER BY j.id",
    )
    return found, ledger_sums, cached, per_job


async def check(db: Database, *, now: datetime | None = None, grace: timedelta = DEFAULT_GRACE) -> list[str]:
    """Problems with the database; an empty list means the books balance.

    - the file passes SQLite's quick_check and foreign_key_check, at the schema version we know,
      and the ledger's guard triggers are in place (and, on PostgreSQL, enabled);
    - every cached balance equals the sum of its ledger rows, and none is negative;
    - every job's ledger agrees with its status: refused jobs have no rows, unfinished jobs one
      open reservation per bucket, finished jobs exactly one settle or refund per bucket; failed
      and reversed jobs net to zero; settled jobs net to images delivered and the actual cost less
      its overrun (which is never charged);
    - no unfinished job holds its reservation past its deadline (plus ``grace``).
    """
    return await db.read(problems, utc(now), grace)


async def problems(conn: Conn, now: datetime, grace: timedelta = DEFAULT_GRACE) -> list[str]:
    """``check`` inside a caller's transaction (``db copy`` checks its target before it commits)."""
    found, ledger_sums, cached, per_job = await _gather(conn)
    derived = {(r[0], r[1]): tuple(r)[2:] for r in ledger_sums}
    stored = {(r[0], r[1]): tuple(r)[2:] for r in cached}
    for key in sorted(derived.keys() | stored.keys()):
        want, have = derived.get(key, (0, 0, 0)), stored.get(key, (0, 0, 0))
        if want != have:
            found.append(
                f"balance {key[0]} @ {key[1]}: cached (images, micros, granted) {have}, "
                f"but the ledger sums to {want}"
            )
        if want[0] < 0 or want[1] < 0:
            found.append(f"balance {key[0]} @ {key[1]} is negative: {want}")

    jobs: dict[str, list] = {}
    for row in per_job:
        jobs.setdefault(row[0], []).append(row)
    for job_id, rows in jobs.items():
        found.extend(_job_problems(job_id, rows, now, grace))
    return found


def _job_problems(job_id: str, rows: list, now: datetime, grace: timedelta) -> list[str]:
    _, status, reservation, requested, delivered, actual, deadline_at, charged_to, overrun = rows[0][:9]
    buckets = [r for r in rows if r[9] is not None]
    out: list[str] = []

    def bad(text: str) -> None:
        out.append(f"job {job_id} ({status}, reservation {reservation}): {text}")

    # Refused at the door: nothing reserved. Refused later (by the provider): refunded like a failure.
    if reservation == "none":
        if status != "refused" or buckets:
            bad("only a job refused before dispatch has no reservation, and it has no ledger rows")
        return out
    if not buckets:
        bad("no reservation in the ledger")
        return out
    expected_state = {
        "queued": ("open",),
        "running": ("open",),
        "succeeded": ("settled", "reversed"),
        "failed": ("refunded",),
        "refused": ("refunded",),
        "cancelled": ("refunded",),
    }[status]
    if reservation not in expected_state:
        bad(f"reservation should be {' or '.join(expected_state)}")
    for (
        *_,
        bucket,
        account,
        reserves,
        settles,
        refunds,
        reversals,
        images,
        micros,
    ) in buckets:
        if reserves != 1:
            bad(f"{reserves} reservations in {bucket}")
        closes = settles + refunds
        if status in ("queued", "running"):
            if closes or reversals:
                bad(f"unfinished but already closed in {bucket}")
        elif closes != 1:
            bad(f"{closes} settle/refund rows in {bucket}, expected exactly one")
        if status == "succeeded" and refunds:
            bad(f"succeeded but refunded in {bucket}")
        if status in FAILURES and settles:
            bad(f"{status} but settled in {bucket}")
        if status in FAILURES or reservation == "reversed":
            if images or micros:
                bad(f"should cost nothing, but {bucket} keeps {images} image(s), {micros} micros")
        elif reservation == "settled":
            if charged_to == "sandbox":  # cost nothing and used no free image
                if images or micros:
                    bad(f"a sandbox job, but {bucket} keeps {images} image(s), {micros} micros")
            elif account == "free" and images != min(delivered, requested):
                bad(f"{bucket} keeps {images} image(s) for {delivered} delivered")
            if account != "free" and micros != actual - overrun:
                bad(f"{bucket} keeps {micros} micros for an actual cost of {actual} ({overrun} overrun)")
    if status in ("queued", "running") and now > from_db(deadline_at) + grace:
        bad(f"still holds its reservation, past its deadline {deadline_at}")
    return out
