"""The embeds and tables of the account commands (/quota, /models, /history, /settings, /usage)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

import discord

from bot.accounts import UsageReport, UsageScope
from bot.catalog import SANDBOX, Model, Route
from bot.money import price as price_text
from bot.money import total
from bot.refusals import rate_words
from cogs.replies import model_short, safe_text

if TYPE_CHECKING:
    from bot.client import KontextBot
    from bot.jobs import ProviderStatus
    from storage import Job, QuotaStatus, UserSettings

COLOUR = discord.Colour.blurple()
TABLE_CHARS = 1350  # the usage table, in a message of at most 2000 characters
WHO_CHARS = 450  # the user legend under it
STATUS_ICONS = {
    "succeeded": "✅",
    "failed": "❌",
    "refused": "🚫",
    "cancelled": "✖️",
    "queued": "⏳",
    "running": "🎨",
}


def routes_of(model: Model, enabled: set[str]) -> list[Route]:
    return [r for r in model.routes if r.provider in enabled]


def _when(moment: datetime) -> str:
    return discord.utils.format_dt(moment, "R")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- embeds ------------------------------------------------------------------------------------------


def quota_embed(status: QuotaStatus, labels: dict[str, str], guild_name: str | None) -> discord.Embed:
    where = f" in {safe_text(guild_name, 80)}" if guild_name else ""
    embed = discord.Embed(title=f"Your quota{where}", colour=COLOUR)
    lines = []
    for f in status.free:
        name = labels.get(f.model, model_short(f.model))
        if f.limit == 0:
            lines.append(f"**{name}**: no free images (paid from budgets)")
        else:
            extra = f", {f.granted} granted" if f.granted else ""
            lines.append(
                f"**{name}**: **{f.remaining}** of {f.limit} left{extra} · per {f.period}, "
                f"resets {_when(f.resets_at)}"
            )
    embed.add_field(name="Free images", value=_clip("\n".join(lines) or "—", 1024), inline=False)
    spent = total(status.spent_micros)
    if status.cap_micros is None:
        paid = f"{spent} this period · no spending cap"
    else:
        left = max(0, status.cap_micros - status.spent_micros)
        paid = (
            f"{spent} of your {total(status.cap_micros)} cap · {total(left)} left, "
            f"resets {_when(status.cap_resets_at)}"
        )
    embed.add_field(name="Your paid images", value=paid, inline=False)
    if status.teams:
        team_lines = [
            f"**{safe_text(t.name.removeprefix('team:'), 60)}**: {total(t.remaining_micros)} left "
            f"of {total(t.budget_micros)} per {t.period}, resets {_when(t.resets_at)}"
            for t in status.teams
        ]
        embed.add_field(name="Your teams", value=_clip("\n".join(team_lines), 1024), inline=False)
    g = status.guild
    if g.budget_micros == 0:
        server = "no budget for paid images (only free images, unless a team pays)"
    else:
        server = (
            f"{total(g.remaining_micros)} left of {total(g.budget_micros)} per {g.period}, "
            f"resets {_when(g.resets_at)}"
        )
    embed.add_field(name="Server budget", value=server, inline=False)
    if status.rates:
        rates = [
            f"{max(0, r.limit.jobs - r.used)} left of {rate_words(r.limit)}"
            + ("" if r.next_at is None else f" · next {_when(r.next_at)}")
            for r in status.rates
        ]
        embed.add_field(name="Jobs you can start", value=_clip("\n".join(rates), 1024), inline=False)
    embed.add_field(name="Next reset", value=discord.utils.format_dt(status.resets_at, "f"), inline=False)
    embed.set_footer(text="Free images are used first, then a team budget, then the server budget.")
    return embed


def models_embed(
    bot: KontextBot,
    free: dict[str, tuple[int, int, str]],
    guild: bool,
    providers: Sequence[ProviderStatus] = (),
) -> discord.Embed:
    """``free``: model id -> (limit, remaining, period) for this member; ``providers``: what each
    provider runs at once now (its learned limit, and whether it is paused)."""
    svc = bot.services
    enabled = set(svc.jobs.enabled)
    embed = discord.Embed(title="Models", colour=COLOUR)
    if svc.settings.sandbox_only:
        embed.description = (
            "No provider key is set: every model runs in the free **sandbox**, which makes "
            "placeholder images."
        )
    if providers:
        embed.add_field(
            name="Providers right now",
            value=_clip("\n".join(p.describe() for p in providers), 1024),
            inline=False,
        )
    for m in svc.settings.catalog.models[:24]:
        routes = routes_of(m, enabled)
        if not routes:
            price = "not available (no enabled provider serves it)"
        elif routes[0].provider == SANDBOX:
            price = "free (sandbox)"
        else:
            price = f"{price_text(routes[0].price_micros)} per image via {routes[0].provider}"
        limit, left, period = free.get(m.id, (m.free_quota, m.free_quota, "month"))
        free_text = f"{left} of {limit} free per {period}" if limit else "no free images"
        lines = [
            f"`{m.id}`",
            f"{m.kind} · {m.images_rule() if m.max_images else 'prompt only, no input image'}",
            f"Free: {free_text}" if guild else f"Free: {m.free_quota} per month",
            f"Price: {price}",
        ]
        if routes and routes[0].provider == SANDBOX:
            lines.append("🧪 sandbox")
        embed.add_field(name=m.label, value=_clip("\n".join(lines), 1024), inline=True)
    return embed


def _job_link(job: Job) -> str | None:
    if not job.posted_channel_id or not job.posted_message_id:
        return None
    guild = job.guild_id or "@me"
    return f"https://discord.com/channels/{guild}/{job.posted_channel_id}/{job.posted_message_id}"


def _job_cost(job: Job) -> str:
    if job.status != "succeeded":
        return "not charged"
    if job.reservation in ("refunded", "reversed"):
        return "refunded"
    cost = price_text(job.actual_micros or 0)
    if job.provider == SANDBOX:
        return "free (sandbox)"
    payer = job.charged_to or ""
    if payer == "free":
        return "free quota"
    if payer.startswith("team:"):
        return f"{cost} from team {safe_text(payer[5:], 40)}"
    if payer == "guild":
        return f"{cost} from the server budget"
    return cost


def history_embed(jobs: list[Job]) -> discord.Embed:
    embed = discord.Embed(title="Your recent jobs", colour=COLOUR)
    if not jobs:
        embed.description = "No jobs yet. Try /create, /edit or /combine."
        return embed
    blocks = []
    for job in jobs:
        icon = STATUS_ICONS.get(job.status, "•")
        head = f"{icon} `{job.id}` · {model_short(job.model)} · {job.status} · {_when(job.created_at)}"
        tail = [f"“{safe_text(job.prompt, 80)}”", _job_cost(job)]
        link = _job_link(job)
        if link:
            tail.append(f"[open result]({link})")
        blocks.append(head + "\n" + " · ".join(tail))
    embed.description = _clip("\n\n".join(blocks), 4096)
    embed.set_footer(text=f"Your last {len(jobs)} job(s), newest first.")
    return embed


def settings_embed(prefs: UserSettings, labels: dict[str, str], *, saved: bool) -> discord.Embed:
    embed = discord.Embed(title="Settings saved" if saved else "Your settings", colour=COLOUR)
    model = prefs.default_model
    embed.add_field(
        name="Default model",
        value=f"{labels.get(model, model)} (`{model}`)" if model else "the command's own default",
        inline=False,
    )
    embed.add_field(name="Aspect ratio", value=prefs.aspect_ratio or "the model's default", inline=False)
    embed.add_field(
        name="Private results",
        value="on: results are shown only to you"
        if prefs.private_results
        else "off: results are posted in the channel",
        inline=False,
    )
    embed.set_footer(
        text="The default model is used by the commands it fits; options you pick on a command win."
    )
    return embed


def scope_text(scope: UsageScope) -> str:
    """Whose jobs a narrowed report holds, in words."""
    names = ", ".join(safe_text(t.name, 40) for t in scope.teams)
    return f"your teams ({names}) and your own jobs"


def usage_table(report: UsageReport) -> str:
    """The report as a fixed-width table that fits in one message, cut at a row boundary."""
    # Inside a code block only backticks and line breaks can do harm (team names are admin text).
    keys = tuple(replace(r, key=_clip(r.key.replace("`", "'").replace("\n", " "), 40)) for r in report.rows)
    lines = replace(report, rows=keys).to_table().splitlines()
    kept: list[str] = []
    size = 0
    for i, line in enumerate(lines):
        if size + len(line) + 1 > TABLE_CHARS:
            kept.append(f"… {len(lines) - i} more row(s) in the CSV")
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(kept)


def who_is_who(report: UsageReport, limit: int = WHO_CHARS) -> str:
    """User ids in the table, as mentions Discord shows as names (they ping nobody: no mentions
    are allowed), for as many rows as fit."""
    if report.by != "user":
        return ""
    parts: list[str] = []
    for r in report.rows:
        if not r.key.isdigit():
            continue
        part = f"`{r.key}` <@{r.key}>"
        if sum(len(p) + 3 for p in parts) + len(part) > limit:
            parts.append("…")
            break
        parts.append(part)
    return "Who: " + " · ".join(parts) if parts else ""
