"""Job records, and the operations that change a job and its money together in one transaction.

accept_job -> (mark_running, set_task_id)* -> complete_job | fail_job. A job's reservation is
closed exactly once: complete and fail are no-ops on a finished job and return its earlier outcome,
and the ledger's unique index refuses a second close even if code here were wrong.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from typing import Any

from bot.errors import QuotaExceeded
from storage import audit, ledger
from storage.db import Conn, Database, StorageError, fetchall, fetchone
from storage.periods import from_db, to_db, utc

log = logging.getLogger(__name__)

STATUSES = ("queued", "running", "succeeded", "failed", "refused", "cancelled")
UNFINISHED = ("queued", "running")
FAILURES = ("failed", "refused", "cancelled")


class JobNotFound(StorageError):
    code = "not_found"


class QueueFull(StorageError):
    """So many jobs are waiting that a new one is not taken (nothing was recorded)."""

    code = "queue_full"

    def __init__(self, *, waiting: int) -> None:
        super().__init__(f"{waiting} jobs are waiting")
        self.waiting = waiting


class QuotaRefused(QuotaExceeded):
    """QuotaExceeded with the figures behind the message; the refused job is recorded."""

    def __init__(
        self, message: str, *, job_id: str, cost_micros: int, free_remaining: int, resets_at: datetime
    ) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.cost_micros = cost_micros
        self.free_remaining = free_remaining
        self.resets_at = resets_at


@dataclass(frozen=True)
class RouteChoice:
    """One way to run a job, as recorded at acceptance: the queue grants slots by ``provider``."""

    provider: str
    provider_model: str
    price_micros: int

    def to_json(self) -> dict[str, Any]:
        return {"provider": self.provider, "model": self.provider_model, "price": self.price_micros}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RouteChoice:
        return cls(str(d["provider"]), str(d["model"]), int(d["price"]))


@dataclass(frozen=True)
class NewJob:
    """A job as the job service accepts it. The estimate is ``price_micros * images``."""

    model: str
    prompt: str
    images: int  # outputs requested (n)
    price_micros: int  # per output image, on the first route tried
    free_quota: int  # the catalog's free images per user per period for the model (Model.free_quota)
    user_id: int | None = None  # None: an operator job, costed but never limited
    guild_id: int | None = None  # None: a DM or the CLI; stored as guild 0
    channel_id: int | None = None
    roles: tuple[int, ...] = ()  # the member's role ids, for team budgets
    params: Mapping[str, Any] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)  # what resuming needs beyond the columns
    kind: str = ""
    input_count: int = 0
    deadline_s: float = 600.0  # after this an unfinished job is overdue (db check reports it)
    job_id: str | None = None  # generated when None


@dataclass(frozen=True)
class Job:
    id: str
    created_at: datetime
    updated_at: datetime
    user_id: int | None
    guild_id: int
    channel_id: int | None
    model: str
    kind: str
    prompt: str
    params: Mapping[str, Any]
    meta: Mapping[str, Any]
    input_count: int
    images_requested: int
    price_micros: int
    estimated_micros: int
    status: str
    reservation: str  # none | open | settled | refunded | reversed
    charged_to: str | None
    team_id: int | None
    provider: str | None
    provider_model: str | None
    task_id: str | None
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    deadline_at: datetime
    images_delivered: int
    actual_micros: int | None
    error: str | None
    result_urls: tuple[str, ...]
    posted_channel_id: int | None
    posted_message_id: int | None
    # The queue (storage/queue.py): how the job may run, who holds it, where its member sees it.
    routes: tuple[RouteChoice, ...] = ()
    tried: tuple[str, ...] = ()  # providers that failed it (failover skips them)
    not_before: datetime | None = None  # held back until then (a busy provider's back-off)
    waiting_reason: str | None = None  # e.g. "provider_busy:wavespeed"
    pinned_to: str | None = None  # only this worker may run it (a CLI waiting for its own job)
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    run_started_at: datetime | None = None  # when the attempt that is (or was) running began
    delivery: Mapping[str, Any] | None = None  # where its member sees it (bot.requests.Delivery)
    delivered_at: datetime | None = None  # when its member was shown how it ended
    result_refs: tuple[str, ...] = ()  # its stored images, until they are delivered

    @property
    def finished(self) -> bool:
        return self.status not in UNFINISHED

    @classmethod
    def from_row(cls, row: Any) -> Job:
        d = {name: row[name] for name in _JOB_FIELDS}  # columns a later migration adds are ignored
        for name in _TIMES:
            d[name] = from_db(d[name])
        d["params"] = json.loads(d["params"])
        d["meta"] = json.loads(d["meta"])
        d["result_urls"] = tuple(json.loads(d["result_urls"]))
        d["routes"] = tuple(RouteChoice.from_json(r) for r in json.loads(d["routes"]))
        d["tried"] = tuple(json.loads(d["tried"]))
        d["delivery"] = json.loads(d["delivery"]) if d["delivery"] else None
        d["result_refs"] = tuple(json.loads(d["result_refs"]))
        return cls(**d)


_JOB_FIELDS = tuple(f.name for f in fields(Job))
_TIMES = (
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "deadline_at",
    "not_before",
    "lease_expires_at",
    "run_started_at",
    "delivered_at",
)


@dataclass(frozen=True)
class Reservation:
    job_id: str
    charged_to: str  # free | team:<name> | guild | operator
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
    overrun_micros: int  # charged beyond the reservation
    already: bool = False


@dataclass(frozen=True)
class Refund:
    job_id: str
    returned_micros: int
    returned_images: int
    already: bool  # True: nothing was left to refund


def _json(value: Mapping[str, Any] | Sequence[str]) -> str:
    return json.dumps(value if isinstance(value, list | tuple) else dict(value), sort_keys=True, default=str)


_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_job_id() -> str:
    """12 characters: milliseconds since the epoch in base 36, then 4 random ones. Ids that grow
    with time keep inserts at the end of the indexes; random ids would scatter page writes.
    Bursts can share a millisecond, so ``accept_job`` draws again on the rare collision."""
    ms, text = time.time_ns() // 1_000_000, ""
    while ms:
        ms, digit = divmod(ms, 36)
        text = _ALPHABET[digit] + text
    return text + "".join(secrets.choice(_ALPHABET) for _ in range(4))


def _accept(conn: Conn, job: NewJob, job_id: str, now: datetime) -> ledger.Decision | ledger.Refusal:
    guild_id = job.guild_id or 0
    decision = ledger.decide(
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
    conn.execute(
        "INSERT INTO jobs (id, created_at, updated_at, user_id, guild_id, channel_id, model, kind, prompt, "
        "params, meta, input_count, images_requested, price_micros, estimated_micros, status, reservation, "
        "charged_to, team_id, finished_at, deadline_at, error) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            job_id,
            to_db(now),
            to_db(now),
            job.user_id,
            guild_id,
            job.channel_id,
            job.model,
            job.kind,
            job.prompt,
            _json(job.params),
            _json(job.meta),
            job.input_count,
            job.images,
            job.price_micros,
            job.price_micros * job.images,
            "refused" if refused else "queued",
            "none" if refused else "open",
            None if refused else decision.charged_to,
            None if refused else decision.team_id,
            to_db(now) if refused else None,
            to_db(now + timedelta(seconds=job.deadline_s)),
            decision.message if refused else None,
        ),
    )
    if not refused:
        ledger.write_lines(conn, "reserve", decision.lines, now, job_id=job_id)
    return decision


async def accept_job(db: Database, job: NewJob, *, now: datetime | None = None) -> Reservation:
    """Record the job and reserve its estimate in one transaction; or record it as refused and
    raise QuotaRefused (a QuotaExceeded) saying what is left, what it would cost, when it resets."""
    return await accept_with(db, job, utc(now), _accept)


async def accept_with(db: Database, job: NewJob, now: datetime, op: Any, *args: Any) -> Reservation:
    """``accept_job`` with another operation in its place: ``op(conn, job, job_id, now, *args)``
    must call ``_accept`` and return its decision (the queue adds its own columns this way)."""
    if job.images < 1:
        raise ValueError("a job makes at least one image")
    if job.price_micros < 0 or job.free_quota < 0:
        raise ValueError("price and free quota cannot be negative")
    for attempt in range(5):
        job_id = job.job_id or new_job_id()
        try:
            decision = await db.write(op, job, job_id, now, *args)
            break
        except sqlite3.IntegrityError:
            # Two jobs drew the same id in the same millisecond (the transaction rolled back whole).
            if job.job_id or attempt == 4:
                raise
    if isinstance(decision, ledger.Refusal):
        log.info("job %s refused: %s", job_id, decision.message)
        raise QuotaRefused(
            decision.message,
            job_id=job_id,
            cost_micros=decision.cost_micros,
            free_remaining=decision.free_remaining,
            resets_at=decision.resets_at,
        )
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


def _load(conn: Conn, job_id: str) -> Job:
    row = fetchone(conn, "SELECT * FROM jobs WHERE id = ?", (job_id,))
    if row is None:
        raise JobNotFound(f"No job {job_id!r}.")
    return Job.from_row(row)


def _update_unfinished(conn: Conn, job_id: str, assignments: str, params: dict) -> bool:
    # ``assignments`` is fixed text from this module; values go through parameters.
    cursor = conn.execute(
        f"UPDATE jobs SET {assignments}, updated_at = :now "
        "WHERE id = :id AND status IN ('queued', 'running')",
        {**params, "id": job_id},
    )
    return cursor.rowcount == 1


async def mark_running(
    db: Database,
    job_id: str,
    provider: str,
    provider_model: str,
    task_id: str | None = None,
    *,
    price_micros: int | None = None,
    now: datetime | None = None,
) -> bool:
    """The job was sent to a route (again, on failover). ``price_micros``: that route's price per
    image, when it differs from the estimate's. False if the job has already finished."""
    return await db.write(
        _update_unfinished,
        job_id,
        "status = 'running', provider = :provider, provider_model = :model, task_id = :task, "
        "price_micros = coalesce(:price, price_micros), attempts = attempts + 1, "
        "started_at = coalesce(started_at, :now)",
        {
            "provider": provider,
            "model": provider_model,
            "task": task_id,
            "price": price_micros,
            "now": to_db(utc(now)),
        },
    )


