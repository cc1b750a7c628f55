"""What a guild's admins set: budget, per-user cap, free quotas, teams, allowed channels.

The ``read_*`` functions take a connection so the ledger consults the settings inside its own
transaction. Every change writes an audit row with the actor in the same transaction, and takes the
guild's lock first (``conn.lock``): a reservation reading these settings is never interleaved with
a change to them (on PostgreSQL; SQLite's BEGIN IMMEDIATE already orders every write).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from storage import audit
from storage.conn import Conn, placeholders
from storage.db import Database
from storage.periods import DEFAULT_PERIOD, PERIODS, to_db, utc

ALL_MODELS = "*"  # a free-quota row for every model of a guild that has no row of its own


@dataclass(frozen=True)
class GuildConfig:
    guild_id: int
    budget_micros: int = 0  # default: no budget, only free quota until an admin sets one
    budget_period: str = DEFAULT_PERIOD
    cap_micros: int | None = None  # None: no per-user cap
    cap_period: str = DEFAULT_PERIOD


@dataclass(frozen=True)
class FreePolicy:
    images: int
    period: str
    source: str  # "catalog", "guild" (a row for this model) or "guild:*"


@dataclass(frozen=True)
class Team:
    id: int
    guild_id: int
    role_id: int
    name: str
    budget_micros: int
    period: str


def _check_period(period: str) -> None:
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, not {period!r}")


def _check_count(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, not {value!r}")


# --- readers (inside a caller's transaction) ---------------------------------------------------


async def read_guild_config(conn: Conn, guild_id: int) -> GuildConfig:
    row = await conn.fetchone("SELECT * FROM guild_config WHERE guild_id = ?", (guild_id,))
    if row is None:
        return GuildConfig(guild_id)
    return GuildConfig(
        guild_id, row["budget_micros"], row["budget_period"], row["cap_micros"], row["cap_period"]
    )


async def read_free_overrides(
    conn: Conn, guild_id: int, model: str | None = None
) -> dict[str, tuple[int, str]]:
    """The guild's free-quota rows, model -> (images, period); only ``model``'s and "*" if given."""
    if model is None:
        rows = await conn.fetchall(
            "SELECT model, images, period FROM free_quota WHERE guild_id = ?", (guild_id,)
        )
    else:
        rows = await conn.fetchall(
            "SELECT model, images, period FROM free_quota WHERE guild_id = ? AND model IN (?, ?)",
            (guild_id, model, ALL_MODELS),
        )
    return {r["model"]: (r["images"], r["period"]) for r in rows}


def free_policy(overrides: dict[str, tuple[int, str]], model: str, default_images: int) -> FreePolicy:
    """The free quota for ``model``: the guild's row for it, else its "*" row, else the catalog's
    default per calendar month."""
    if model in overrides:
        return FreePolicy(*overrides[model], "guild")
    if ALL_MODELS in overrides:
        return FreePolicy(*overrides[ALL_MODELS], "guild:*")
    return FreePolicy(default_images, DEFAULT_PERIOD, "catalog")


async def read_free_policy(conn: Conn, guild_id: int, model: str, default_images: int) -> FreePolicy:
    return free_policy(await read_free_overrides(conn, guild_id, model), model, default_images)


async def read_teams(conn: Conn, guild_id: int, roles: Iterable[int] | None = None) -> list[Team]:
    """The guild's teams in the order they were created; only those of ``roles`` when given."""
    if roles is None:
        rows = await conn.fetchall("SELECT * FROM teams WHERE guild_id = ? ORDER BY id", (guild_id,))
    else:
        roles = [int(r) for r in roles]
        if not roles:
            return []
        rows = await conn.fetchall(
            f"SELECT * FROM teams WHERE guild_id = ? AND role_id IN ({placeholders(roles)}) ORDER BY id",
            (guild_id, *roles),
        )
    return [
        Team(r["id"], r["guild_id"], r["role_id"], r["name"], r["budget_micros"], r["period"]) for r in rows
    ]


