"""What each provider account really runs at once, shared by every process (bot/capacity.py has
the rule that learns it; this keeps it). A provider with no row runs at its configured ceiling."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from storage.conn import Conn
from storage.db import Database
from storage.periods import from_db, to_db, utc


@dataclass(frozen=True)
class ProviderCapacity:
    provider: str
    limit: int  # jobs the queue sends at once
    ceiling: int  # the configured max_concurrency
    paused_until: datetime | None = None
    probe_after: datetime | None = None
    busy_total: int = 0  # busy answers ever seen

    def paused(self, now: datetime) -> bool:
        return self.paused_until is not None and now < self.paused_until


async def read_capacities(conn: Conn, ceilings: Mapping[str, int]) -> dict[str, ProviderCapacity]:
    rows = await conn.fetchall("SELECT * FROM provider_state")
    found = {r["provider"]: _capacity(r) for r in rows}
    out = {}
    for provider, ceiling in ceilings.items():
        state = found.get(provider) or ProviderCapacity(provider, max(1, ceiling), max(1, ceiling))
        out[provider] = replace(state, ceiling=ceiling, limit=min(state.limit, max(1, ceiling)))
    return out


def _capacity(row: Any) -> ProviderCapacity:
    return ProviderCapacity(
        row["provider"],
        row["lim"],
        row["ceiling"],
        from_db(row["paused_until"]),
        from_db(row["probe_after"]),
        row["busy_total"],
    )


async def _adjust(
    conn: Conn, provider: str, ceiling: int, rule: Callable[..., ProviderCapacity], now: datetime
) -> ProviderCapacity:
    await conn.lock(f"provider:{provider}")
    row = await conn.fetchone("SELECT * FROM provider_state WHERE provider = :p", {"p": provider})
    state = _capacity(row) if row else ProviderCapacity(provider, max(1, ceiling), max(1, ceiling))
    state = replace(state, ceiling=max(1, ceiling), limit=min(state.limit, max(1, ceiling)))
    open_now = await conn.fetchval(
        "SELECT count(*) FROM jobs WHERE status = 'running' AND provider = :p", {"p": provider}
    )
    waiting = await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'queued'")
    new = rule(state, open_now=open_now, waiting=waiting > 0)
    if new != state or row is None:
        await conn.execute(
            "INSERT INTO provider_state (provider, lim, ceiling, paused_until, probe_after, busy_total, "
            "updated_at) VALUES (:p, :lim, :ceiling, :paused, :probe, :busy, :now) ON CONFLICT (provider) "
            "DO UPDATE SET lim = excluded.lim, ceiling = excluded.ceiling, "
            "paused_until = excluded.paused_until, probe_after = excluded.probe_after, "
            "busy_total = excluded.busy_total, updated_at = excluded.updated_at",
            {
                "p": provider,
                "lim": new.limit,
                "ceiling": new.ceiling,
                "paused": None if new.paused_until is None else to_db(new.paused_until),
                "probe": None if new.probe_after is None else to_db(new.probe_after),
                "busy": new.busy_total,
                "now": to_db(now),
            },
        )
    return new


async def adjust_capacity(
    db: Database,
    provider: str,
    *,
    ceiling: int,
    rule: Callable[..., ProviderCapacity],
    now: datetime | None = None,
) -> ProviderCapacity:
    """Apply ``rule(state, open_now=..., waiting=...)`` to a provider's learned capacity in one
    transaction (the rule is bot/capacity.py's; ``open_now`` counts its running jobs, this one
    included; ``waiting`` says whether any job is queued)."""
    return await db.write(_adjust, provider, ceiling, rule, utc(now))


async def _read_capacities(conn: Conn) -> list[ProviderCapacity]:
    return [_capacity(r) for r in await conn.fetchall("SELECT * FROM provider_state ORDER BY provider")]


async def capacities(db: Database) -> list[ProviderCapacity]:
    """Every provider's learned capacity (only providers that were ever busy or succeeded)."""
    return await db.read(_read_capacities)