async def set_task_id(db: Database, job_id: str, task_id: str, *, now: datetime | None = None) -> bool:
    """Remember the provider's task id as soon as it is known: it is what makes a job resumable."""
    return await db.write(
        _update_unfinished, job_id, "task_id = :task", {"task": task_id, "now": to_db(utc(now))}
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
        sum(x.micros for e, x in payer if e == "overrun"),
        already,
    )


def _complete(
    conn: Conn, job_id: str, images_delivered: int, actual_micros: int | None, urls: list[str], now: datetime
) -> Settlement:
    job = _load(conn, job_id)
    lines = ledger.job_lines(conn, job_id)
    if job.finished:
        return _summarise(job, lines, already=True)
    reserved = [x for e, x in lines if e == "reserve"]
    charged_images = min(images_delivered, job.images_requested)
    cost = actual_micros if actual_micros is not None else job.price_micros * charged_images
    settle, overrun = ledger.settle_lines(reserved, charged_images, cost)
    ledger.write_lines(conn, "settle", settle, now, job_id=job_id)
    ledger.write_lines(conn, "overrun", overrun, now, job_id=job_id)
    conn.execute(
        "UPDATE jobs SET status = 'succeeded', reservation = 'settled', images_delivered = ?, "
        "actual_micros = ?, result_urls = ?, error = NULL, finished_at = ?, updated_at = ? WHERE id = ?",
        (images_delivered, cost, _json(urls), to_db(now), to_db(now), job_id),
    )
    if overrun:
        log.warning("job %s cost %d micros, more than the %d reserved", job_id, cost, job.estimated_micros)
    done = replace(job, status="succeeded", images_delivered=images_delivered, actual_micros=cost)
    written = [("settle", x) for x in settle] + [("overrun", x) for x in overrun]
    return _summarise(done, lines + written, already=False)


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