# --- admin writes ------------------------------------------------------------------------------


async def _set_guild(
    conn: Conn, guild_id: int, column_values: dict, now: datetime, actor_id: int | None
) -> GuildConfig:
    await conn.lock(f"guild:{guild_id}")
    await conn.execute(
        "INSERT INTO guild_config (guild_id, updated_at, updated_by) VALUES (?, ?, ?) ON CONFLICT (guild_id) "
        "DO UPDATE SET updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        (guild_id, to_db(now), actor_id),
    )
    # Column names come from the two callers below, never from outside.
    assignments = ", ".join(f"{name} = :{name}" for name in column_values)
    await conn.execute(
        f"UPDATE guild_config SET {assignments} WHERE guild_id = :g", {**column_values, "g": guild_id}
    )
    return await read_guild_config(conn, guild_id)


async def _budget(
    conn: Conn, guild_id: int, micros: int, period: str, actor_id: int | None, now: datetime
) -> GuildConfig:
    config = await _set_guild(
        conn, guild_id, {"budget_micros": micros, "budget_period": period}, now, actor_id
    )
    await audit.record(conn, now, actor_id, guild_id, "budget", {"micros": micros, "period": period})
    return config


async def set_guild_budget(
    db: Database,
    guild_id: int,
    micros: int,
    period: str = DEFAULT_PERIOD,
    *,
    actor_id: int | None = None,
    now: datetime | None = None,
) -> GuildConfig:
    """The guild's budget per period (what was spent in the new period's window still counts)."""
    _check_count(micros, "the budget in micro-dollars")
    _check_period(period)
    return await db.write(_budget, guild_id, micros, period, actor_id, utc(now))


async def _cap(
    conn: Conn, guild_id: int, micros: int | None, period: str, actor_id: int | None, now: datetime
) -> GuildConfig:
    config = await _set_guild(conn, guild_id, {"cap_micros": micros, "cap_period": period}, now, actor_id)
    await audit.record(conn, now, actor_id, guild_id, "cap", {"micros": micros, "period": period})
    return config


async def set_user_cap(
    db: Database,
    guild_id: int,
    micros: int | None,
    period: str = DEFAULT_PERIOD,
    *,
    actor_id: int | None = None,
    now: datetime | None = None,
) -> GuildConfig:
    """What one user may spend from team and guild budgets per period; None removes the cap."""
    if micros is not None:
        _check_count(micros, "the cap in micro-dollars")
    _check_period(period)
    return await db.write(_cap, guild_id, micros, period, actor_id, utc(now))


async def _free_quota(
    conn: Conn,
    guild_id: int,
    model: str,
    images: int | None,
    period: str,
    actor_id: int | None,
    now: datetime,
) -> None:
    await conn.lock(f"guild:{guild_id}")
    if images is None:
        await conn.execute("DELETE FROM free_quota WHERE guild_id = ? AND model = ?", (guild_id, model))
    else:
        await conn.execute(
            "INSERT INTO free_quota (guild_id, model, images, period, updated_at, updated_by) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (guild_id, model) DO UPDATE SET "
            "images = excluded.images, period = excluded.period, "
            "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            (guild_id, model, images, period, to_db(now), actor_id),
        )
    await audit.record(
        conn, now, actor_id, guild_id, "free_quota", {"model": model, "images": images, "period": period}
    )


async def set_free_quota(
    db: Database,
    guild_id: int,
    model: str,
    images: int | None,
    period: str = DEFAULT_PERIOD,
    *,
    actor_id: int | None = None,
    now: datetime | None = None,
) -> None:
    """Free images per user per period of ``model`` (or "*") in this guild. 0 turns the free quota
    off; None returns to the catalog's default."""
    if images is not None:
        _check_count(images, "images")
    _check_period(period)
    await db.write(_free_quota, guild_id, model, images, period, actor_id, utc(now))


