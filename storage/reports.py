"""What users and admins ask: how much is left for me, and who used what."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from storage.conn import Conn
from storage.db import Database
from storage.guild_config import free_policy, read_free_overrides, read_guild_config, read_teams
from storage.ledger import free_bucket, guild_bucket, most_generous, read_balances, team_bucket, user_bucket
from storage.periods import period_at, to_db, utc
from storage.rates import RateStanding, read_role_free, read_standing, role_policies


@dataclass(frozen=True)
class FreeStatus:
    model: str
    limit: int  # the period's free images, grants included
    used: int
    remaining: int
    granted: int
    period: str
    resets_at: datetime


@dataclass(frozen=True)
class BudgetStatus:
    name: str  # "guild" or "team:<name>"
    budget_micros: int
    spent_micros: int
    remaining_micros: int
    period: str
    resets_at: datetime


@dataclass(frozen=True)
class QuotaStatus:
    user_id: int
    guild_id: int
    free: tuple[FreeStatus, ...]
    spent_micros: int  # paid jobs this cap period, whoever paid
    cap_micros: int | None
    cap_resets_at: datetime
    guild: BudgetStatus
    teams: tuple[BudgetStatus, ...]  # those of the roles given
    rates: tuple[RateStanding, ...] = ()  # the rate limits the member is held to (storage/rates.py)

    @property
    def resets_at(self) -> datetime:
        """The next reset of any of these figures."""
        return min([self.cap_resets_at, self.guild.resets_at, *(f.resets_at for f in self.free)])


async def _quota(
    conn: Conn, user_id: int, guild_id: int, models: Mapping[str, int], roles: Sequence[int], now: datetime
) -> QuotaStatus:
    overrides = await read_free_overrides(conn, guild_id)
    config = await read_guild_config(conn, guild_id)
    teams = await read_teams(conn, guild_id, roles) if roles else []
    by_role = await read_role_free(conn, guild_id, roles) if roles else {}
    # Each model's candidates: the member's roles' own free quotas, else the guild's (or catalog's).
    candidates = {
        m: role_policies(by_role, m) or [free_policy(overrides, m, default)] for m, default in models.items()
    }
    periods = {p.period: period_at(p.period, now) for ps in candidates.values() for p in ps}
    tps = {t.id: period_at(t.period, now) for t in teams}
    cp, gp = period_at(config.cap_period, now), period_at(config.budget_period, now)
    ub, gb = user_bucket(guild_id, user_id), guild_bucket(guild_id)
    keys = [
        (ub, cp),
        (gb, gp),
        *((free_bucket(guild_id, user_id, m), periods[p.period]) for m, ps in candidates.items() for p in ps),
        *((team_bucket(t.id), tps[t.id]) for t in teams),
    ]
    bal = await read_balances(conn, keys)
    policies = {
        m: most_generous(ps, lambda p, m=m: bal[(free_bucket(guild_id, user_id, m), periods[p.period])])
        for m, ps in candidates.items()
    }
    fps = {m: periods[p.period] for m, p in policies.items()}
    free = []
    for m, policy in policies.items():
        b = bal[(free_bucket(guild_id, user_id, m), fps[m])]
        limit = policy.images + b.granted
        free.append(
            FreeStatus(m, limit, b.images, max(0, limit - b.images), b.granted, policy.period, fps[m].end)
        )

    def budget(name: str, micros: int, spent: int, period: str, end: datetime) -> BudgetStatus:
        return BudgetStatus(name, micros, spent, max(0, micros - spent), period, end)

    status = QuotaStatus(
        user_id,
        guild_id,
        tuple(free),
        bal[(ub, cp)].micros,
        config.cap_micros,
        cp.end,
        budget("guild", config.budget_micros, bal[(gb, gp)].micros, config.budget_period, gp.end),
        tuple(
            budget(
                f"team:{t.name}",
                t.budget_micros,
                bal[(team_bucket(t.id), tps[t.id])].micros,
                t.period,
                tps[t.id].end,
            )
            for t in teams
        ),
        tuple(await read_standing(conn, user_id, guild_id, roles, now)),
    )
    return status


async def quota_status(
    db: Database,
    user_id: int,
    guild_id: int | None,
    models: Mapping[str, int],
    roles: Sequence[int] = (),
    *,
    now: datetime | None = None,
) -> QuotaStatus:
    """A user's standing in a guild. ``models`` maps each model id to the catalog's free quota."""
    return await db.read(_quota, user_id, guild_id or 0, dict(models), tuple(roles), utc(now))


@dataclass(frozen=True)
class UsageRow:
    key: str
    jobs: int
    succeeded: int
    images: int  # delivered by succeeded jobs
    cost_micros: int  # what succeeded jobs cost (free ones included: the operator still pays)
    refused: int
    failed: int
    cancelled: int
    overrun_micros: int = 0  # reported by providers beyond what succeeded jobs reserved: not charged


# Fixed expressions chosen by name: the grouping never comes from user text. "team" groups by who
# paid (team:<name>, free, guild, operator; "-" for refused jobs, which nobody paid for).
GROUPINGS = {
    "user": "coalesce(CAST(user_id AS TEXT), 'operator')",
    "team": "coalesce(charged_to, '-')",
    "model": "model",
    "day": "substr(created_at, 1, 10)",
}


async def usage(
    db: Database,
    *,
    guild_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    by: str = "user",
    only_user: int | None = None,
    only_teams: Sequence[int] | None = None,
) -> list[UsageRow]:
    """Jobs created in [since, until), grouped ``by`` user, team, model or day; busiest first
    (oldest first by day). With ``only_user`` or ``only_teams``: just that user's jobs and the
    jobs charged to those teams."""
    sql, params = usage_query(guild_id, since, until, by, only_user=only_user, only_teams=only_teams)
    rows = await db.report(_fetchall, sql, params)
    return [UsageRow(*(r[i] for i in range(9))) for r in rows]


def usage_query(
    guild_id: int | None,
    since: datetime | None,
    until: datetime | None,
    by: str,
    *,
    only_user: int | None = None,
    only_teams: Sequence[int] | None = None,
) -> tuple[str, list]:
    """The SQL of ``usage`` and its parameters."""
    if by not in GROUPINGS:
        raise ValueError(f"by must be one of {', '.join(GROUPINGS)}, not {by!r}")
    order = "key" if by == "day" else "images DESC, jobs DESC, key"
    # The WHERE clause is built per case, never "(:g IS NULL OR guild_id = :g)": a condition that
    # may be true without looking at the column defeats the index (a full scan of every job).
    # With a guild, jobs_guild_usage (0005_report_indexes.sql) answers from the index alone.
    where, params = [], []  # positional: named placeholders with none given would not bind
    if guild_id is not None:
        where.append("guild_id = ?")
        params.append(guild_id)
    if since is not None:
        where.append("created_at >= ?")
        params.append(to_db(since))
    if until is not None:
        where.append("created_at < ?")
        params.append(to_db(until))
    if only_user is not None or only_teams is not None:
        teams = [int(t) for t in only_teams or ()]  # parameters, never text in the statement
        within = f" OR team_id IN ({', '.join('?' for _ in teams)})" if teams else ""
        where.append(f"(user_id = CAST(? AS BIGINT){within})")
        params += [only_user, *teams]
    sql = (
        f"SELECT {GROUPINGS[by]} AS key, count(*) AS jobs, "
        f"{_count('succeeded')} AS succeeded, "
        "CAST(sum(CASE WHEN status = 'succeeded' THEN images_delivered ELSE 0 END) AS BIGINT) AS images, "
        "CAST(sum(CASE WHEN status = 'succeeded' THEN coalesce(actual_micros, 0) ELSE 0 END) AS BIGINT) "
        f"AS cost_micros, {_count('refused')} AS refused, {_count('failed')} AS failed, "
        f"{_count('cancelled')} AS cancelled, "
        "CAST(sum(CASE WHEN status = 'succeeded' THEN overrun_micros ELSE 0 END) AS BIGINT) AS overrun "
        f"FROM jobs {'WHERE ' + ' AND '.join(where) if where else ''} "
        f"GROUP BY key ORDER BY {order}"
    )
    return sql, params


async def _overrun(conn: Conn, guild_id: int, since: str | None) -> int:
    total = await conn.fetchval(
        "SELECT CAST(coalesce(sum(overrun_micros), 0) AS BIGINT) FROM jobs WHERE guild_id = ? "
        "AND status = 'succeeded' AND overrun_micros > 0 AND (CAST(? AS TEXT) IS NULL OR created_at >= ?)",
        (guild_id, since, since),
    )
    return int(total or 0)


async def overrun_total(db: Database, guild_id: int, since: datetime | None = None) -> int:
    """What providers reported beyond the reservations of a guild's jobs created since ``since``:
    recorded, never charged (see storage.settle)."""
    stamp = None if since is None else to_db(since)
    return await db.read(_overrun, guild_id, stamp)


def _count(status: str) -> str:
    # Portable: PostgreSQL has no sum(boolean). ``status`` is one of this module's literals.
    return f"CAST(sum(CASE WHEN status = '{status}' THEN 1 ELSE 0 END) AS BIGINT)"


async def _fetchall(conn: Conn, sql: str, params: list) -> list:
    return await conn.fetchall(sql, params)
