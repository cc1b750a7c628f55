"""What budget alerts and period reports say, in one message each (Discord markdown: bold, mentions
that ping nobody since the poster allows none, and timestamps each reader sees in their own zone)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from bot.money import price, total
from storage.alerts import AlertSettings, Budget, Overrun

PERIOD_WORDS = {"day": "today", "week": "this week", "month": "this month"}
REPORT_WORDS = {"weekly": "Weekly", "monthly": "Monthly"}


def when(moment: datetime) -> str:
    """A Discord timestamp: the date and time in the reader's zone, and how far away it is."""
    unix = int(moment.timestamp())
    return f"<t:{unix}:f> (<t:{unix}:R>)"


def budget_name(b: Budget) -> str:
    return "The server budget" if b.subject == "guild" else f"Team **{_plain(b.name)}**'s budget"


def _plain(text: str) -> str:
    # Team names are admin text: no markdown or mentions of their own in a bold span.
    return "".join(c for c in text if c not in "*_`~|<>@#\n")[:100] or "?"


def budget_text(b: Budget, crossed: Sequence[int], top: Sequence[tuple[int, int]]) -> str:
    """``b`` crossed ``crossed`` (percentages, rising; the highest leads)."""
    share = b.spent_micros * 100 // b.limit_micros if b.limit_micros else 0
    highest = max(crossed)
    also = f" (also {', '.join(f'{t}%' for t in crossed[:-1])})" if len(crossed) > 1 else ""
    icon = "🚨" if highest >= 100 else "📊"
    lines = [
        f"{icon} {budget_name(b)} passed **{highest}%**{also} {PERIOD_WORDS.get(b.period, b.period)}: "
        f"{total(b.spent_micros)} of {total(b.limit_micros)} spent ({share}%).",
    ]
    if top:
        lines.append("Top spenders: " + ", ".join(f"<@{user}> {total(micros)}" for user, micros in top) + ".")
    lines.append(f"It resets {when(b.resets_at)}.")
    return "\n".join(lines)


def payer_words(payer: str) -> str:
    if payer.startswith("team:"):
        return f"team **{_plain(payer[5:])}**"
    return "the server budget" if payer == "guild" else payer


def overrun_text(o: Overrun) -> str:
    who = f" for <@{o.user_id}>" if o.user_id else ""
    via = f" on {o.provider}" if o.provider else ""
    return (
        f"⚠️ The provider billed job `{o.job_id}`{who} ({o.model.split('/', 1)[-1]}{via}) "
        f"{price(o.cost_micros)}, {price(o.overrun_micros)} more than the {price(o.reserved_micros)} "
        f"reserved for it. The whole cost was charged to {payer_words(o.payer)}."
    )


def report_title(report: str, start: datetime, end: datetime) -> str:
    last = (end - timedelta(days=1)).astimezone(UTC).date()
    return f"📈 **{REPORT_WORDS.get(report, report)} usage report**, {start.date()} to {last} (UTC)"


def settings_text(s: AlertSettings, channel: str) -> str:
    """What is set, after "Guild N: " or the like; ``channel`` is how the face names the channel."""
    if s.channel_id is None or not s.on:
        return "budget alerts and reports are off."
    parts = []
    if s.thresholds:
        at = ", ".join(f"{t}%" for t in s.thresholds)
        parts.append(f"alerts at {at} of each budget and on provider overruns")
    if s.report != "off":
        parts.append(f"a {s.report} usage report")
    return f"in {channel}, {'; '.join(parts)}."