async def _team(
    conn: Conn,
    guild_id: int,
    role_id: int,
    name: str,
    micros: int,
    period: str,
    actor_id: int | None,
    now: datetime,
) -> Team:
    await conn.lock(f"guild:{guild_id}")
    await conn.execute(
        "INSERT INTO teams (guild_id, role_id, name, budget_micros, period, updated_at, updated_by) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (guild_id, role_id) DO UPDATE SET "
        "name = excluded.name, budget_micros = excluded.budget_micros, period = excluded.period, "
        "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        (guild_id, role_id, name, micros, period, to_db(now), actor_id),
    )
    details = {"role_id": role_id, "name": name, "micros": micros, "period": period}
    await audit.record(conn, now, actor_id, guild_id, "team", details)
    (team,) = await read_teams(conn, guild_id, [role_id])
    return team


async def set_team(
    db: Database,
    guild_id: int,
    role_id: int,
    name: str,
    micros: int,
    period: str = DEFAULT_PERIOD,
    *,
    actor_id: int | None = None,
    now: datetime | None = None,
) -> Team:
    """Map a role to a team with a budget per period (creating or updating it: a role has one team).
    A budget of 0 retires a team without losing its history."""
    _check_count(micros, "the budget in micro-dollars")
    _check_period(period)
    name = name.strip()
    if not name:
        raise ValueError("a team needs a name")
    return await db.write(_team, guild_id, role_id, name, micros, period, actor_id, utc(now))


async def get_guild_config(db: Database, guild_id: int) -> GuildConfig:
    return await db.read(read_guild_config, guild_id)


async def list_teams(db: Database, guild_id: int) -> list[Team]:
    return await db.read(read_teams, guild_id)


async def list_free_quotas(db: Database, guild_id: int) -> dict[str, FreePolicy]:
    """The guild's own free-quota settings by model (catalog defaults are not listed)."""
    rows = await db.read(read_free_overrides, guild_id)
    return {m: FreePolicy(i, p, "guild:*" if m == ALL_MODELS else "guild") for m, (i, p) in rows.items()}


# --- allowed channels --------------------------------------------------------------------------


async def _channel(
    conn: Conn, guild_id: int, channel_id: int, allowed: bool, actor_id: int | None, now: datetime
) -> None:
    await conn.lock(f"guild:{guild_id}")
    if allowed:
        await conn.execute(
            "INSERT INTO guild_channels (guild_id, channel_id, added_at, added_by) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (guild_id, channel_id) DO NOTHING",
            (guild_id, channel_id, to_db(now), actor_id),
        )
    else:
        await conn.execute(
            "DELETE FROM guild_channels WHERE guild_id = ? AND channel_id = ?", (guild_id, channel_id)
        )
    await audit.record(
        conn, now, actor_id, guild_id, "channel", {"channel_id": channel_id, "allowed": allowed}
    )


async def set_channel_allowed(
    db: Database,
    guild_id: int,
    channel_id: int,
    allowed: bool = True,
    *,
    actor_id: int | None = None,
    now: datetime | None = None,
) -> None:
    """Add or remove a channel from the guild's allow-list (an empty list allows every channel)."""
    await db.write(_channel, guild_id, channel_id, allowed, actor_id, utc(now))


async def _channels(conn: Conn, guild_id: int) -> frozenset[int]:
    rows = await conn.fetchall("SELECT channel_id FROM guild_channels WHERE guild_id = ?", (guild_id,))
    return frozenset(r[0] for r in rows)


async def allowed_channels(db: Database, guild_id: int) -> frozenset[int]:
    return await db.read(_channels, guild_id)


async def channel_allowed(db: Database, guild_id: int, channel_id: int) -> bool:
    channels = await allowed_channels(db, guild_id)
    return not channels or channel_id in channels
