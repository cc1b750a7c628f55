"""The durable job queue: the one place a job waits, shared by every process on the database.

A job is a row. ``enqueue`` records it as ``queued`` with its reservation (one transaction).
``claim`` hands a worker the next jobs in fair order together with a provider slot, under a lease
(``lease_owner``, ``lease_expires_at``) the worker renews while it works. Every step that settles,
refunds or gives a job back checks, in its own transaction, that the job is still running under
that worker's lease, so a worker that lost its lease (it stalled, or an admin cancelled the job)
can never settle, refund or deliver it twice. ``reap`` finds what a dead worker left behind.

Fair order: each member's queued jobs are numbered 1, 2, 3 ... by age ("turn"); jobs are served by
turn, then by age. A member's second job waits behind every other member's first. Per-member
running jobs and per-provider running jobs are capped at claim time; a provider's cap is the limit
learned from its answers (``provider_state``, see bot/capacity.py) under the configured ceiling.

Concurrency: claims take the ``queue`` lock (SQLite: BEGIN IMMEDIATE serialises every writer;
PostgreSQL: an advisory transaction lock), so two workers never grant the same slot; candidate
rows are read ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so a claim never waits behind a job another
transaction is changing (a cancel). A claim hands out many jobs at once, so the lock is held once
per batch, not once per job.

Notifications: ``kontext_queue`` when there is new work to claim, ``kontext_cancel`` (payload: the
job id) when an unfinished job was cancelled or refunded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from storage import capacity as capacity_store
from storage import jobs as _jobs
from storage import ledger
from storage import settle as money
from storage.capacity import ProviderCapacity, read_capacities
from storage.conn import Conn, placeholders
from storage.db import Database
from storage.errors import JobNotFound, QueueFull
from storage.jobs import CANCEL_CHANNEL, RouteChoice
from storage.periods import from_db, to_db, utc

Rule = Callable[..., ProviderCapacity]  # (state, open_now=..., waiting=...) -> state
QUEUE_CHANNEL = "kontext_queue"
PAGE = 100  # candidates read per step of a claim

FAIR_ORDER = (
    "SELECT j.* FROM jobs j JOIN ("
    " SELECT id, ROW_NUMBER() OVER (PARTITION BY coalesce(user_id, -1) ORDER BY created_at, id) AS turn"
    " FROM jobs WHERE status = 'queued') q ON q.id = j.id "
)


@dataclass(frozen=True)
class Claimed:
    jobs: list[_jobs.Job]
    next_at: datetime | None  # the earliest moment a job now held back (not_before) may be claimed


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# --- enqueue -----------------------------------------------------------------------------------


async def _enqueue(
    conn: Conn,
    job: _jobs.NewJob,
    job_id: str,
    now: datetime,
    routes: Sequence[RouteChoice],
    delivery: Mapping[str, Any] | None,
    pinned_to: str | None,
    lease_until: datetime | None,
    max_queue: int,
) -> Any:
    waiting = await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'queued'")
    if waiting >= max_queue:
        raise QueueFull(waiting=waiting)
    decision = await money._accept(conn, job, job_id, now)
    if not isinstance(decision, ledger.Refusal):
        await conn.execute(
            "UPDATE jobs SET routes = :routes, delivery = :delivery, pinned_to = :pin, "
            "lease_owner = :pin, lease_expires_at = :until, meta = :meta WHERE id = :id",
            {
                "routes": _dumps([r.to_json() for r in routes]),
                "delivery": None if delivery is None else _dumps(dict(delivery)),
                "pin": pinned_to,
                "until": None if lease_until is None else to_db(lease_until),
                # The free images left once this job is paid, for the result to show.
                "meta": _dumps({**job.meta, "free_remaining": decision.free_remaining}),
                "id": job_id,
            },
        )
        conn.notify(QUEUE_CHANNEL)
    return decision


async def enqueue(
    db: Database,
    job: _jobs.NewJob,
    *,
    routes: Sequence[RouteChoice],
    delivery: Mapping[str, Any] | None = None,
    pinned_to: str | None = None,
    lease_s: float = 30.0,
    max_queue: int = 500,
    now: datetime | None = None,
) -> money.Reservation:
    """Record the job, reserve its cost and queue it, in one transaction. Raises QuotaRefused
    (recorded as refused) or QueueFull (nothing recorded). ``pinned_to``: only that worker may run
    it (a CLI process waiting for its own job); it holds the job's lease while the job waits."""
    if not routes:
        raise ValueError("a queued job needs at least one route")
    now = utc(now)
    until = now + timedelta(seconds=lease_s) if pinned_to else None
    return await money.accept_with(db, job, now, _enqueue, routes, delivery, pinned_to, until, max_queue)


# --- claim -------------------------------------------------------------------------------------


