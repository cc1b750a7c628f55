"""Roles only one process may play at a time (painting the waiting room, posting reports)."""

from __future__ import annotations

from datetime import datetime, timedelta

from storage.conn import Conn
from storage.db import Database
from storage.periods import from_db, to_db, utc


async def _hold(conn: Conn, name: str, owner: str, ttl: float, now: datetime) -> bool:
    await conn.lock(f"role:{name}")
    row = await conn.fetchone("SELECT owner, expires_at FROM roles WHERE name = :n", {"n": name})
    if row is not None and row["owner"] != owner and from_db(row["expires_at"]) > now:
        return False
    await conn.execute(
        "INSERT INTO roles (name, owner, expires_at) VALUES (:n, :o, :e) ON CONFLICT (name) "
        "DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at",
        {"n": name, "o": owner, "e": to_db(now + timedelta(seconds=ttl))},
    )
    return True


async def hold_role(db: Database, name: str, owner: str, *, ttl: float, now: datetime | None = None) -> bool:
    """Take or keep a role only one process may play at a time (e.g. painting queue positions).
    True while ``owner`` holds it; call again before ``ttl`` seconds pass to keep it."""
    return await db.write(_hold, name, owner, ttl, utc(now))
