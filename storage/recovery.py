"""Recovery: what a dead process left behind is taken over by a live one (see reap)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from storage import jobs as _jobs
from storage import settle
from storage.conn import Conn
from storage.db import Database
from storage.periods import to_db, utc
from storage.queue import QUEUE_CHANNEL

MAX_UNSENT_ATTEMPTS = 3  # claims of a job whose worker died before sending it, then it is refunded


@dataclass(frozen=True)
class Reaped:
    requeued: list[str]  # running jobs of a dead worker, handed back to be resumed by task id
    refunded: list[str]  # jobs that cannot go on: refunded (their members are told via ``finish``)
    finish: list[_jobs.Job]  # finished jobs nobody has told yet; now leased to the reaper to tell


def _verdict(job: _jobs.Job, resumable: frozenset[str], lease_s: float, now: datetime) -> str | None:
    """What becomes of an unfinished job: None (leave it), "resume" (back in line to be polled
    by its task id), or the error it is refunded with."""
    lapsed = job.lease_expires_at is not None and job.lease_expires_at < now
    overdue = job.deadline_at < now
    if job.pinned_to:  # a CLI job: nobody else can give its images to the command waiting for them
        if lapsed:
            return "interrupted: the command that started this job stopped before it finished"
        return (
            "timeout: the job waited in the queue past its deadline"
            if overdue and job.status == "queued"
            else None
        )
    if job.status == "queued":
        if not job.routes:  # queued before the queue kept routes (an older release): cannot run
            return "interrupted: the bot was upgraded before this job could run"
        if job.task_id and job.provider in resumable:
            return None  # handed back with its task: the next claim gives it a last look
        if not overdue:
            return None
        busy = (job.waiting_reason or "").partition("provider_busy:")[2]
        return f"provider_busy: {busy}" if busy else "timeout: the job waited in the queue past its deadline"
    # Running. A live worker enforces the deadline itself; one stuck a full lease past it is not live.
    if not lapsed and not job.deadline_at < now - timedelta(seconds=lease_s):
        return None
    if not job.task_id and job.sending_at is None:
        if job.attempts >= MAX_UNSENT_ATTEMPTS:  # its workers keep dying before they send it
            return "interrupted: the bot stopped every time it started this job, before sending it"
        return "resume"  # claimed but never sent: no provider has seen it, so back in line it goes
    if job.task_id and job.provider in resumable:
        return "resume"  # even past its deadline: a task that finished meanwhile is worth one look
    if job.task_id:
        return "timeout: the provider did not finish this job before its deadline"
    return (
        "interrupted: the bot restarted before the provider answered for this job; it was not sent "
        "again, since it may already have started"
    )


async def _reap(
    conn: Conn, worker: str, resumable: frozenset[str], lease_s: float, limit: int, tell: bool, now: datetime
) -> Reaped:
    at = to_db(now)
    requeued, refunded = [], []
    rows = await conn.fetchall(
        "SELECT * FROM jobs WHERE status IN ('queued', 'running') AND ("
        " (lease_expires_at IS NOT NULL AND lease_expires_at < :now) OR deadline_at < :now "
        " OR (status = 'queued' AND routes = '[]')) "
        "ORDER BY created_at LIMIT :n",
        {"now": at, "n": limit},
    )
    for row in rows:
        job = _jobs.Job.from_row(row)
        verdict = _verdict(job, frozenset(resumable), lease_s, now)
        if verdict is None:
            continue
        if verdict == "resume":
            # Never sent: only while it still is (a slow worker past its lease may be sending it
            # right now; read committed on PostgreSQL does not hold the row since the SELECT).
            unsent = "" if job.task_id else " AND task_id IS NULL AND sending_at IS NULL"
            changed = await conn.execute(
                "UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL, "
                f"updated_at = :now WHERE id = :id AND status = 'running'{unsent}",
                {"now": at, "id": job.id},
            )
            if changed:
                requeued.append(job.id)
        elif await settle._refund_open(conn, job, "failed", verdict, now):
            refunded.append(job.id)
    if requeued:
        conn.notify(QUEUE_CHANNEL)
    if not tell:  # this process cannot reach Discord (a CLI): leave the telling to one that can
        return Reaped(requeued, refunded, [])
    # Finished but never told (the worker died between settling and posting, or someone else
    # cancelled a queued job): lease them to this process, which tells the member.
    untold = await conn.fetchall(
        "SELECT * FROM jobs WHERE delivered_at IS NULL AND delivery IS NOT NULL "
        "AND status IN ('succeeded', 'failed', 'refused', 'cancelled') "
        "AND (lease_owner IS NULL OR lease_expires_at < :now) ORDER BY created_at LIMIT :n",
        {"now": at, "n": limit},
    )
    until = to_db(now + timedelta(seconds=lease_s))
    await conn.executemany(
        "UPDATE jobs SET lease_owner = ?, lease_expires_at = ? WHERE id = ?",
        [(worker, until, r["id"]) for r in untold],
    )
    finish = [replace(_jobs.Job.from_row(r), lease_owner=worker) for r in untold]
    return Reaped(requeued, refunded, finish)


async def reap(
    db: Database,
    worker: str,
    *,
    resumable: Iterable[str],
    lease_s: float = 30.0,
    limit: int = 200,
    tell: bool = True,
    now: datetime | None = None,
) -> Reaped:
    """Take over what dead workers left: a running job whose lease expired goes back to the queue
    when its provider task can be polled again (``resumable`` providers, with a task id, before its
    deadline), else it is refunded; a CLI job whose command died, and a job that waited past its
    deadline, are refunded. Finished jobs whose members were never told are leased to ``worker``
    (only when it can ``tell`` them: a process with a face)."""
    return await db.write(_reap, worker, frozenset(resumable), lease_s, limit, tell, utc(now))
