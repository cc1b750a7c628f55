"""What people type into the account and admin commands, checked: ids, counts, amounts, periods,
dates. Both faces reach these through AccountService, so a slash option and a CLI flag accept
exactly the same values.

Each check raises ValidationError naming the input by its canonical name (``field``: "usd",
"images", "guild", ...), which each face renders its own way (``--usd`` on the command line, the
option ``usd`` in Discord).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from bot.errors import ValidationError
from bot.money import MICROS_PER_USD, usd_to_micros

PERIODS = ("day", "week", "month")

# Upper bounds, so a typo cannot set a budget no one meant (or a number the database cannot hold).
# The image counts are the slash options' own ranges (cogs/admin.py), so both faces accept the same.
MAX_USD = 1_000_000  # any one budget or cap, per period
MAX_FREE_QUOTA_IMAGES = 100_000  # free images per member per period
MAX_GRANT_IMAGES = 10_000  # extra free images in one grant
MAX_ID = 2**63 - 1  # Discord ids are 64-bit snowflakes below this; the database stores signed 64-bit
MAX_USD_CHARS = 24  # the slash option's length limit: "12.50", never a 1,000-digit number
MAX_RATE_JOBS = 10_000  # jobs per member per window
RATE_WINDOWS = ("10m", "1h", "1d")  # the windows the slash command offers; the CLI takes any in range
MAX_WINDOW_S = 7 * 86400
_WINDOW = re.compile(r"^\s*(\d{1,6})\s*([mhd])\s*$", re.IGNORECASE)
_UNIT_S = {"m": 60, "h": 3600, "d": 86400}


def discord_id(value: Any, field: str, *, zero_ok: bool = False) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if isinstance(value, bool) or number < 0 or number > MAX_ID or (number == 0 and not zero_ok):
        raise ValidationError(f"must be a Discord id (a positive whole number), not {value!r}.", field=field)
    return number


def count(value: Any, field: str, *, maximum: int, minimum: int = 0) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = minimum - 1
    if isinstance(value, bool) or isinstance(value, float) or not minimum <= number <= maximum:
        raise ValidationError(
            f"must be a whole number from {minimum} to {maximum:,}, not {value!r}.", field=field
        )
    return number


def usd_micros(usd: Any, field: str = "usd") -> int:
    text = str(usd).strip()
    try:
        if len(text) > MAX_USD_CHARS:
            raise ValueError(text)
        micros = usd_to_micros(text)
    except (ValueError, ArithmeticError):  # ArithmeticError: decimal's Overflow for "1e999999999"
        raise ValidationError(
            f"must be an amount in USD of 0 or more, like 5 or 12.50 (you gave {usd!r}).", field=field
        ) from None
    if micros > MAX_USD * MICROS_PER_USD:
        raise ValidationError(f"must be at most ${MAX_USD:,} per period (you gave {usd!r}).", field=field)
    return micros


def window_s(value: Any, field: str = "per") -> int:
    """A rate limit's window, "10m", "1h", "1d" (minutes, hours, days), in seconds."""
    found = _WINDOW.match(str(value)) if isinstance(value, str) else None
    seconds = int(found.group(1)) * _UNIT_S[found.group(2).lower()] if found else 0
    if not 60 <= seconds <= MAX_WINDOW_S:
        raise ValidationError(
            f"must be a window like 10m, 1h or 1d (minutes, hours or days; from 1m to 7d), not {value!r}.",
            field=field,
        )
    return seconds


def period(value: str, allowed: Sequence[str] = PERIODS) -> str:
    if value not in allowed:
        raise ValidationError(f"must be one of {', '.join(allowed)} (you gave {value!r}).", field="period")
    return value


def day_start(value: date | datetime | str | None, field: str, *, next_day: bool = False) -> datetime | None:
    """A report boundary. A bare date means midnight UTC; ``next_day`` makes ``until`` include it."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(
                f"must be a date like 2025-01-31 (you gave {value!r}).", field=field
            ) from None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    moment = datetime.combine(value, time(), tzinfo=UTC)
    return moment + timedelta(days=1) if next_day else moment


def backup_target(path: str | Path, now: datetime) -> Path:
    """Where ``db backup PATH`` writes: PATH itself, or a new timestamped file inside PATH when it
    is a folder (an existing one, or one written with a trailing slash), as ``cp`` would. Makes the
    folder if needed and proves it can be written to (a probe file, removed), so a backup that
    cannot be written fails here, before any copy starts. Blocking: call it off the event loop."""
    text = str(path)
    if not text.strip():
        raise ValidationError("must name a file or a folder for the backup.", field="path")
    target = Path(text)
    if target.is_dir() or text.endswith(("/", os.sep)):
        target = target / f"kontext-{now:%Y%m%d-%H%M%S}.db"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".kontext-probe-"):
            pass
    except OSError as exc:
        raise ValidationError(
            f"{text!r} cannot be written ({exc.strerror or type(exc).__name__}).", field="path"
        ) from None
    return target
