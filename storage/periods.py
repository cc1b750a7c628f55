"""UTC time as the database stores it, and the calendar periods quotas and budgets run in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

PERIODS = ("day", "week", "month")
DEFAULT_PERIOD = "month"
_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # fixed width: text order in SQL is time order


def utc(now: datetime | None = None) -> datetime:
    """``now`` as an aware UTC datetime; the current time when None. Naive values are taken as UTC."""
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        return now.replace(tzinfo=UTC)
    return now.astimezone(UTC)


def to_db(moment: datetime) -> str:
    """'2025-01-31T23:59:59.000000Z' (_FORMAT), by isoformat: the same text, a third faster."""
    if moment.tzinfo is not UTC:
        moment = utc(moment)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def from_db(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.fromisoformat(text)  # reads the trailing Z as UTC; far faster than strptime


@dataclass(frozen=True)
class Period:
    """[start, end): the period containing a moment. ``end`` is when the quota resets."""

    kind: str
    start: datetime
    end: datetime

    @property
    def first_day(self) -> str:
        return self.start.date().isoformat()

    @property
    def end_day(self) -> str:
        """The day after the last: the period is the days d with first_day <= d < end_day."""
        return self.end.date().isoformat()


def day_of(now: datetime) -> str:
    """The UTC day the ledger files a change under."""
    return utc(now).date().isoformat()


def period_at(kind: str, now: datetime) -> Period:
    """The day, ISO week (from Monday) or calendar month containing ``now``, in UTC."""
    now = utc(now)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == "day":
        return Period(kind, day, day + timedelta(days=1))
    if kind == "week":
        start = day - timedelta(days=day.weekday())
        return Period(kind, start, start + timedelta(days=7))
    if kind == "month":
        start = day.replace(day=1)
        end = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
        return Period(kind, start, end)
    raise ValueError(f"unknown period {kind!r}; expected one of {', '.join(PERIODS)}")
