"""Every step a worker takes on a job it holds, each checked against its lease in the same
transaction: remember the task id, renew, give the job back (busy provider, failover, stopping),
settle or refund it, and record that its member was told. A worker whose lease was taken over (it
stalled) or whose job was cancelled meanwhile finds the check false and writes nothing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta

from storage import capacity as capacity_store
from storage import jobs as _jobs
from storage import settle as money
from storage.conn import Conn, placeholders
from storage.db import Database
from storage.periods import to_db, utc
from storage.queue import QUEUE_CHANNEL, Rule, _dumps

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


async def _sending(conn: Conn, job_id: str, worker: str, now: datetime) -> bool:
    changed = await conn.execute(
        f"UPDATE jobs SET sending_at = :now, updated_at = :now WHERE {_MINE}",
        {"now": to_db(now), "id": job_id, "w": worker},
    )
    return changed == 1


async def sending(db: Database, job_id: str, worker: str, *, now: datetime | None = None) -> bool:
    """The job is about to be sent to its provider: from now on a dead worker's job may exist at the
    provider, so recovery no longer puts it back in line as never sent. False: no longer ours."""
    return await db.write(_sending, job_id, worker, utc(now))


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


STOPPED_MID_SEND = (
    "interrupted: the bot stopped before the provider answered for this job; it was not sent again, "
    "since it may already have started"
)


async def _release(conn: Conn, worker: str, job_ids: Sequence[str], now: datetime) -> list[str]:
    given = []
    for job_id in job_ids:
        row = await conn.fetchone(f"SELECT * FROM jobs WHERE {_MINE}", {"id": job_id, "w": worker})
        if row is None:
            continue
        job = _jobs.Job.from_row(row)
        if not job.task_id and job.sending_at is not None:
            # Being sent as the worker stopped, and no task id recorded: the provider may have it,
            # and sending it again could bill it twice. Refunded (its member is told by a reaper).
            await money._refund_open(conn, job, "failed", STOPPED_MID_SEND, now)
            conn.notify(QUEUE_CHANNEL)
            continue
        await _requeue(conn, job_id, worker, None, None, None, bool(job.task_id), now)
        given.append(job_id)
    return given


async def release(
    db: Database, worker: str, job_ids: Sequence[str], *, now: datetime | None = None
) -> list[str]:
    """A stopping worker hands jobs back: each goes back to the queue (a job with a task id keeps
    it, so the next worker resumes polling instead of submitting again), except one that was being
    sent with no task id recorded, which is refunded. Returns those given back to the queue."""
    return await db.write(_release, worker, list(job_ids), utc(now))
