"""Calendar periods in UTC: the boundaries a quota resets at."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from storage.periods import from_db, period_at, to_db


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kind", "moment", "start", "end"),
    [
        ("day", at(2025, 3, 12, 23, 59, 59), at(2025, 3, 12), at(2025, 3, 13)),
        ("week", at(2025, 3, 12, 8), at(2025, 3, 10), at(2025, 3, 17)),  # Monday to Monday
        ("week", at(2025, 3, 16, 23, 59), at(2025, 3, 10), at(2025, 3, 17)),
        ("month", at(2025, 3, 31, 23, 59), at(2025, 3, 1), at(2025, 4, 1)),
        ("month", at(2024, 12, 31, 12), at(2024, 12, 1), at(2025, 1, 1)),
        ("month", at(2024, 2, 29, 12), at(2024, 2, 1), at(2024, 3, 1)),
    ],
)
def test_period_bounds(kind, moment, start, end):
    period = period_at(kind, moment)
    assert (period.start, period.end) == (start, end)


def test_the_boundary_belongs_to_the_next_period():
    boundary = at(2025, 4, 1)
    assert period_at("month", boundary - timedelta(microseconds=1)).start == at(2025, 3, 1)
    assert period_at("month", boundary).start == boundary


def test_other_time_zones_are_converted_to_utc():
    tokyo = timezone(timedelta(hours=9))
    # 08:00 on April 1st in Tokyo is still March 31st in UTC.
    assert period_at("month", datetime(2025, 4, 1, 8, tzinfo=tokyo)).start == at(2025, 3, 1)


def test_database_times_round_trip_and_sort_as_text():
    a, b = at(2025, 3, 1, 9, 5, 7), at(2025, 3, 1, 10)
    assert from_db(to_db(a)) == a
    assert to_db(a) < to_db(b)


def test_unknown_period_is_refused():
    with pytest.raises(ValueError, match="day, week, month"):
        period_at("fortnight", at(2025, 1, 1))
