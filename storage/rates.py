"""Rate limits and per-role free allowances: what admins set for the members holding a role.

Rate limits (``rate_limits``): at most ``jobs`` accepted jobs per member in any rolling window of
``window_s`` seconds. A limit with no role (stored as role 0) is the guild-wide one: it applies to
members none of whose roles has a limit. A member whose roles have limits is held to the most
generous of them: a job is allowed when any one of those limits allows it, and a refusal names the
one that frees up soonest. What counts: the member's jobs in that guild that were accepted and have
not ended without a result (queued, running, succeeded). Refusals (no quota, over the rate) are never
accepted, and a job that failed, was refused by the provider or was cancelled gave the member
nothing, so it gives the slot back. The count is read from ``jobs`` inside the transaction that
records the new job, after the guild's lock (storage/settle.py), so two processes never both take
a member's last slot.

Per-role free allowances (``role_free_quota``): free images per member per period of a model (or
"*") for members holding a role, in place of the guild's free quota; the most generous of a
member's roles wins (storage/ledger.py ``most_generous``). Members with no such role keep the
guild's (or the catalog's) free quota.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from storage import audit
from storage.conn import Conn, placeholders
from storage.db import Database
from storage.errors import RateLimited
from storage.guild_config import ALL_MODELS, FreePolicy, read_free_policy
from storage.periods import DEFAULT_PERIOD, PERIODS, from_db, to_db, utc

GUILD_WIDE = 0  # role_id of the guild-wide rate limit
MIN_WINDOW_S = 60
COUNTED = ("queued", "running", "succeeded")  # a job in these states uses a slot of the window


@dataclass(frozen=True)
class RateLimit:
    guild_id: int
    role_id: int | None  # None: the guild-wide limit
    jobs: int
    window_s: int

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.window_s)


def _check_positive(value: object, what: str, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be an integer of at least {minimum}, not {value!r}")


# --- rate limits -------------------------------------------------------------------------------


async def read_rate_limits(conn: Conn, guild_id: int) -> list[RateLimit]:
    rows = await conn.fetchall(
        "SELECT role_id, jobs, window_s FROM rate_limits WHERE guild_id = ? ORDER BY role_id", (guild_id,)
    )
    return [
        RateLimit(guild_id, None if r["role_id"] == GUILD_WIDE else r["role_id"], r["jobs"], r["window_s"])
        for r in rows
    ]


def applicable(limits: Iterable[RateLimit], roles: Iterable[int]) -> list[RateLimit]:
    """The limits a member with ``roles`` is held to: those of their roles, else the guild-wide one."""
    limits = list(limits)
    held = set(roles)
    mine = [x for x in limits if x.role_id is not None and x.role_id in held]
    return mine or [x for x in limits if x.role_id is None]


@dataclass(frozen=True)
class RateStanding:
    """Where a member stands against one of their limits now."""

    limit: RateLimit
    used: int  # counted jobs in the window
    next_at: datetime | None  # when a job is allowed again, if this limit refuses one now

    @property
    def allows(self) -> bool:
        return self.next_at is None


async def read_standing(
    conn: Conn, user_id: int | None, guild_id: int, roles: Iterable[int], now: datetime
) -> list[RateStanding]:
    """The member's standing against each limit they are held to (none for the operator)."""
    if user_id is None:
        return []
    limits = applicable(await read_rate_limits(conn, guild_id), roles)
    if not limits:
        return []
    windows = sorted({x.window_s for x in limits})
    base = f"FROM jobs WHERE user_id = ? AND guild_id = ? AND status IN ({placeholders(COUNTED)})"
    # One pass over the member's recent jobs (index only: jobs_member_recent) counts every window.
    counts = ", ".join("count(CASE WHEN created_at > ? THEN 1 END)" for _ in windows)
    row = await conn.fetchone(
        f"SELECT {counts} {base} AND created_at > ?",
        (
            *(to_db(now - timedelta(seconds=w)) for w in windows),
            user_id,
            guild_id,
            *COUNTED,
            to_db(now - timedelta(seconds=windows[-1])),
        ),
    )
    used = dict(zip(windows, tuple(row), strict=True))
    found = []
    for limit in limits:
        n, next_at = used[limit.window_s], None
        if n >= limit.jobs:
            # Allowed again once the limit-th newest of them leaves the window.
            nth = await conn.fetchval(
                f"SELECT created_at {base} ORDER BY created_at DESC LIMIT 1 OFFSET ?",
                (user_id, guild_id, *COUNTED, limit.jobs - 1),
            )
            next_at = from_db(nth) + limit.window
        found.append(RateStanding(limit, n, next_at))
    return found


async def check_rate(
    conn: Conn, user_id: int | None, guild_id: int, roles: Iterable[int], now: datetime
) -> None:
    """Raise RateLimited when none of the member's limits allows another job now (the refusal
    names the one that frees up soonest). Operator jobs (no user) are never limited."""
    standing = await read_standing(conn, user_id, guild_id, roles, now)
    if not standing or any(s.allows for s in standing):
        return
    soonest = min(standing, key=lambda s: s.next_at or now)
    assert soonest.next_at is not None
    raise RateLimited(soonest.limit, soonest.used, soonest.next_at)


async def ensure_allowed(
    db: Database,
    user_id: int | None,
    guild_id: int | None,
    roles: Iterable[int],
    *,
    now: datetime | None = None,
) -> None:
    """``check_rate`` on its own, in a read: lets a caller refuse before it reads a member's images.
    The check that holds is the one inside the transaction that records the job."""
    await db.read(check_rate, user_id, guild_id or 0, tuple(roles), utc(now))


