"""Fixtures for the storage tests: a real SQLite file per test, and a clock the test controls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from storage import Database, NewJob, open_database

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


@pytest.fixture
async def db(tmp_path) -> AsyncIterator[Database]:
    database = await open_database(tmp_path / "data" / "kontext.db")
    try:
        yield database
    finally:
        await database.close()