async def _counts(conn: Conn, column: str) -> dict[Any, int]:
    # ``column`` is one of two fixed names below, never user text.
    rows = await conn.fetchall(
        f"SELECT {column} AS k, count(*) AS n FROM jobs WHERE status = 'running' GROUP BY {column}"
    )
    return {r["k"]: r["n"] for r in rows}


def _pick_route(
    job: _jobs.Job, running: dict[Any, int], caps: Mapping[str, ProviderCapacity], now: datetime
) -> RouteChoice | None:
    if job.task_id and job.provider:  # a task to resume: only its own provider can answer for it
        choices = [r for r in job.routes if r.provider == job.provider]
    else:
        choices = [r for r in job.routes if r.provider not in job.tried]
    for route in choices:
        cap = caps.get(route.provider)
        if cap is None or cap.paused(now):
            continue
        if running.get(route.provider, 0) < cap.limit:
            return route
    return None


async def _claim(
    conn: Conn,
    worker: str,
    max_jobs: int,
    per_user: int,
    ceilings: Mapping[str, int],
    lease_s: float,
    pinned_only: bool,
    now: datetime,
) -> Claimed:
    await conn.lock("queue")
    by_provider = await _counts(conn, "provider")
    by_user = await _counts(conn, "user_id")
    caps = await read_capacities(conn, ceilings)
    pin = "j.pinned_to = :w" if pinned_only else "(j.pinned_to IS NULL OR j.pinned_to = :w)"
    sql = (
        FAIR_ORDER + f"WHERE (j.not_before IS NULL OR j.not_before <= :now) AND {pin} "
        "ORDER BY q.turn, j.created_at, j.id LIMIT :n OFFSET :o"
    )
    if conn.dialect == "postgres":
        sql += " FOR UPDATE OF j SKIP LOCKED"
    granted: list[tuple[_jobs.Job, RouteChoice]] = []
    offset = 0
    while len(granted) < max_jobs:
        rows = await conn.fetchall(sql, {"now": to_db(now), "w": worker, "n": PAGE, "o": offset})
        for row in rows:
            job = _jobs.Job.from_row(row)
            if job.user_id is not None and by_user.get(job.user_id, 0) >= per_user:
                continue
            route = _pick_route(job, by_provider, caps, now)
            if route is None:
                continue
            granted.append((job, route))
            by_provider[route.provider] = by_provider.get(route.provider, 0) + 1
            if job.user_id is not None:
                by_user[job.user_id] = by_user.get(job.user_id, 0) + 1
            if len(granted) >= max_jobs:
                break
        if len(rows) < PAGE:
            break
        offset += PAGE
    until, at = to_db(now + timedelta(seconds=lease_s)), to_db(now)
    await conn.executemany(
        "UPDATE jobs SET status = 'running', provider = ?, provider_model = ?, price_micros = ?, "
        "lease_owner = ?, lease_expires_at = ?, run_started_at = ?, started_at = coalesce(started_at, ?), "
        "attempts = attempts + 1, not_before = NULL, waiting_reason = NULL, updated_at = ? WHERE id = ?",
        [
            (r.provider, r.provider_model, r.price_micros, worker, until, at, at, at, job.id)
            for job, r in granted
        ],
    )
    held_back = from_db(
        await conn.fetchval(
            "SELECT min(not_before) FROM jobs WHERE status = 'queued' AND not_before > :now",
            {"now": to_db(now)},
        )
    )
    # A paused provider resumes on its own: the worker should look again then, not at its idle poll.
    resumes = [c.paused_until for c in caps.values() if c.paused(now)]
    next_at = min([t for t in (held_back, *resumes) if t is not None], default=None)
    claimed = [
        replace(
            job,
            status="running",
            provider=r.provider,
            provider_model=r.provider_model,
            price_micros=r.price_micros,
            lease_owner=worker,
            attempts=job.attempts + 1,
            run_started_at=now,
            started_at=job.started_at or now,
        )
        for job, r in granted
    ]
    return Claimed(claimed, next_at)


async def claim(
    db: Database,
    worker: str,
    *,
    max_jobs: int,
    per_user: int,
    ceilings: Mapping[str, int],
    lease_s: float = 30.0,
    pinned_only: bool = False,
    now: datetime | None = None,
) -> Claimed:
    """Up to ``max_jobs`` queued jobs for ``worker``, each with a granted provider slot, in fair
    order. ``ceilings``: provider -> configured max_concurrency, for the providers this worker can
    run (a job whose routes are all elsewhere or all at capacity stays queued)."""
    if max_jobs <= 0:
        return Claimed([], None)
    return await db.write(_claim, worker, max_jobs, per_user, dict(ceilings), lease_s, pinned_only, utc(now))