def _refund_open(
    conn: Conn, job: Job, status: str, error: str | None, now: datetime, actor_id: int | None = None
) -> bool:
    if job.finished:
        return False
    refund = [x.negated() for e, x in ledger.job_lines(conn, job.id) if e == "reserve"]
    ledger.write_lines(conn, "refund", refund, now, job_id=job.id, actor_id=actor_id)
    conn.execute(
        "UPDATE jobs SET status = ?, reservation = 'refunded', actual_micros = 0, error = ?, "
        "finished_at = ?, updated_at = ? WHERE id = ?",
        (status, error, to_db(now), to_db(now), job.id),
    )
    return True


def _fail(conn: Conn, job_id: str, status: str, error: str | None, now: datetime) -> bool:
    return _refund_open(conn, _load(conn, job_id), status, error, now)


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


def _admin_refund(conn: Conn, job_id: str, actor_id: int | None, reason: str, now: datetime) -> Refund:
    job = _load(conn, job_id)
    before = ledger.net_by_bucket(ledger.job_lines(conn, job_id))
    if not job.finished:
        error = f"Refunded by an admin: {reason}" if reason else "Refunded by an admin."
        _refund_open(conn, job, "cancelled", error, now, actor_id)
    elif job.reservation == "settled":
        reversal = [x.negated() for x in before]
        ledger.write_lines(conn, "reversal", reversal, now, job_id=job_id, actor_id=actor_id, note=reason)
        conn.execute(
            "UPDATE jobs SET reservation = 'reversed', updated_at = ? WHERE id = ?", (to_db(now), job_id)
        )
    else:
        return Refund(job_id, 0, 0, already=True)
    audit.record(conn, now, actor_id, job.guild_id, "refund", {"job_id": job_id, "reason": reason})
    payer = [x for x in before if x.account != "user"]
    return Refund(job_id, sum(x.micros for x in payer), sum(x.images for x in payer), already=False)


