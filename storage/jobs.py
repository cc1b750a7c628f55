"""Job records: what was asked, where it runs, how it ended, where the result was posted.

accept_job -> (mark_running, set_task_id)* -> complete_job | fail_job; the operations that change a
job and its money together live in storage/settle.py. Rows become dataclasses here, at the edge.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from storage.conn import LOCK_ID_SQL, Conn
from storage.db import Database
from storage.errors import JobNotFound
from storage.periods import from_db, to_db, utc

CANCEL_CHANNEL = "kontext_cancel"  # notified with a job's id when it is cancelled before it finished
STATUSES = ("queued", "running", "succeeded", "failed", "refused", "cancelled")
UNFINISHED = ("queued", "running")
FAILURES = ("failed", "refused", "cancelled")


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
    overrun_micros: int = 0  # the provider's reported cost beyond the reservation: not charged
    sending_at: datetime | None = None  # this attempt began sending it to the provider (0007_sending.sql)

    @property
    def finished(self) -> bool:
        return self.status not in UNFINISHED

    @classmethod
    def from_row(cls, row: Any) -> Job:
        # Columns a later migration adds are ignored. Through a dict: sqlite3.Row looks a name up by
        # scanning its columns, which for 33 of them is most of the cost of reading a job.
        found = dict(zip(row.keys(), row, strict=True))
        d = {name: found[name] for name in _JOB_FIELDS}
        for name in _TIMES:
            d[name] = from_db(d[name])
        d["params"] = json.loads(d["params"])
        d["meta"] = json.loads(d["meta"])
        for name in _TUPLES:  # mostly '[]': no parse for that
            d[name] = () if d[name] == "[]" else tuple(json.loads(d[name]))
        if d["routes"]:
            d["routes"] = tuple(RouteChoice.from_json(r) for r in d["routes"])
        d["delivery"] = json.loads(d["delivery"]) if d["delivery"] else None
        # Every field is set from the row, so the frozen dataclass's __init__ (one
        # object.__setattr__ per field, a third of this function's time) is skipped.
        job = object.__new__(cls)
        job.__dict__.update(d)
        return job


_JOB_FIELDS = tuple(f.name for f in fields(Job))
_TUPLES = ("result_urls", "routes", "tried", "result_refs")
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
    "sending_at",
)


def to_json(value: Mapping[str, Any] | Sequence[str]) -> str:
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


async def load(conn: Conn, job_id: str) -> Job:
    row = await conn.fetchone("SELECT * FROM jobs WHERE id = ?", (job_id,))
    if row is None:
        raise JobNotFound(job_id)
    return Job.from_row(row)


_LOCK_JOBS_GUILD = (
    "SELECT guild_id, pg_advisory_xact_lock(" + LOCK_ID_SQL.format("'guild:' || guild_id") + ") "
    "FROM jobs WHERE id = ?"
)


async def lock_job(conn: Conn, job_id: str) -> Job:
    """The job, read under its guild's lock: what this transaction reads of the job and of its
    guild's balances stays true until it commits (see storage/postgres.py)."""
    if conn.dialect == "sqlite":
        return await load(conn, job_id)  # BEGIN IMMEDIATE: nothing else writes until we commit
    # conn.lock(f"guild:{guild_id}") in the statement that finds the guild (it never changes)...
    locked = await conn.fetchone(_LOCK_JOBS_GUILD, (job_id,))
    if locked is None:
        raise JobNotFound(job_id)
    return await load(conn, job_id)  # ...then the job as the one that held the lock before us left it


async def _update_unfinished(conn: Conn, job_id: str, assignments: str, params: dict) -> bool:
    # ``assignments`` is fixed text from this module; values go through parameters.
    changed = await conn.execute(
        f"UPDATE jobs SET {assignments}, updated_at = :now "
        "WHERE id = :id AND status IN ('queued', 'running')",
        {**params, "id": job_id},
    )
    return changed == 1


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
        "price_micros = coalesce(CAST(:price AS BIGINT), price_micros), attempts = attempts + 1, "
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


async def _posted(conn: Conn, job_id: str, channel_id: int, message_id: int, now: datetime) -> None:
    changed = await conn.execute(
        "UPDATE jobs SET posted_channel_id = ?, posted_message_id = ?, updated_at = ? WHERE id = ?",
        (channel_id, message_id, to_db(now), job_id),
    )
    if changed != 1:
        raise JobNotFound(job_id)


async def set_posted(
    db: Database, job_id: str, channel_id: int, message_id: int, *, now: datetime | None = None
) -> None:
    """Where the result was posted, so buttons and "what did I run" can point at it."""
    await db.write(_posted, job_id, channel_id, message_id, utc(now))


async def _get(conn: Conn, job_id: str) -> Job | None:
    row = await conn.fetchone("SELECT * FROM jobs WHERE id = ?", (job_id,))
    return None if row is None else Job.from_row(row)


async def get_job(db: Database, job_id: str) -> Job | None:
    return await db.read(_get, job_id)


# Ties on created_at (a clock a test holds still) are broken by id, which grows with time too.
# The WHERE clause is built per case (an "(:u IS NULL OR user_id = :u)" would defeat the indexes):
# jobs_by_member and jobs_by_user (0005_report_indexes.sql) give this order, so LIMIT ends the scan.
def history_query(user_id: int | None, guild_id: int | None, limit: int) -> tuple[str, dict[str, Any]]:
    where, params = [], {"n": limit}
    if guild_id is not None:
        where.append("guild_id = :g")
        params["g"] = guild_id
    if user_id is not None:
        where.append("user_id = :u")
        params["u"] = user_id
    sql = (
        f"SELECT * FROM jobs {'WHERE ' + ' AND '.join(where) if where else ''} "
        "ORDER BY created_at DESC, id DESC LIMIT :n"
    )
    return sql, params


async def _list(conn: Conn, user_id: int | None, guild_id: int | None, limit: int) -> list[Job]:
    rows = await conn.fetchall(*history_query(user_id, guild_id, limit))
    return [Job.from_row(r) for r in rows]


async def list_jobs(
    db: Database, user_id: int | None = None, guild_id: int | None = None, limit: int = 10
) -> list[Job]:
    """Newest first: a user's jobs ("what did I run"), a guild's, or everyone's."""
    return await db.read(_list, user_id, guild_id, limit)


async def _unfinished(conn: Conn) -> list[Job]:
    rows = await conn.fetchall(
        "SELECT * FROM jobs WHERE status IN ('queued', 'running') ORDER BY created_at, id"
    )
    return [Job.from_row(r) for r in rows]


async def unfinished_jobs(db: Database) -> list[Job]:
    """Jobs still queued or running, oldest first: what a restart must resume or refund."""
    return await db.read(_unfinished)