async def _set_rate(
    conn: Conn,
    guild_id: int,
    role_id: int,
    jobs: int | None,
    window_s: int,
    actor_id: int | None,
    now: datetime,
) -> None:
    await conn.lock(f"guild:{guild_id}")
    if jobs is None:
        await conn.execute("DELETE FROM rate_limits WHERE guild_id = ? AND role_id = ?", (guild_id, role_id))
    else:
        await conn.execute(
            "INSERT INTO rate_limits (guild_id, role_id, jobs, window_s, updated_at, updated_by) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (guild_id, role_id) DO UPDATE SET "
            "jobs = excluded.jobs, window_s = excluded.window_s, "
            "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            (guild_id, role_id, jobs, window_s, to_db(now), actor_id),
        )
    details = {"role_id": role_id or None, "jobs": jobs, "window_s": window_s if jobs else None}
    await audit.record(conn, now, actor_id, guild_id, "rate", details)


async def set_rate_limit(
    db: Database,
    guild_id: int,
    jobs: int | None,
    window_s: int = 3600,
    *,
    role_id: int | None = None,
    actor_id: int | None = None,
    now: datetime | None = None,
) -> list[RateLimit]:
    """At most ``jobs`` jobs per member per rolling ``window_s`` seconds, for the members holding
    ``role_id`` (None: everyone without a limited role). ``jobs`` None removes that limit. Returns
    the guild's limits as they now are."""
    if jobs is not None:
        _check_positive(jobs, "jobs")
        _check_positive(window_s, "the window in seconds", MIN_WINDOW_S)
    await db.write(_set_rate, guild_id, role_id or GUILD_WIDE, jobs, window_s, actor_id, utc(now))
    return await list_rate_limits(db, guild_id)


async def list_rate_limits(db: Database, guild_id: int) -> list[RateLimit]:
    """The guild's limits, the guild-wide one first."""
    return await db.read(read_rate_limits, guild_id)


# --- per-role free allowances ------------------------------------------------------------------


async def read_role_free(
    conn: Conn, guild_id: int, roles: Iterable[int] | None = None, model: str | None = None
) -> dict[int, dict[str, tuple[int, str]]]:
    """role -> model -> (images, period): the guild's per-role rows, for ``roles`` when given (and
    only ``model``'s and "*" when given)."""
    sql, params = "SELECT role_id, model, images, period FROM role_free_quota WHERE guild_id = ?", [guild_id]
    if roles is not None:
        roles = [int(r) for r in roles]
        if not roles:
            return {}
        sql += f" AND role_id IN ({placeholders(roles)})"
        params += roles
    if model is not None:
        sql += " AND model IN (?, ?)"
        params += [model, ALL_MODELS]
    found: dict[int, dict[str, tuple[int, str]]] = {}
    for r in await conn.fetchall(sql, params):
        found.setdefault(r["role_id"], {})[r["model"]] = (r["images"], r["period"])
    return found


def role_policies(by_role: dict[int, dict[str, tuple[int, str]]], model: str) -> list[FreePolicy]:
    """Each role's free quota for ``model``: its row for the model, else its "*" row."""
    found = []
    for role_id, rows in sorted(by_role.items()):
        row = rows.get(model) or rows.get(ALL_MODELS)
        if row is not None:
            found.append(FreePolicy(row[0], row[1], f"role:{role_id}"))
    return found


async def free_policies(
    conn: Conn, guild_id: int, model: str, default_images: int, roles: Iterable[int]
) -> list[FreePolicy]:
    """The free quotas a member with ``roles`` may draw on for ``model``: their roles' own, else the
    guild's (or the catalog's). The caller picks the most generous (ledger.most_generous)."""
    roles = tuple(roles)
    if roles:
        found = role_policies(await read_role_free(conn, guild_id, roles, model), model)
        if found:
            return found
    return [await read_free_policy(conn, guild_id, model, default_images)]


async def _set_role_free(
    conn: Conn,
    guild_id: int,
    role_id: int,
    model: str,
    images: int | None,
    period: str,
    actor_id: int | None,
    now: datetime,
) -> None:
    await conn.lock(f"guild:{guild_id}")
    if images is None:
        await conn.execute(
            "DELETE FROM role_free_quota WHERE guild_id = ? AND role_id = ? AND model = ?",
            (guild_id, role_id, model),
        )
    else:
        await conn.execute(
            "INSERT INTO role_free_quota (guild_id, role_id, model, images, period, updated_at, updated_by) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (guild_id, role_id, model) DO UPDATE SET "
            "images = excluded.images, period = excluded.period, "
            "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            (guild_id, role_id, model, images, period, to_db(now), actor_id),
        )
    details = {"role_id": role_id, "model": model, "images": images, "period": period}
    await audit.record(conn, now, actor_id, guild_id, "free_quota", details)


async def set_role_free_quota(
    db: Database,
    guild_id: int,
    role_id: int,
    model: str,
    images: int | None,
    period: str = DEFAULT_PERIOD,
    *,
    actor_id: int | None = None,
    now: datetime | None = None,
) -> None:
    """Free images per member per period of ``model`` (or "*") for members holding ``role_id``.
    0 gives the role none; None removes the role's own allowance (its members get the guild's)."""
    if images is not None and (isinstance(images, bool) or not isinstance(images, int) or images < 0):
        raise ValueError(f"images must be a non-negative integer, not {images!r}")
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, not {period!r}")
    await db.write(_set_role_free, guild_id, role_id, model, images, period, actor_id, utc(now))


async def list_role_free_quotas(db: Database, guild_id: int) -> dict[int, dict[str, FreePolicy]]:
    """role -> model (or "*") -> its free quota, for the guild's overview."""
    rows = await db.read(read_role_free, guild_id)
    return {
        role: {m: FreePolicy(i, p, f"role:{role}") for m, (i, p) in models.items()}
        for role, models in rows.items()
    }
