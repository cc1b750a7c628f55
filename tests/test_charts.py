"""bot/charts.py (spend per day as a PNG) and the named report windows of /usage."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime

import pytest
from PIL import Image

from bot.accounts import USAGE_WINDOWS, usage_window
from bot.charts import MAX_DAYS, daily_series, spend_chart_png
from bot.errors import ValidationError


def test_daily_series_fills_the_days_without_spend():
    series = daily_series(
        {"2025-03-02": 40_000, "2025-03-04": 97_223}, start=date(2025, 3, 1), end=date(2025, 3, 5)
    )
    assert series == [
        (date(2025, 3, 1), 0),
        (date(2025, 3, 2), 40_000),
        (date(2025, 3, 3), 0),
        (date(2025, 3, 4), 97_223),
        (date(2025, 3, 5), 0),
    ]


def test_daily_series_without_bounds_spans_the_data_and_keeps_the_latest_days():
    assert daily_series([]) == []
    assert daily_series([("2025-01-02", 5)], end=date(2025, 1, 3)) == [
        (date(2025, 1, 2), 5),
        (date(2025, 1, 3), 0),
    ]
    long = daily_series({"2020-01-01": 1, "2024-12-31": 2})
    assert len(long) == MAX_DAYS and long[-1] == (date(2024, 12, 31), 2)


@pytest.mark.parametrize(
    "series",
    [
        [],
        [(date(2025, 1, 1), 0)],
        [(date(2025, 1, 1), 48_612), (date(2025, 1, 2), 0), (date(2025, 1, 3), 1_234_567_890)],
        daily_series({"2024-01-01": 3, "2024-12-31": 10_000_000}),
    ],
)
def test_spend_chart_is_a_png_of_a_sensible_size(series):
    data = spend_chart_png(series, title="Spend per day, this month (USD)")
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG" and 640 <= img.width <= 1600 and img.height == 420


def test_spend_chart_draws_bars_for_spend():
    empty = Image.open(io.BytesIO(spend_chart_png([(date(2025, 1, 1), 0)], title="t")))
    full = Image.open(io.BytesIO(spend_chart_png([(date(2025, 1, 1), 1_000_000)], title="t")))
    blurple = (88, 101, 242)
    assert blurple not in {c for _, c in empty.getcolors(1 << 16)}
    assert blurple in {c for _, c in full.getcolors(1 << 16)}


NOW = datetime(2025, 5, 15, 13, 30, tzinfo=UTC)  # a Thursday


@pytest.mark.parametrize(
    ("window", "since"),
    [
        ("today", datetime(2025, 5, 15, tzinfo=UTC)),
        ("week", datetime(2025, 5, 12, tzinfo=UTC)),
        ("month", datetime(2025, 5, 1, tzinfo=UTC)),
        ("last-30-days", datetime(2025, 4, 15, 13, 30, tzinfo=UTC)),
        ("all", None),
    ],
)
def test_usage_windows_in_utc(window, since):
    assert window in USAGE_WINDOWS
    assert usage_window(window, NOW) == (since, None)


def test_an_unknown_window_is_refused():
    with pytest.raises(ValidationError, match="period must be one of today, week"):
        usage_window("fortnight", NOW)
