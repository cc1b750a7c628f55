"""What SQLite's failures mean: its errors as the facts of storage/errors.py, and whether a
database file has room to grow (a job is not recorded without it, see SqliteDatabase.ensure_room)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from storage.errors import DatabaseBusy, DatabaseFull, IntegrityViolation, NotADatabase, StorageError

try:
    import resource
except ImportError:  # not on Windows: no file size limit to read there
    resource = None  # type: ignore[assignment]

# Room a job's whole life needs, many times over: it appends a few dozen pages to the WAL. A job is
# not recorded without it, so one the disk could not see through never holds a reservation.
ROOM_BYTES = 1 << 20


def room_problem(path: Path, need: int | None = None) -> str | None:
    """Why writes to the database at ``path`` may not fit (the process's file size limit, the free
    space on its disk); None when there is room for ``need`` (ROOM_BYTES) bytes more."""
    need = ROOM_BYTES if need is None else need
    files = (path, path.with_name(path.name + "-wal"))
    largest = max((f.stat().st_size for f in files if f.exists()), default=0)
    if resource is not None:
        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if soft != resource.RLIM_INFINITY and soft < largest + need:
            return f"this process may write files of at most {soft} bytes (ulimit -f); the file is {largest}"
    free = shutil.disk_usage(path.parent).free
    if free < need:
        return f"{free} bytes free on its disk"
    return None


def _no_room(label: str) -> bool:
    try:
        return room_problem(Path(label)) is not None
    except OSError:
        return False


def translate(exc: BaseException, label: str) -> BaseException:
    """sqlite3's errors as the facts of storage/errors.py; anything else as it is."""
    if not isinstance(exc, sqlite3.Error):
        return exc
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    if isinstance(exc, sqlite3.IntegrityError):
        new: StorageError = IntegrityViolation(text)
    elif name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in text:
        new = DatabaseBusy(label, text)
    elif name.startswith("SQLITE_FULL") or "disk is full" in text:
        new = DatabaseFull(label, text)
    elif name == "SQLITE_IOERR_WRITE" and _no_room(label):
        new = DatabaseFull(label, text)  # the write failed because the file could not grow
    elif name.startswith("SQLITE_NOTADB") or "not a database" in text:
        new = NotADatabase(label, text)
    else:
        return exc
    new.__cause__ = exc
    return new
