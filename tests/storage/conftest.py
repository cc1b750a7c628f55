"""Fixtures for the storage tests: a real database per test on each backend (SQLite file,
PostgreSQL schema), and a clock the test controls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from storage import Conn, Database, NewJob, QuotaRefused, open_database

T0 = datetime(2025, 3, 12, 12, 0, tzinfo=UTC)  # a Wednesday in the middle of a month
GUILD = 100
PRICE = 40_000  # $0.04 per image


def new_job(**overrides: Any) -> NewJob:
    """A one-image job of model "m" (5 free images a month) by user 1 in GUILD."""
    fields: dict[str, Any] = {
        "model": "m",
        "prompt": "a red fox",
        "images": 1,
        "price_micros": PRICE,
        "free_quota": 5,
        "user_id": 1,
        "guild_id": GUILD,
        "channel_id": 7,
    }
    fields.update(overrides)
    return NewJob(**fields)


def shortfall(refused: pytest.ExceptionInfo[QuotaRefused], kind: str) -> tuple[int, int, datetime]:
    """(left, limit, resets_at) of the one shortfall of ``kind`` in a refusal."""
    (found,) = [s for s in refused.value.refusal.shortfalls if s.kind == kind]
    return found.left, found.limit, found.resets_at


async def tamper(db: Database, sql: str, *params: Any) -> None:
    """Another program changing rows behind the bot's back: straight SQL, no storage function."""

    async def op(conn: Conn) -> None:
        await conn.execute(sql, params)

    await db.write(op)


@pytest.fixture
async def db(db_target) -> AsyncIterator[Database]:
    database = await open_database(db_target)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def sqlite_db(tmp_path) -> AsyncIterator[Database]:
    """For what only SQLite has: pragmas, its files, the aiosqlite thread, group commit."""
    database = await open_database(tmp_path / "data" / "kontext.db")
    try:
        yield database
    finally:
        await database.close()
