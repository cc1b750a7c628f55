"""The quota and cost ledger: who pays for a job, and the append-only rows that move balances.

A balance is the sum of ledger rows for one bucket over the days of a period (see 0001_init.sql
for the buckets). ``balances`` caches the sums per day, kept by a trigger in the same transaction;
``db check`` recomputes them. Free images and micro-dollars never mix in one bucket.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from storage import audit
from storage.conn import Conn
from storage.db import Database
from storage.guild_config import FreePolicy, read_free_policy, read_guild_config, read_teams
from storage.periods import Period, day_of, period_at, to_db, utc
from storage.rates import free_policies

OPERATOR_BUCKET = "operator"
SANDBOX = "sandbox"  # charged_to of a job that cost nothing (the local sandbox)


def free_bucket(guild_id: int, user_id: int, model: str) -> str:
    return f"free:{guild_id}:{user_id}:{model}"


def team_bucket(team_id: int) -> str:
    return f"team:{team_id}"


def guild_bucket(guild_id: int) -> str:
    return f"guild:{guild_id}"


def user_bucket(guild_id: int, user_id: int) -> str:
    return f"user:{guild_id}:{user_id}"


@dataclass(frozen=True)
class Line:
    """One ledger row: a change to one bucket, filed under one UTC day."""

    account: str  # free | team | guild | user | operator
    bucket: str
    day: str
    guild_id: int
    user_id: int | None = None
    team_id: int | None = None
    model: str | None = None
    images: int = 0
    micros: int = 0

    def negated(self) -> Line:
        return replace(self, images=-self.images, micros=-self.micros)


@dataclass(frozen=True)
class Balance:
    images: int = 0  # free images used
    micros: int = 0  # micro-dollars spent
    granted: int = 0  # extra free images granted by an admin


@dataclass(frozen=True)
class Decision:
    """Who pays for a job, and the reserve rows that say so."""

    charged_to: str  # free | team:<name> | guild | operator | sandbox
    lines: tuple[Line, ...]
    team_id: int | None
    free_remaining: int | None  # after this job; None for operator jobs
    resets_at: datetime | None  # end of the paying bucket's period


@dataclass(frozen=True)
class Shortfall:
    """One figure of a refusal: what was left of what, and when it resets."""

    kind: str  # "free" (images), "cap", "team" or "guild" (micro-dollars)
    left: int  # never negative
    limit: int  # the period's allowance (free: grants included); guild 0 means "no budget at all"
    resets_at: datetime
    name: str | None = None  # a team's name


@dataclass(frozen=True)
class Refusal:
    """Nothing could pay: the job's estimate and what was short, in the order a person reads them:
    the free quota first; then either the user's cap (when the cap is what refused) or each team of
    the user's roles and the guild budget."""

    model: str
    images: int
    estimate_micros: int
    free_left: int
    shortfalls: tuple[Shortfall, ...]
    resets_at: datetime  # the soonest reset that could change the answer

    def summary(self) -> str:
        """A terse record of the figures (logs, the refused job's ``error`` column)."""
        parts = [f"{self.images} image(s) of {self.model} = {self.estimate_micros} micros"]
        for s in self.shortfalls:
            who = f"team {s.name}" if s.kind == "team" else s.kind
            parts.append(f"{who} {s.left}/{s.limit} until {to_db(s.resets_at)}")
        return "; ".join(parts)


async def read_balances(
    conn: Conn, wanted: Iterable[tuple[str, Period]]
) -> dict[tuple[str, Period], Balance]:
    """Each bucket's sums over the days of its period; zero where nothing was written."""
    wanted = list(dict.fromkeys(wanted))
    found: dict[tuple[str, Period], Balance] = dict.fromkeys(wanted, Balance())
    if not wanted:
        return found
    # One statement, one branch per bucket; each is a range scan of the (bucket, day) key.
    # The casts: PostgreSQL's sum(bigint) is numeric, and a bare parameter in a select list untyped.
    sql = " UNION ALL ".join(
        "SELECT CAST(? AS INTEGER) AS i, CAST(sum(images) AS BIGINT), CAST(sum(micros) AS BIGINT), "
        "CAST(sum(granted) AS BIGINT) FROM balances WHERE bucket = ? AND day >= ? AND day < ?"
        for _ in wanted
    )
    params = [v for i, (bucket, p) in enumerate(wanted) for v in (i, bucket, p.first_day, p.end_day)]
    for i, images, micros, granted in await conn.fetchall(sql, params):
        if images is not None:
            found[wanted[i]] = Balance(images, micros, granted)
    return found


