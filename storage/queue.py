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

from storage import jobs as _jobs
from storage import ledger
from storage import settle as money
from storage.capacity import ProviderCapacity, read_capacities
from storage.conn import Conn
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
    (recorded as refused), QueueFull or DatabaseFull (the disk has no room to see the job through;
    nothing recorded). ``pinned_to``: only that worker may run
    it (a CLI process waiting for its own job); it holds the job's lease while the job waits."""
    if not routes:
        raise ValueError("a queued job needs at least one route")
    await db.ensure_room()  # DatabaseFull: nothing recorded, so nothing left reserved
    now = utc(now)
    until = now + timedelta(seconds=lease_s) if pinned_to else None
    return await money.accept_with(db, job, now, _enqueue, routes, delivery, pinned_to, until, max_queue)


# --- claim -------------------------------------------------------------------------------------


async def _counts(conn: Conn, column: str, where: str = "status = 'running'") -> dict[Any, int]:
    # ``column`` and ``where`` are fixed text below, never user text.
    rows = await conn.fetchall(
        f"SELECT {column} AS k, count(*) AS n FROM jobs WHERE {where} GROUP BY {column}"
    )
    return {r["k"]: r["n"] for r in rows}


# A job handed back with its provider task still holds that provider's slot: the task is open there
# until it is polled to its end, so a new submit in its place would be one task too many.
_HOLDING_A_SLOT = "status = 'running' OR (status = 'queued' AND task_id IS NOT NULL)"


def _pick_route(
    job: _jobs.Job, running: dict[Any, int], caps: Mapping[str, ProviderCapacity], now: datetime
) -> RouteChoice | None:
    if job.task_id and job.provider:  # a task to resume: only its own provider can answer for it
        # It holds its slot already (see _HOLDING_A_SLOT); only a paused provider keeps it waiting.
        cap = caps.get(job.provider)
        if cap is None or cap.paused(now):
            return None
        return next((r for r in job.routes if r.provider == job.provider), None)
    for route in (r for r in job.routes if r.provider not in job.tried):
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
    by_provider = await _counts(conn, "provider", _HOLDING_A_SLOT)
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
            if not job.task_id:  # a resumed task kept its slot; a new one takes one
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
        "attempts = attempts + 1, not_before = NULL, waiting_reason = NULL, sending_at = NULL, "
        "updated_at = ? WHERE id = ?",
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
