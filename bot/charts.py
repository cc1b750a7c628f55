"""Charts for usage reports, drawn with Pillow alone. Pure and blocking: call through asyncio.to_thread.

One chart for now: spend per UTC day as bars, with a labelled money axis and a day axis. Days
without jobs are drawn as empty slots so gaps read as gaps, not as a compressed timeline.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Mapping, Sequence
from datetime import date, timedelta

from PIL import Image, ImageDraw, ImageFont

from bot.money import MICROS_PER_USD

log = logging.getLogger(__name__)

MAX_DAYS = 366  # the most recent days drawn; older ones are left to the CSV
HEIGHT = 420
MIN_WIDTH, MAX_WIDTH = 640, 1600
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 84, 24, 48, 64
MAX_X_LABELS = 12
BACKGROUND = (255, 255, 255)
INK = (40, 40, 48)
GRID = (225, 228, 235)
BAR = (88, 101, 242)  # Discord blurple


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size)


def _nice_step(top: float, ticks: int = 5) -> float:
    """A 1-2-5 step so that about ``ticks`` gridlines cover ``top``."""
    raw = top / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _money(usd: float, step: float) -> str:
    decimals = 2 if step >= 0.01 else min(6, -math.floor(math.log10(step)))
    return f"${usd:,.{decimals}f}"


def daily_series(
    spend: Mapping[str, int] | Sequence[tuple[str, int]],
    *,
    start: date | None = None,
    end: date | None = None,
) -> list[tuple[date, int]]:
    """Micro-dollars per ISO day, every day from ``start`` (or the first day with data) to ``end``
    (or the last), zeros filled in, at most MAX_DAYS (the latest)."""
    pairs = spend.items() if isinstance(spend, Mapping) else spend
    by_day: dict[date, int] = {}
    for key, micros in pairs:
        day = date.fromisoformat(key)
        by_day[day] = by_day.get(day, 0) + int(micros)
    first = start or (min(by_day) if by_day else end)
    last = end or (max(by_day) if by_day else start)
    if first is None or last is None:
        return []
    if last < first:
        first, last = last, first
    first = max(first, last - timedelta(days=MAX_DAYS - 1))
    return [
        (first + timedelta(days=i), by_day.get(first + timedelta(days=i), 0))
        for i in range((last - first).days + 1)
    ]


def spend_chart_png(series: Sequence[tuple[date, int]], *, title: str) -> bytes:
    """A PNG bar chart of spend (micro-dollars) per day. An empty series draws an empty chart."""
    n = max(1, len(series))
    width = max(MIN_WIDTH, min(MAX_WIDTH, MARGIN_LEFT + MARGIN_RIGHT + n * 14))
    img = Image.new("RGB", (width, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(img)
    font, small, bold = _font(13), _font(11), _font(16)
    left, top = MARGIN_LEFT, MARGIN_TOP
    right, bottom = width - MARGIN_RIGHT, HEIGHT - MARGIN_BOTTOM
    plot_h = bottom - top

    draw.text((left, 14), title, fill=INK, font=bold)
    peak = max((m for _, m in series), default=0) / MICROS_PER_USD
    step = _nice_step(peak) if peak > 0 else 0.25
    top_value = step * max(1, math.ceil(peak / step - 1e-9))

    # Gridlines and the money axis.
    ticks = round(top_value / step)
    for i in range(ticks + 1):
        value = step * i
        y = bottom - plot_h * value / top_value
        draw.line([(left, y), (right, y)], fill=GRID)
        label = _money(value, step)
        w = draw.textlength(label, font=small)
        draw.text((left - 8 - w, y - 7), label, fill=INK, font=small)
    draw.line([(left, top), (left, bottom)], fill=INK)
    draw.line([(left, bottom), (right, bottom)], fill=INK)

    # Bars, and a day label every few bars.
    slot = (right - left) / n
    gap = max(1.0, slot * 0.2) if slot >= 3 else 0.0
    every = max(1, math.ceil(len(series) / MAX_X_LABELS))
    for i, (day, micros) in enumerate(series):
        x0 = left + i * slot + gap / 2
        x1 = max(x0 + 1, left + (i + 1) * slot - gap / 2)
        if micros > 0:
            h = plot_h * (micros / MICROS_PER_USD) / top_value
            draw.rectangle([(x0, bottom - max(1.0, h)), (x1 - 1, bottom)], fill=BAR)
        if i % every == 0:
            label = day.strftime("%m-%d")
            w = draw.textlength(label, font=small)
            cx = (x0 + x1) / 2
            draw.line([(cx, bottom), (cx, bottom + 4)], fill=INK)
            draw.text((cx - w / 2, bottom + 6), label, fill=INK, font=small)

    # Axis titles.
    x_title = "Day (UTC)"
    draw.text(
        ((left + right) / 2 - draw.textlength(x_title, font=font) / 2, HEIGHT - 24),
        x_title,
        fill=INK,
        font=font,
    )
    y_title = Image.new("RGBA", (120, 18), (0, 0, 0, 0))
    ImageDraw.Draw(y_title).text((0, 0), "Spend (USD)", fill=INK, font=font)
    rotated = y_title.rotate(90, expand=True)
    img.paste(rotated, (4, top + plot_h // 2 - rotated.height // 2), rotated)
    if not series or peak == 0:
        empty = "no spend in this period"
        draw.text(
            ((left + right) / 2 - draw.textlength(empty, font=font) / 2, top + plot_h / 2 - 8),
            empty,
            fill=(130, 130, 140),
            font=font,
        )

    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()