def most_generous(policies: Sequence[FreePolicy], standing: Callable[[FreePolicy], Balance]) -> FreePolicy:
    """Of the free quotas a member may draw on (their roles'), the one that leaves them the most free
    images now (``standing``: the bucket's sums over that quota's period); a tie goes to the larger
    allowance. Periods differ (3 a day against 50 a month), so "most generous" is judged by what
    the member can use at this moment."""

    def key(p: FreePolicy) -> tuple[int, int]:
        b = standing(p)
        return (max(0, p.images + b.granted - b.images), p.images + b.granted)

    return max(policies, key=key)


async def decide(
    conn: Conn,
    *,
    user_id: int | None,
    guild_id: int,
    model: str,
    images: int,
    price_micros: int,
    free_default: int,
    roles: Sequence[int],
    now: datetime,
) -> Decision | Refusal:
    """Who pays, in order: free quota, a team of the user's roles, the guild; the cap on paid jobs.

    Runs inside the caller's write transaction, after it took the guild's lock, so what it reads
    is still true when the caller writes the reservation.
    """
    estimate = price_micros * images
    day = day_of(now)
    if user_id is None:
        line = Line("operator", OPERATOR_BUCKET, day, guild_id, None, None, model, 0, estimate)
        return Decision("operator", (line,), None, None, None)

    policies = await free_policies(conn, guild_id, model, free_default, roles)
    fb = free_bucket(guild_id, user_id, model)
    periods = {p.period: period_at(p.period, now) for p in policies}
    bal = await read_balances(conn, [(fb, fp) for fp in periods.values()])
    policy = most_generous(policies, lambda p: bal[(fb, periods[p.period])])
    fp = periods[policy.period]
    free = bal[(fb, fp)]
    limit = policy.images + free.granted
    free_left = max(0, limit - free.images)
    if estimate == 0:
        # Nothing to pay for (the local sandbox): charged to "sandbox", its one row in the free
        # bucket reserving (and keeping) no image, so the free quota is untouched.
        line = Line("free", fb, day, guild_id, user_id, None, model, 0, 0)
        return Decision(SANDBOX, (line,), None, free_left, fp.end)
    # A job is free as a whole or paid as a whole: easier to explain than a split bill.
    if images <= free_left:
        line = Line("free", fb, day, guild_id, user_id, None, model, images, 0)
        return Decision("free", (line,), None, free_left - images, fp.end)

    config = await read_guild_config(conn, guild_id)
    teams = await read_teams(conn, guild_id, roles) if roles else []
    cp = period_at(config.cap_period, now)
    gp = period_at(config.budget_period, now)
    tps = {t.id: period_at(t.period, now) for t in teams}
    ub, gb = user_bucket(guild_id, user_id), guild_bucket(guild_id)
    bal = await read_balances(conn, [(ub, cp), (gb, gp), *((team_bucket(t.id), tps[t.id]) for t in teams)])
    spent = bal[(ub, cp)].micros
    # Every paid job also counts against the user's cap, whoever pays for it.
    user_line = Line("user", ub, day, guild_id, user_id, None, model, 0, estimate)
    cap_ok = config.cap_micros is None or spent + estimate <= config.cap_micros
    team_left = {t.id: t.budget_micros - bal[(team_bucket(t.id), tps[t.id])].micros for t in teams}
    guild_left = config.budget_micros - bal[(gb, gp)].micros
    if cap_ok:
        for t in teams:
            if estimate <= team_left[t.id]:
                tp = tps[t.id]
                line = Line("team", team_bucket(t.id), day, guild_id, user_id, t.id, model, 0, estimate)
                return Decision(f"team:{t.name}", (line, user_line), t.id, free_left, tp.end)
        if estimate <= guild_left:
            line = Line("guild", gb, day, guild_id, user_id, None, model, 0, estimate)
            return Decision("guild", (line, user_line), None, free_left, gp.end)

    # Refused: what is left, of what, and when each resets (bot/refusals.py words it).
    short = [Shortfall("free", free_left, limit, fp.end)]
    if not cap_ok:
        cap = config.cap_micros or 0
        short.append(Shortfall("cap", max(0, cap - spent), cap, cp.end))
    else:
        short += [
            Shortfall("team", max(0, team_left[t.id]), t.budget_micros, tps[t.id].end, t.name) for t in teams
        ]
        short.append(Shortfall("guild", max(0, guild_left), config.budget_micros, gp.end))
    # A guild with no budget at all has nothing to reset into.
    resets = [s.resets_at for s in short if not (s.kind == "guild" and s.limit == 0)]
    return Refusal(model, images, estimate, free_left, tuple(short), min(resets))


