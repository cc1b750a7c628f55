"""A job's money: reserve at acceptance, settle or refund at the end, reverse on an admin refund.

Each operation changes the job and its ledger rows together, in one transaction that first takes
the guild's lock (``conn.lock``), so the check that allows a change and the change itself see no
race on either backend. A reservation is closed exactly once: complete and fail are no-ops on a
finished job and return its earlier outcome, and the ledger's unique index refuses a second close
even if code here were wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from storage import audit, jobs, ledger, rates
from storage.conn import Conn
from storage.db import Database
from storage.errors import IntegrityViolation, QuotaRefused
from storage.jobs import FAILURES, Job, NewJob, lock_job, to_json
from storage.periods import to_db, utc

log = logging.getLogger(__name__)

ID_ATTEMPTS = 5
# How an unfinished job an admin refunded is recorded (its ``error``; the faces tell the member so).
ADMIN_REFUND = "cancelled: Refunded by an admin"


@dataclass(frozen=True)
class Reservation:
    job_id: str
    charged_to: str  # free | team:<name> | guild | operator | sandbox
    images: int  # free images reserved (0 unless charged_to == "free")
    micros: int  # micro-dollars reserved from a budget (0 when free)
    estimate_micros: int  # price x images, whoever pays
    free_remaining: int | None  # the user's free images of this model left after this job
    resets_at: datetime | None  # when the paying quota or budget resets


@dataclass(frozen=True)
class Settlement:
    """How a job ended, money-wise. ``already`` means it had ended before and nothing changed.

    Free images left after a free job: ``reservation.free_remaining + returned_images``.
    """

    job_id: str
    status: str
    charged_to: str | None
    images_delivered: int
    cost_micros: int  # what the job cost (the provider's bill), even when free to the user
    charged_micros: int  # taken from a budget: 0 for free, failed and refunded jobs
    returned_micros: int  # reservation given back
    returned_images: int  # free images given back
    overrun_micros: int  # reported beyond the reservation, and not charged
    already: bool = False


@dataclass(frozen=True)
class Refund:
    job_id: str
    returned_micros: int
    returned_images: int
    already: bool  # True: nothing was left to refund
    cancelled: bool = False  # it had not finished: it was cancelled, and nothing is delivered for it


async def _accept(conn: Conn, job: NewJob, job_id: str, now: datetime) -> ledger.Decision | ledger.Refusal:
    guild_id = job.guild_id or 0
    await conn.lock(f"guild:{guild_id}")
    await rates.check_rate(conn, job.user_id, guild_id, job.roles, now)  # raises: nothing is written
    decision = await ledger.decide(
        conn,
        user_id=job.user_id,
        guild_id=guild_id,
        model=job.model,
        images=job.images,
        price_micros=job.price_micros,
        free_default=job.free_quota,
        roles=job.roles,
        now=now,
    )
    refused = isinstance(decision, ledger.Refusal)
    stamp = to_db(now)  # formatted once: it is a few microseconds each time, on every job
    await conn.execute(
        "INSERT INTO jobs (id, created_at, updated_at, user_id, guild_id, channel_id, model, kind, prompt, "
        "params, meta, input_count, images_requested, price_micros, estimated_micros, status, reservation, "
        "charged_to, team_id, finished_at, deadline_at, error) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            job_id,
            stamp,
            stamp,
            job.user_id,
            guild_id,
            job.channel_id,
            job.model,
            job.kind,
            job.prompt,
            to_json(job.params),
            to_json(job.meta),
            job.input_count,
            job.images,
            job.price_micros,
            job.price_micros * job.images,
            "refused" if refused else "queued",
            "none" if refused else "open",
            None if refused else decision.charged_to,
            None if refused else decision.team_id,
            stamp if refused else None,
            to_db(now + timedelta(seconds=job.deadline_s)),
            f"quota_refused: {decision.summary()}" if refused else None,
        ),
    )
    if not refused:
        await ledger.write_lines(conn, "reserve", decision.lines, stamp, job_id=job_id)
    return decision


async def accept_job(db: Database, job: NewJob, *, now: datetime | None = None) -> Reservation:
    """Record the job and reserve its estimate in one transaction; or record it as refused and
    raise QuotaRefused, whose ``refusal`` says what it would cost, what is left and when it resets.
    A member over a rate limit gets RateLimited, and nothing is recorded (storage/rates.py)."""
    return await accept_with(db, job, utc(now), _accept)


async def accept_with(db: Database, job: NewJob, now: datetime, op: Any, *args: Any) -> Reservation:
    """``accept_job`` with another operation in its place: ``op(conn, job, job_id, now, *args)``
    calls ``_accept`` and returns its decision (the queue records its own columns this way)."""
    if job.images < 1:
        raise ValueError("a job makes at least one image")
    if job.price_micros < 0 or job.free_quota < 0:
        raise ValueError("price and free quota cannot be negative")
    for attempt in range(ID_ATTEMPTS):
        job_id = job.job_id or jobs.new_job_id()
        try:
            decision = await db.write(op, job, job_id, now, *args)
            break
        except IntegrityViolation:
            # Two jobs drew the same id in the same millisecond (the transaction rolled back whole).
            if job.job_id or attempt == ID_ATTEMPTS - 1:
                raise
    if isinstance(decision, ledger.Refusal):
        log.info("job %s refused: %s", job_id, decision.summary())
        raise QuotaRefused(job_id, decision)
    estimate = job.price_micros * job.images
    return Reservation(
        job_id,
        decision.charged_to,
        sum(line.images for line in decision.lines),
        sum(line.micros for line in decision.lines if line.account != "user"),
        estimate,
        decision.free_remaining,
        decision.resets_at,
    )


def _summarise(job: Job, rows: Sequence[tuple[str, ledger.Line]], already: bool) -> Settlement:
    payer = [(e, x) for e, x in rows if x.account != "user"]  # the user bucket mirrors the payer
    given_back = [x for e, x in payer if e in ("settle", "refund", "reversal")]
    return Settlement(
        job.id,
        job.status,
        job.charged_to,
        job.images_delivered,
        job.actual_micros or 0,
        sum(x.micros for _, x in payer),
        -sum(x.micros for x in given_back),
        -sum(x.images for x in given_back),
        # Recorded on the job; 'overrun' ledger rows are those of releases that charged the excess.
        job.overrun_micros + sum(x.micros for e, x in payer if e == "overrun"),
        already,
    )


async def _complete(
    conn: Conn, job_id: str, images_delivered: int, actual_micros: int | None, urls: list[str], now: datetime
) -> Settlement:
    job = await lock_job(conn, job_id)
    lines = await ledger.job_lines(conn, job_id)
    if job.finished:
        return _summarise(job, lines, already=True)
    reserved = [x for e, x in lines if e == "reserve"]
    charged_images = min(images_delivered, job.images_requested)
    cost = actual_micros if actual_micros is not None else job.price_micros * charged_images
    # The ceiling: at most the reservation (the estimate) is charged; the rest is an overrun.
    overrun = max(0, cost - job.estimated_micros)
    settle = ledger.settle_lines(reserved, charged_images, cost)
    stamp = to_db(now)
    await ledger.write_lines(conn, "settle", settle, stamp, job_id=job_id)
    await conn.execute(
        "UPDATE jobs SET status = 'succeeded', reservation = 'settled', images_delivered = ?, "
        "actual_micros = ?, overrun_micros = ?, result_urls = ?, error = NULL, finished_at = ?, "
        "updated_at = ? WHERE id = ?",
        (images_delivered, cost, overrun, to_json(urls), stamp, stamp, job_id),
    )
    if overrun:
        log.warning(
            "job %s: the provider reported %d micros, more than the %d reserved; %d not charged (overrun)",
            job_id,
            cost,
            job.estimated_micros,
            overrun,
        )
    done = replace(
        job, status="succeeded", images_delivered=images_delivered, actual_micros=cost, overrun_micros=overrun
    )
    return _summarise(done, lines + [("settle", x) for x in settle], already=False)


async def complete_job(
    db: Database,
    job_id: str,
    images_delivered: int,
    actual_micros: int | None = None,
    *,
    result_urls: Sequence[str] = (),
    now: datetime | None = None,
) -> Settlement:
    """The job succeeded: settle at the actual cost (the provider's figure, else price x images
    delivered, never for more images than were asked) and mark it succeeded, together.
    On a job that had already finished, changes nothing and returns its earlier outcome."""
    if images_delivered < 0 or (actual_micros is not None and actual_micros < 0):
        raise ValueError("images delivered and cost cannot be negative")
    return await db.write(_complete, job_id, images_delivered, actual_micros, list(result_urls), utc(now))


async def _refund_open(
    conn: Conn, job: Job, status: str, error: str | None, now: datetime, actor_id: int | None = None
) -> bool:
    if job.finished:
        return False
    refund = [x.negated() for e, x in await ledger.job_lines(conn, job.id) if e == "reserve"]
    await ledger.write_lines(conn, "refund", refund, now, job_id=job.id, actor_id=actor_id)
    await conn.execute(
        "UPDATE jobs SET status = ?, reservation = 'refunded', actual_micros = 0, error = ?, "
        "finished_at = ?, updated_at = ? WHERE id = ?",
        (status, error, to_db(now), to_db(now), job.id),
    )
    return True


async def _fail(conn: Conn, job_id: str, status: str, error: str | None, now: datetime) -> bool:
    return await _refund_open(conn, await lock_job(conn, job_id), status, error, now)


async def fail_job(
    db: Database,
    job_id: str,
    status: str = "failed",
    error: str | None = None,
    *,
    now: datetime | None = None,
) -> bool:
    """The job ended without a result: refund its reservation and set its status, together.
    False (and nothing changes) if it had already finished."""
    if status not in FAILURES:
        raise ValueError(f"status must be one of {', '.join(FAILURES)}, not {status!r}")
    return await db.write(_fail, job_id, status, error, utc(now))


async def _admin_refund(conn: Conn, job_id: str, actor_id: int | None, reason: str, now: datetime) -> Refund:
    job = await lock_job(conn, job_id)
    before = ledger.net_by_bucket(await ledger.job_lines(conn, job_id))
    if not job.finished:
        # Cancelled as it is refunded: the worker running it hears of it and stops, and nothing is
        # settled or delivered for it afterwards ("<code>: <message>", as failures are recorded).
        error = f"{ADMIN_REFUND} ({reason})." if reason else f"{ADMIN_REFUND}."
        await _refund_open(conn, job, "cancelled", error, now, actor_id)
        conn.notify(jobs.CANCEL_CHANNEL, job_id)
    elif job.reservation == "settled":
        reversal = [x.negated() for x in before]
        await ledger.write_lines(
            conn, "reversal", reversal, now, job_id=job_id, actor_id=actor_id, note=reason
        )
        await conn.execute(
            "UPDATE jobs SET reservation = 'reversed', updated_at = ? WHERE id = ?", (to_db(now), job_id)
        )
    else:
        return Refund(job_id, 0, 0, already=True)
    await audit.record(conn, now, actor_id, job.guild_id, "refund", {"job_id": job_id, "reason": reason})
    payer = [x for x in before if x.account != "user"]
    return Refund(
        job_id,
        sum(x.micros for x in payer),
        sum(x.images for x in payer),
        already=False,
        cancelled=not job.finished,
    )


async def refund_job(
    db: Database, job_id: str, *, actor_id: int | None = None, reason: str = "", now: datetime | None = None
) -> Refund:
    """An admin gives a job's charge back. An unfinished job is cancelled and refunded; a finished
    one has its net charge reversed, in the period it was charged in. Audited either way; a second
    refund changes nothing (``already``)."""
    return await db.write(_admin_refund, job_id, actor_id, reason, utc(now))
