"""Who changed what: one row per admin action, written in the same transaction as the change."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.conn import Conn
from storage.db import Database
from storage.periods import from_db, to_db


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor_id: int | None
    guild_id: int | None
    action: str
    details: Mapping[str, Any]


async def record(
    conn: Conn,
    now: datetime,
    actor_id: int | None,
    guild_id: int | None,
    action: str,
    details: Mapping[str, Any],
) -> None:
    await conn.execute(
        "INSERT INTO audit (at, actor_id, guild_id, action, details) VALUES (?, ?, ?, ?, ?)",
        (to_db(now), actor_id, guild_id, action, json.dumps(dict(details), sort_keys=True, default=str)),
    )


async def _read(conn: Conn, guild_id: int | None, limit: int) -> list[AuditEntry]:
    rows = await conn.fetchall(
        "SELECT * FROM audit WHERE (CAST(:g AS BIGINT) IS NULL OR guild_id = :g) ORDER BY id DESC LIMIT :n",
        {"g": guild_id, "n": limit},
    )
    return [
        AuditEntry(
            r["id"], from_db(r["at"]), r["actor_id"], r["guild_id"], r["action"], json.loads(r["details"])
        )
        for r in rows
    ]


async def audit_log(db: Database, guild_id: int | None = None, limit: int = 50) -> list[AuditEntry]:
    """The latest admin actions, newest first; every guild's when ``guild_id`` is None."""
    return await db.read(_read, guild_id, limit)
