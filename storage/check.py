"""`kontext-bot db check`: prove the books balance. Each problem found is one line of text."""

from __future__ import annotations

from datetime import datetime, timedelta

from storage.db import MIGRATIONS_DIR, Conn, Database, fetchall, fetchone, migration_files
from storage.periods import from_db, utc

FAILURES = ("failed", "refused", "cancelled")
DEFAULT_GRACE = timedelta(minutes=5)  # the job service fails overdue jobs; give it time to


def _gather(conn: Conn) -> tuple[list[str], list, list, list]:
    problems: list[str] = []
    (quick,) = fetchone(conn, "PRAGMA quick_check")
    if quick != "ok":
        problems.append(f"SQLite quick_check: {quick}")
    for row in fetchall(conn, "PRAGMA foreign_key_check"):
        problems.append(f"foreign key: a row of {row[0]} points at a missing row of {row[2]}")
    (version,) = fetchone(conn, "PRAGMA user_version")
    if version != len(migration_files(MIGRATIONS_DIR)):
        problems.append(f"schema version {version} is not this release's")
    ledger_sums = fetchall(
        conn,
        "SELECT bucket, day, "
        "sum(CASE WHEN entry = 'grant' THEN 0 ELSE images END), sum(micros), "
        "sum(CASE WHEN entry = 'grant' THEN images ELSE 0 END) "
        "FROM ledger GROUP BY bucket, day",
    )
    cached = fetchall(conn, "SELECT bucket, day, images, micros, granted FROM balances")
    per_job = fetchall(
        conn,
        "SELECT j.id, j.status, j.reservation, j.images_requested, j.images_delivered, j.actual_micros, "
        "j.deadline_at, l.bucket, l.account, "
        "sum(l.entry = 'reserve'), sum(l.entry = 'settle'), sum(l.entry = 'refund'), "
        "sum(l.entry = 'reversal'), sum(l.images), sum(l.micros) "
        "FROM jobs j LEFT JOIN ledger l ON l.job_id = j.id GROUP BY j.id, l.bucket ORDER BY j.id",
    )
    return problems, ledger_sums, cached, per_job


async def check(db: Database, *, now: datetime | None = None, grace: timedelta = DEFAULT_GRACE) -> list[str]:
    """Problems with the database; an empty list means the books balance.

    - the file passes SQLite's quick_check and foreign_key_check, at the schema version we know;
    - every cached balance equals the sum of its ledger rows, and none is negative;
    - every job's ledger agrees with its status: refused jobs have no rows, unfinished jobs one
      open reservation per bucket, finished jobs exactly one settle or refund per bucket; failed
      and reversed jobs net to zero; settled jobs net to images delivered and the actual cost;
    - no unfinished job holds its reservation past its deadline (plus ``grace``).
    """
    now = utc(now)
    problems, ledger_sums, cached, per_job = await db.read(_gather)
    derived = {(r[0], r[1]): tuple(r)[2:] for r in ledger_sums}
    stored = {(r[0], r[1]): tuple(r)[2:] for r in cached}
    for key in sorted(derived.keys() | stored.keys()):
        want, have = derived.get(key, (0, 0, 0)), stored.get(key, (0, 0, 0))
        if want != have:
            problems.append(
                f"balance {key[0]} @ {key[1]}: cached (images, micros, granted) {have}, "
                f"but the ledger sums to {want}"
            )
        if want[0] < 0 or want[1] < 0:
            problems.append(f"balance {key[0]} @ {key[1]} is negative: {want}")

    jobs: dict[str, list] = {}
    for row in per_job:
        jobs.setdefault(row[0], []).append(row)
    for job_id, rows in jobs.items():
        problems.extend(_job_problems(job_id, rows, now, grace))
    return problems


def _job_problems(job_id: str, rows: list, now: datetime, grace: timedelta) -> list[str]:
    _, status, reservation, requested, delivered, actual, deadline_at = rows[0][:7]
    buckets = [r for r in rows if r[7] is not None]
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
        _,
        _,
        _,
        _,
        _,
        _,
        _,
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
            if account == "free" and images != min(delivered, requested):
                bad(f"{bucket} keeps {images} image(s) for {delivered} delivered")
            if account != "free" and micros != actual:
                bad(f"{bucket} keeps {micros} micros for an actual cost of {actual}")
    if status in ("queued", "running") and now > from_db(deadline_at) + grace:
        bad(f"still holds its reservation, past its deadline {deadline_at}")
    return out
