"""What members see while they wait: every queued job's place in line, in the order claims
serve them (see storage/queue.py for the order)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from storage.conn import Conn
from storage.db import Database
from storage.queue import FAIR_ORDER


async def _positions(conn: Conn) -> dict[str, int]:
    rows = await conn.fetchall(FAIR_ORDER + "ORDER BY q.turn, j.created_at, j.id")
    return {r["id"]: i for i, r in enumerate(rows, 1)}


async def positions(db: Database) -> dict[str, int]:
    """Every queued job's place in line (1 = next), in the order claims serve them."""
    return await db.read(_positions)


@dataclass(frozen=True)
class Waiting:
    job_id: str
    position: int
    delivery: Mapping[str, Any] | None
    waiting_reason: str | None  # e.g. "provider_busy:wavespeed"


async def _waiting(conn: Conn) -> list[Waiting]:
    rows = await conn.fetchall(
        "SELECT j.id, j.delivery, j.waiting_reason FROM jobs j JOIN ("
        " SELECT id, ROW_NUMBER() OVER (PARTITION BY coalesce(user_id, -1) ORDER BY created_at, id) AS turn"
        " FROM jobs WHERE status = 'queued') q ON q.id = j.id ORDER BY q.turn, j.created_at, j.id"
    )
    return [
        Waiting(r["id"], i, json.loads(r["delivery"]) if r["delivery"] else None, r["waiting_reason"])
        for i, r in enumerate(rows, 1)
    ]


async def waiting(db: Database) -> list[Waiting]:
    """Every queued job with its place in line and where its member sees it."""
    return await db.read(_waiting)


async def _depth(conn: Conn) -> dict[str, int]:
    rows = await conn.fetchall(
        "SELECT status, count(*) AS n FROM jobs WHERE status IN ('queued', 'running') GROUP BY status"
    )
    found = {r["status"]: r["n"] for r in rows}
    return {"queued": found.get("queued", 0), "running": found.get("running", 0)}


async def depth(db: Database) -> dict[str, int]:
    """How many jobs are queued and running, all processes together."""
    return await db.read(_depth)
