"""The usage report as one Discord message: a heading with the totals, the table, who is who, the CSV
and a spend-per-day chart. /usage (cogs/account.py) answers with it; the period reports
(cogs/alerts.py) post it in the admins' channel."""

from __future__ import annotations

import asyncio
import io
from datetime import date

import discord

from bot.charts import daily_series, spend_chart_png
from bot.money import total
from bot.reports import UsageReport
from cogs.account_embeds import usage_table, who_is_who


async def usage_message(
    report: UsageReport,
    per_day: UsageReport,
    *,
    heading: str,
    chart_title: str,
    start: date | None,
    end: date,
    name: str,
) -> tuple[str, list[discord.File]]:
    """(content, files) of the report; ``name`` goes into the files' names. The chart is drawn off
    the event loop."""
    series = daily_series({r.key: r.cost_micros for r in per_day.rows}, start=start, end=end)
    chart = await asyncio.to_thread(spend_chart_png, series, title=chart_title)
    spent = sum(r.cost_micros for r in report.rows)
    jobs = sum(r.jobs for r in report.rows)
    content = (
        f"{heading}: {jobs} job(s), {total(spent)} spent "
        f"(what the provider bills, free images included).\n```\n{usage_table(report)}\n```"
    )
    if report.overrun_micros:
        content += "\n" + report.overrun_note()
    legend = who_is_who(report)
    if legend:
        content += "\n" + legend
    files = [
        discord.File(io.BytesIO(report.to_csv().encode()), filename=f"usage-{name}-by-{report.by}.csv"),
        discord.File(io.BytesIO(chart), filename=f"spend-per-day-{name}.png"),
    ]
    return content, files