_INSERT = (
    "INSERT INTO ledger (at, entry, account, bucket, day, guild_id, user_id, team_id, model, "
    "job_id, images, micros, actor_id, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


async def write_lines(
    conn: Conn,
    entry: str,
    lines: Iterable[Line],
    now: datetime | str,  # or the time already as the database stores it
    *,
    job_id: str | None = None,
    actor_id: int | None = None,
    note: str | None = None,
) -> None:
    at = now if isinstance(now, str) else to_db(now)
    rows = [
        (
            at,
            entry,
            x.account,
            x.bucket,
            x.day,
            x.guild_id,
            x.user_id,
            x.team_id,
            x.model,
            job_id,
            x.images,
            x.micros,
            actor_id,
            note,
        )
        for x in lines
    ]
    if rows:
        await conn.executemany(_INSERT, rows)


_LINE_COLUMNS = "entry, account, bucket, day, guild_id, user_id, team_id, model, images, micros"


async def job_lines(conn: Conn, job_id: str) -> list[tuple[str, Line]]:
    """Every ledger row of a job as (entry, line), oldest first."""
    rows = await conn.fetchall(f"SELECT {_LINE_COLUMNS} FROM ledger WHERE job_id = ? ORDER BY id", (job_id,))
    return [(r[0], Line(*tuple(r)[1:])) for r in rows]  # by position: the hot path of every settle


def settle_lines(reserved: Iterable[Line], delivered: int, cost_micros: int) -> list[Line]:
    """Close a reservation at the actual outcome.

    Free buckets keep the images delivered and give back the rest. Money buckets keep the actual
    cost up to the reservation and never more: the reservation is what the budget and the cap
    allowed, so a provider reporting more than was reserved cannot push either past its limit (the
    excess is the job's ``overrun_micros``, recorded by the caller, not charged).
    """
    settle = []
    for r in reserved:
        if r.account == "free":
            settle.append(replace(r, images=min(delivered, r.images) - r.images, micros=0))
        else:
            settle.append(replace(r, images=0, micros=min(cost_micros, r.micros) - r.micros))
    return settle


def net_by_bucket(lines: Iterable[tuple[str, Line]]) -> list[Line]:
    """What a job's rows add up to in each bucket (on the reservation's day)."""
    net: dict[tuple[str, str], Line] = {}
    for _, x in lines:
        key = (x.bucket, x.day)
        if key in net:
            net[key] = replace(net[key], images=net[key].images + x.images, micros=net[key].micros + x.micros)
        else:
            net[key] = x
    return list(net.values())


async def _grant(
    conn: Conn,
    guild_id: int,
    user_id: int,
    model: str,
    images: int,
    actor_id: int | None,
    note: str | None,
    now: datetime,
) -> Period:
    # Filed under today, it counts in whatever period the guild's setting for the model makes
    # today part of (the calendar month by default).
    await conn.lock(f"guild:{guild_id}")
    period = period_at((await read_free_policy(conn, guild_id, model, 0)).period, now)
    line = Line(
        "free", free_bucket(guild_id, user_id, model), day_of(now), guild_id, user_id, None, model, images
    )
    await write_lines(conn, "grant", [line], now, actor_id=actor_id, note=note)
    await audit.record(
        conn, now, actor_id, guild_id, "grant", {"user_id": user_id, "model": model, "images": images}
    )
    return period


async def grant_free_images(
    db: Database,
    guild_id: int,
    user_id: int,
    model: str,
    images: int,
    *,
    actor_id: int | None = None,
    note: str | None = None,
    now: datetime | None = None,
) -> Period:
    """Give a user extra free images of ``model`` for the current period; returns that period."""
    if isinstance(images, bool) or not isinstance(images, int) or images <= 0:
        raise ValueError(f"images to grant must be a positive integer, not {images!r}")
    return await db.write(_grant, guild_id, user_id, model, images, actor_id, note, utc(now))
