"""Per-user preferences the Discord bot remembers: default model, aspect ratio, private results."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from storage.conn import Conn
from storage.db import Database
from storage.periods import to_db, utc


@dataclass(frozen=True)
class UserSettings:
    user_id: int
    default_model: str | None = None
    aspect_ratio: str | None = None
    private_results: bool = False


_FIELDS = frozenset(f.name for f in fields(UserSettings)) - {"user_id"}


async def _read(conn: Conn, user_id: int) -> UserSettings:
    row = await conn.fetchone("SELECT * FROM user_settings WHERE user_id = ?", (user_id,))
    if row is None:
        return UserSettings(user_id)
    return UserSettings(user_id, row["default_model"], row["aspect_ratio"], bool(row["private_results"]))


async def _write(conn: Conn, user_id: int, changes: dict[str, Any], now: datetime) -> UserSettings:
    await conn.lock(f"user:{user_id}")  # read-modify-write: two partial updates must not lose one
    new = replace(await _read(conn, user_id), **changes)
    await conn.execute(
        "INSERT INTO user_settings (user_id, default_model, aspect_ratio, private_results, updated_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET "
        "default_model = excluded.default_model, aspect_ratio = excluded.aspect_ratio, "
        "private_results = excluded.private_results, updated_at = excluded.updated_at",
        (user_id, new.default_model, new.aspect_ratio, int(bool(new.private_results)), to_db(now)),
    )
    return new


async def get_user_settings(db: Database, user_id: int) -> UserSettings:
    """The user's settings; the defaults when they never set any."""
    return await db.read(_read, user_id)


async def set_user_settings(
    db: Database, user_id: int, *, now: datetime | None = None, **changes: Any
) -> UserSettings:
    """Change some of default_model, aspect_ratio, private_results (None clears a text one).
    The caller validates the values against the catalog; this only stores them."""
    unknown = set(changes) - _FIELDS
    if unknown:
        raise ValueError(f"unknown user settings: {', '.join(sorted(unknown))}")
    return await db.write(_write, user_id, changes, utc(now))