# --- while a job runs --------------------------------------------------------------------------

_MINE = "id = :id AND lease_owner = :w AND status = 'running'"


async def _set_task(conn: Conn, job_id: str, worker: str, task_id: str, now: datetime) -> bool:
    return (
        await conn.execute(
            f"UPDATE jobs SET task_id = :task, updated_at = :now WHERE {_MINE}",
            {"task": task_id, "now": to_db(now), "id": job_id, "w": worker},
        )
        == 1
    )


async def set_task(
    db: Database, job_id: str, worker: str, task_id: str, *, now: datetime | None = None
) -> bool:
    """Remember the provider's task id (what makes the job resumable). False: no longer ours."""
    return await db.write(_set_task, job_id, worker, task_id, utc(now))


async def _renew(conn: Conn, worker: str, job_ids: list[str], until: datetime) -> dict[str, str]:
    if not job_ids:
        return {}
    marks = placeholders(job_ids)
    await conn.execute(
        f"UPDATE jobs SET lease_expires_at = ? WHERE lease_owner = ? AND id IN ({marks})",
        (to_db(until), worker, *job_ids),
    )
    rows = await conn.fetchall(
        f"SELECT id, status FROM jobs WHERE lease_owner = ? AND id IN ({marks})", (worker, *job_ids)
    )
    return {r["id"]: r["status"] for r in rows}


async def renew(
    db: Database, worker: str, job_ids: Sequence[str], *, lease_s: float, now: datetime | None = None
) -> dict[str, str]:
    """Extend ``worker``'s leases on ``job_ids``; returns job id -> status of those it still holds
    (a job missing from the answer was taken over; a finished status means someone else ended it)."""
    return await db.write(_renew, worker, list(job_ids), utc(now) + timedelta(seconds=lease_s))


async def _requeue(
    conn: Conn,
    job_id: str,
    worker: str,
    tried: str | None,
    not_before: datetime | None,
    reason: str | None,
    keep_task: bool,
    now: datetime,
) -> bool:
    row = await conn.fetchone(f"SELECT tried FROM jobs WHERE {_MINE}", {"id": job_id, "w": worker})
    if row is None:
        return False
    done = json.loads(row["tried"])
    if tried and tried not in done:
        done.append(tried)
    # Fixed text chosen here, never from outside: a handed-back task keeps its provider and id.
    keep = "" if keep_task else "provider = NULL, provider_model = NULL, task_id = NULL, "
    await conn.execute(
        f"UPDATE jobs SET status = 'queued', {keep}"
        "lease_owner = pinned_to, lease_expires_at = CASE WHEN pinned_to IS NULL THEN NULL "
        "ELSE lease_expires_at END, tried = :tried, not_before = :nb, waiting_reason = :why, "
        "updated_at = :now WHERE id = :id",
        {
            "tried": _dumps(done),
            "nb": None if not_before is None else to_db(not_before),
            "why": reason,
            "now": to_db(now),
            "id": job_id,
        },
    )
    conn.notify(QUEUE_CHANNEL)
    return True


async def _requeue_busy(
    conn: Conn, job_id: str, worker: str, ceiling: int, rule: Rule, now: datetime
) -> bool:
    row = await conn.fetchone(f"SELECT provider FROM jobs WHERE {_MINE}", {"id": job_id, "w": worker})
    if row is None:
        return False
    # In the same transaction as the requeue, while this job still counts as open there: busy
    # answers arriving together then walk the limit down one by one instead of all seeing the same.
    await capacity_store._adjust(conn, row["provider"], ceiling, rule, now)
    return await _requeue(conn, job_id, worker, None, None, f"provider_busy:{row['provider']}", False, now)


async def requeue_busy(
    db: Database, job_id: str, worker: str, *, ceiling: int, rule: Rule, now: datetime | None = None
) -> bool:
    """The provider said it was busy: apply ``rule`` to its learned capacity (as
    storage.capacity.adjust_capacity does) and put the job back in line, its place kept, in one
    transaction. False: the job is no longer this worker's."""
    return await db.write(_requeue_busy, job_id, worker, ceiling, rule, utc(now))


async def requeue(
    db: Database,
    job_id: str,
    worker: str,
    *,
    tried: str | None = None,
    not_before: datetime | None = None,
    reason: str | None = None,
    keep_task: bool = False,
    now: datetime | None = None,
) -> bool:
    """Give a running job back to the queue, keeping its place (its age): the provider was busy
    (``reason`` "provider_busy"), it failed over (``tried`` = the provider that failed), or this
    worker is stopping (``keep_task``: resume the same provider task). False: no longer ours."""
    return await db.write(_requeue, job_id, worker, tried, not_before, reason, keep_task, utc(now))


# --- finishing ---------------------------------------------------------------------------------