async def refund_job(
    db: Database, job_id: str, *, actor_id: int | None = None, reason: str = "", now: datetime | None = None
) -> Refund:
    """An admin gives a job's charge back. An unfinished job is cancelled and refunded; a finished
    one has its net charge reversed, in the period it was charged in. Audited either way; a second
    refund changes nothing (``already``)."""
    return await db.write(_admin_refund, job_id, actor_id, reason, utc(now))


def _posted(conn: Conn, job_id: str, channel_id: int, message_id: int, now: datetime) -> None:
    cursor = conn.execute(
        "UPDATE jobs SET posted_channel_id = ?, posted_message_id = ?, updated_at = ? WHERE id = ?",
        (channel_id, message_id, to_db(now), job_id),
    )
    if cursor.rowcount != 1:
        raise JobNotFound(f"No job {job_id!r}.")


async def set_posted(
    db: Database, job_id: str, channel_id: int, message_id: int, *, now: datetime | None = None
) -> None:
    """Where the result was posted, so buttons and "what did I run" can point at it."""
    await db.write(_posted, job_id, channel_id, message_id, utc(now))


def _get(conn: Conn, job_id: str) -> Job | None:
    row = fetchone(conn, "SELECT * FROM jobs WHERE id = ?", (job_id,))
    return None if row is None else Job.from_row(row)


async def get_job(db: Database, job_id: str) -> Job | None:
    return await db.read(_get, job_id)


def _list(conn: Conn, user_id: int | None, guild_id: int | None, limit: int) -> list[Job]:
    rows = fetchall(
        conn,
        "SELECT * FROM jobs WHERE (:u IS NULL OR user_id = :u) AND (:g IS NULL OR guild_id = :g) "
        "ORDER BY created_at DESC, rowid DESC LIMIT :n",
        {"u": user_id, "g": guild_id, "n": limit},
    )
    return [Job.from_row(r) for r in rows]


async def list_jobs(
    db: Database, user_id: int | None = None, guild_id: int | None = None, limit: int = 10
) -> list[Job]:
    """Newest first: a user's jobs ("what did I run"), a guild's, or everyone's."""
    return await db.read(_list, user_id, guild_id, limit)


def _unfinished(conn: Conn) -> list[Job]:
    rows = fetchall(
        conn, "SELECT * FROM jobs WHERE status IN ('queued', 'running') ORDER BY created_at, rowid"
    )
    return [Job.from_row(r) for r in rows]


async def unfinished_jobs(db: Database) -> list[Job]:
    """Jobs still queued or running, oldest first: what a restart must resume or refund."""
    return await db.read(_unfinished)
