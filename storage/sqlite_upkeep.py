"""SQLite upkeep on raw sqlite3 connections: the online backup of a live database (a consistent
copy, safe while the bot writes), WAL checkpoints and planner statistics (see storage/sqlite.py)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

from storage.errors import NotADatabase

log = logging.getLogger(__name__)

WAL_SIZE_LIMIT = 64 * 1024 * 1024
ANALYSIS_LIMIT = 1000  # rows ANALYZE samples per index: statistics in milliseconds at any size


async def backup(db: Any, path: Path) -> Path:
    """A consistent copy of the live database ``db`` (a storage.sqlite.SqliteDatabase).

    Written to a temporary file beside ``path`` and renamed into place, so ``path`` is never a
    half-written copy.
    """
    partial = path.with_name(path.name + ".partial")
    await asyncio.to_thread(_prepare_target, path, partial)
    await db.on_reader(_copy_to, partial, str(path))
    await asyncio.to_thread(partial.replace, path)
    log.info("database backed up to %s", path)
    return path


def _prepare_target(target: Path, partial: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial.unlink(missing_ok=True)


def _copy_to(source: sqlite3.Connection, partial: Path, label: str) -> None:
    dest = sqlite3.connect(partial)
    try:
        source.backup(dest)  # in one step: the copy is a single snapshot of the source
        # A copy is one self-contained file: no WAL beside it to lose when it is moved.
        dest.execute("PRAGMA journal_mode = DELETE")
        (result,) = dest.execute("PRAGMA quick_check").fetchone()
        if result != "ok":
            raise NotADatabase(label, f"the backup failed its integrity check: {result}")
    finally:
        dest.close()


def checkpoint(raw: sqlite3.Connection) -> int:
    # PASSIVE: copies what no reader still needs and never waits for (or blocks) the writer.
    # Returns the frames in the WAL.
    return int(raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])


def optimize(raw: sqlite3.Connection) -> None:
    raw.execute(f"PRAGMA analysis_limit = {ANALYSIS_LIMIT:d}")
    raw.execute("PRAGMA optimize")


def analyze(raw: sqlite3.Connection) -> None:
    # At open: statistics for every index (PRAGMA optimize of SQLite < 3.46 only analyzes tables
    # this connection has queried), sampled, so it takes milliseconds even over millions of rows.
    raw.execute(f"PRAGMA analysis_limit = {ANALYSIS_LIMIT:d}")
    raw.execute("ANALYZE")


def no_auto_checkpoint(raw: sqlite3.Connection) -> None:
    raw.execute("PRAGMA wal_autocheckpoint = 0")  # SqliteDatabase checkpoints on the report thread
    raw.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT:d}")  # a WAL that restarts shrinks back