async def _settle(
    conn: Conn,
    job_id: str,
    worker: str,
    images: int,
    actual: int | None,
    refs: list[str],
    now: datetime,
) -> money.Settlement | None:
    if await conn.fetchone(f"SELECT id FROM jobs WHERE {_MINE}", {"id": job_id, "w": worker}) is None:
        return None
    settlement = await money._complete(conn, job_id, images, actual, [], now)
    await conn.execute(
        "UPDATE jobs SET result_refs = :refs WHERE id = :id", {"refs": _dumps(refs), "id": job_id}
    )
    conn.notify(QUEUE_CHANNEL)  # a provider slot came free
    return settlement


async def settle(
    db: Database,
    job_id: str,
    worker: str,
    *,
    images_delivered: int,
    actual_micros: int | None,
    result_refs: Sequence[str] = (),
    now: datetime | None = None,
) -> money.Settlement | None:
    """The job succeeded: settle it (see storage.complete_job) if it is still running under
    ``worker``'s lease; ``result_refs`` are its stored images, for delivery after a crash.
    None: the job is no longer this worker's (cancelled, refunded, taken over) — nothing changed.
    The worker keeps the lease until ``delivered``."""
    return await db.write(
        _settle, job_id, worker, images_delivered, actual_micros, list(result_refs), utc(now)
    )


async def _fail(conn: Conn, job_id: str, worker: str, status: str, error: str | None, now: datetime) -> bool:
    row = await conn.fetchone(f"SELECT * FROM jobs WHERE {_MINE}", {"id": job_id, "w": worker})
    if row is None:
        return False
    done = await money._refund_open(conn, _jobs.Job.from_row(row), status, error, now)
    conn.notify(QUEUE_CHANNEL)  # a provider slot came free
    return done


async def fail(
    db: Database, job_id: str, worker: str, *, status: str, error: str | None, now: datetime | None = None
) -> bool:
    """The job ended without a result: refund it, if still running under ``worker``'s lease."""
    if status not in _jobs.FAILURES:
        raise ValueError(f"status must be one of {', '.join(_jobs.FAILURES)}")
    return await db.write(_fail, job_id, worker, status, error, utc(now))


async def _delivered(
    conn: Conn, job_id: str, channel_id: int | None, message_id: int | None, now: datetime
) -> None:
    await conn.execute(
        "UPDATE jobs SET delivered_at = :now, lease_owner = NULL, lease_expires_at = NULL, "
        "posted_channel_id = coalesce(:c, posted_channel_id), "
        "posted_message_id = coalesce(:m, posted_message_id), updated_at = :now WHERE id = :id",
        {"now": to_db(now), "c": channel_id, "m": message_id, "id": job_id},
    )


async def delivered(
    db: Database,
    job_id: str,
    *,
    channel_id: int | None = None,
    message_id: int | None = None,
    now: datetime | None = None,
) -> None:
    """The member has been shown how the job ended (its images, or why not); the lease is let go."""
    await db.write(_delivered, job_id, channel_id, message_id, utc(now))


async def _cancel(conn: Conn, job_id: str, actor: int | None, error: str, now: datetime) -> _jobs.Job | None:
    row = await conn.fetchone("SELECT * FROM jobs WHERE id = :id", {"id": job_id})
    if row is None:
        raise JobNotFound(job_id)
    job = _jobs.Job.from_row(row)
    if not await money._refund_open(conn, job, "cancelled", error, now, actor):
        return None
    conn.notify(CANCEL_CHANNEL, job_id)
    return job


async def cancel(
    db: Database, job_id: str, *, error: str, actor: int | None = None, now: datetime | None = None
) -> _jobs.Job | None:
    """Cancel an unfinished job and refund it (``error`` says why, as the job's record keeps it);
    the worker running it hears of it and stops, and nothing is settled or delivered for it
    afterwards. Returns the job as it was; None when it had already finished."""
    return await db.write(_cancel, job_id, actor, error, utc(now))


async def _release(conn: Conn, worker: str, job_ids: Sequence[str], now: datetime) -> list[str]:
    given = []
    for job_id in job_ids:
        row = await conn.fetchone(f"SELECT task_id FROM jobs WHERE {_MINE}", {"id": job_id, "w": worker})
        if row is None:
            continue
        await _requeue(conn, job_id, worker, None, None, None, bool(row["task_id"]), now)
        given.append(job_id)
    return given


async def release(
    db: Database, worker: str, job_ids: Sequence[str], *, now: datetime | None = None
) -> list[str]:
    """A stopping worker hands jobs back: each goes back to the queue (a job with a task id keeps
    it, so the next worker resumes polling instead of submitting again). Returns those given back."""
    return await db.write(_release, worker, list(job_ids), utc(now))
