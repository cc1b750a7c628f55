"""A member's own account: /quota, /models, /history, /settings, and /usage for those who manage spend.

Every answer is ephemeral (it is about one member's money or preferences) and mentions nobody.
Reads are a single database round trip, so they answer at once; /usage, which also draws a chart,
defers first and renders the chart off the event loop.

Who may run /usage: members with Manage Server, and "team leads". The bot has no separate notion of
a lead, so a member holding any role an admin mapped to a team (with a budget above 0) counts as
one: whoever an admin trusts with a team budget may see where the money goes. Both see the whole
server's report; the report holds ids, counts and costs, never prompts or images. Permissions are
read from ``interaction.permissions``, which Discord resolves for this member at this moment
(owner and Administrator included), rather than from the role cache.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.accounts import USAGE_GROUPS, UsageReport, usage_window
from bot.catalog import ASPECT_RATIOS, SANDBOX, Model, Route
from bot.charts import daily_series, spend_chart_png
from bot.client import answer_privately
from bot.errors import UserError
from bot.money import micros_to_usd
from cogs.delivery import NO_MENTIONS, model_short, role_ids, safe_text

if TYPE_CHECKING:
    from bot.client import KontextBot
    from storage import Job, QuotaStatus, UserSettings

log = logging.getLogger(__name__)

COLOUR = discord.Colour.blurple()
ALL_CHOICE = "all"
HISTORY_LIMIT = 10
TABLE_CHARS = 1350  # the usage table, in a message of at most 2000 characters
WHO_CHARS = 450  # the user legend under it
WINDOW_LABELS = {
    "today": "today",
    "week": "this week",
    "month": "this month",
    "last-30-days": "the last 30 days",
    "all": "all time",
}
WINDOW_CHOICES = [
    app_commands.Choice(name="Today (UTC)", value="today"),
    app_commands.Choice(name="This week (from Monday, UTC)", value="week"),
    app_commands.Choice(name="This month (UTC)", value="month"),
    app_commands.Choice(name="Last 30 days", value="last-30-days"),
    app_commands.Choice(name="All time", value="all"),
]
BY_CHOICES = [app_commands.Choice(name=f"by {g}", value=g) for g in USAGE_GROUPS]
ASPECT_CHOICES = [app_commands.Choice(name=r, value=r) for r in ASPECT_RATIOS]
STATUS_ICONS = {
    "succeeded": "✅",
    "failed": "❌",
    "refused": "🚫",
    "cancelled": "✖️",
    "queued": "⏳",
    "running": "🎨",
}


# --- helpers shared with cogs/admin.py -------------------------------------------------------------


def _bot(interaction: discord.Interaction) -> KontextBot:
    return interaction.client  # type: ignore[return-value]


def for_discord(message: str) -> str:
    """AccountService names what was wrong as the CLI spells it (``--usd``); slash options have no
    dashes, so ``--usd`` becomes ``usd``, the option the member just filled in."""
    return re.sub(r"(?<![\w-])--([a-z][a-z_]*)", r"\1", message)


async def reply_error(interaction: discord.Interaction, error: UserError | str) -> None:
    """An ephemeral refusal, before or after the interaction was answered. (Unlike delivery's
    ``tell_error`` it does not add "You were not charged": nothing here ever charges anyone.)"""
    text = error.user_message if isinstance(error, UserError) else error
    await answer_privately(interaction, "⚠️ " + for_discord(text))


def can_manage(interaction: discord.Interaction) -> bool:
    """Manage Server (or Administrator, or the owner) as Discord resolved it for this interaction."""
    if interaction.guild_id is None:
        return False
    perms = interaction.permissions
    return perms.manage_guild or perms.administrator


def catalog_choices(
    interaction: discord.Interaction, current: str, *, include_all: bool = False
) -> list[app_commands.Choice[str]]:
    """Models of the catalog matching what was typed, those with an enabled route first."""
    svc = _bot(interaction).services
    enabled = set(svc.jobs.enabled)
    needle = current.strip().lower()
    choices: list[app_commands.Choice[str]] = []
    if include_all and (not needle or needle in "all models"):
        choices.append(
            app_commands.Choice(name="all models (every model without its own setting)", value="all")
        )
    ranked = sorted(svc.settings.catalog.models, key=lambda m: not _routes(m, enabled))
    for m in ranked:
        if needle and needle not in m.id.lower() and needle not in m.label.lower():
            continue
        choices.append(app_commands.Choice(name=f"{m.label} ({model_short(m.id)})"[:100], value=m.id))
    return choices[:25]


def _routes(model: Model, enabled: set[str]) -> list[Route]:
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
    spent = micros_to_usd(status.spent_micros)
    if status.cap_micros is None:
        paid = f"{spent} this period · no spending cap"
    else:
        left = max(0, status.cap_micros - status.spent_micros)
        paid = (
            f"{spent} of your {micros_to_usd(status.cap_micros)} cap · {micros_to_usd(left)} left, "
            f"resets {_when(status.cap_resets_at)}"
        )
    embed.add_field(name="Your paid images", value=paid, inline=False)
    if status.teams:
        team_lines = [
            f"**{safe_text(t.name.removeprefix('team:'), 60)}**: {micros_to_usd(t.remaining_micros)} left "
            f"of {micros_to_usd(t.budget_micros)} per {t.period}, resets {_when(t.resets_at)}"
            for t in status.teams
        ]
        embed.add_field(name="Your teams", value=_clip("\n".join(team_lines), 1024), inline=False)
    g = status.guild
    if g.budget_micros == 0:
        server = "no budget for paid images (only free images, unless a team pays)"
    else:
        server = (
            f"{micros_to_usd(g.remaining_micros)} left of {micros_to_usd(g.budget_micros)} per {g.period}, "
            f"resets {_when(g.resets_at)}"
        )
    embed.add_field(name="Server budget", value=server, inline=False)
    embed.add_field(name="Next reset", value=discord.utils.format_dt(status.resets_at, "f"), inline=False)
    embed.set_footer(text="Free images are used first, then a team budget, then the server budget.")
    return embed


def models_embed(bot: KontextBot, free: dict[str, tuple[int, int, str]], guild: bool) -> discord.Embed:
    """``free``: model id -> (limit, remaining, period) for this member."""
    svc = bot.services
    enabled = set(svc.jobs.enabled)
    embed = discord.Embed(title="Models", colour=COLOUR)
    if svc.settings.sandbox_only:
        embed.description = (
            "No provider key is set: every model runs in the free **sandbox**, which makes "
            "placeholder images."
        )
    for m in svc.settings.catalog.models[:25]:
        routes = _routes(m, enabled)
        if not routes:
            price = "not available (no enabled provider serves it)"
        elif routes[0].provider == SANDBOX:
            price = "free (sandbox)"
        else:
            price = f"{micros_to_usd(routes[0].price_micros)} per image via {routes[0].provider}"
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
    cost = micros_to_usd(job.actual_micros or 0)
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


# --- the cog ----------------------------------------------------------------------------------------


class AccountCog(commands.Cog):
    def __init__(self, bot: KontextBot) -> None:
        self.bot = bot

    def _labels(self) -> dict[str, str]:
        return {m.id: m.label for m in self.bot.services.settings.catalog.models}

    @app_commands.command(name="quota", description="Your free images, spending and budgets left")
    async def quota(self, interaction: discord.Interaction) -> None:
        try:
            report = await self.bot.services.accounts.quota(
                interaction.user.id, interaction.guild_id, role_ids(interaction.user)
            )
        except UserError as exc:
            await reply_error(interaction, exc)
            return
        guild_name = interaction.guild.name if interaction.guild else None
        await interaction.response.send_message(
            embed=quota_embed(report.status, self._labels(), guild_name),
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )

    @app_commands.command(name="models", description="The models you can use, what they take and cost")
    async def models(self, interaction: discord.Interaction) -> None:
        free: dict[str, tuple[int, int, str]] = {}
        try:
            report = await self.bot.services.accounts.quota(
                interaction.user.id, interaction.guild_id, role_ids(interaction.user)
            )
            free = {f.model: (f.limit, f.remaining, f.period) for f in report.status.free}
        except UserError as exc:
            await reply_error(interaction, exc)
            return
        await interaction.response.send_message(
            embed=models_embed(self.bot, free, interaction.guild_id is not None),
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )

    @app_commands.command(name="history", description="Your last jobs, with links to their results")
    async def history(self, interaction: discord.Interaction) -> None:
        try:
            jobs = await self.bot.services.jobs.history(
                interaction.user.id, interaction.guild_id, limit=HISTORY_LIMIT
            )
        except UserError as exc:
            await reply_error(interaction, exc)
            return
        await interaction.response.send_message(
            embed=history_embed(jobs), ephemeral=True, allowed_mentions=NO_MENTIONS
        )

    @app_commands.command(
        name="settings", description="Show or change your default model, aspect ratio, privacy"
    )
    @app_commands.describe(
        default_model="Model to use when a command does not name one (where it fits the command)",
        aspect_ratio="Width:height to use when a command does not set one",
        private_results="Show results only to you (ephemeral) instead of in the channel",
    )
    @app_commands.choices(aspect_ratio=ASPECT_CHOICES)
    async def settings(
        self,
        interaction: discord.Interaction,
        default_model: app_commands.Range[str, 1, 100] | None = None,
        aspect_ratio: str | None = None,
        private_results: bool | None = None,
    ) -> None:
        accounts = self.bot.services.accounts
        changing = any(v is not None for v in (default_model, aspect_ratio, private_results))
        try:
            if changing:
                prefs = await accounts.update_settings(
                    interaction.user.id,
                    default_model=default_model,
                    aspect_ratio=aspect_ratio,
                    private_results=private_results,
                )
            else:
                prefs = await accounts.settings(interaction.user.id)
        except UserError as exc:
            await reply_error(interaction, exc)
            return
        await interaction.response.send_message(
            embed=settings_embed(prefs, self._labels(), saved=changing),
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )

    @settings.autocomplete("default_model")
    async def _settings_models(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return catalog_choices(interaction, current)

    @app_commands.command(
        name="usage", description="Server usage report with CSV and chart (managers, team leads)"
    )
    @app_commands.describe(
        period="Which days to report (UTC)",
        by="Group the jobs by user, team (who paid), model or day",
    )
    @app_commands.choices(period=WINDOW_CHOICES, by=BY_CHOICES)
    @app_commands.guild_only()
    async def usage(self, interaction: discord.Interaction, period: str = "month", by: str = "user") -> None:
        accounts = self.bot.services.accounts
        if interaction.guild_id is None:
            await reply_error(interaction, "Usage reports are per server; run /usage in a server.")
            return
        if not can_manage(interaction) and not await self._leads_a_team(interaction):
            await reply_error(
                interaction, "Only members with Manage Server or a team role can see the usage report."
            )
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        now = datetime.now(UTC)
        try:
            since, until = usage_window(period, now)
            report = await accounts.usage(interaction.guild_id, since, until, by)
            per_day = (
                report if by == "day" else await accounts.usage(interaction.guild_id, since, until, "day")
            )
        except UserError as exc:
            await reply_error(interaction, exc)
            return
        label = WINDOW_LABELS.get(period, period)
        series = daily_series(
            {r.key: r.cost_micros for r in per_day.rows},
            start=since.date() if since else None,
            end=now.date(),
        )
        chart = await asyncio.to_thread(spend_chart_png, series, title=f"Spend per day, {label} (USD)")
        total = sum(r.cost_micros for r in report.rows)
        jobs = sum(r.jobs for r in report.rows)
        content = (
            f"**Usage {label}, by {by}**: {jobs} job(s), {micros_to_usd(total)} spent "
            f"(what the provider bills, free images included).\n```\n{usage_table(report)}\n```"
        )
        legend = who_is_who(report)
        if legend:
            content += "\n" + legend
        files = [
            discord.File(io.BytesIO(report.to_csv().encode()), filename=f"usage-{period}-by-{by}.csv"),
            discord.File(io.BytesIO(chart), filename=f"spend-per-day-{period}.png"),
        ]
        await interaction.followup.send(content, files=files, ephemeral=True, allowed_mentions=NO_MENTIONS)

    async def _leads_a_team(self, interaction: discord.Interaction) -> bool:
        # @everyone (whose id is the guild's) may fund a server-wide team, but it makes nobody a lead.
        roles = set(role_ids(interaction.user)) - {interaction.guild_id}
        if not roles or interaction.guild_id is None:
            return False
        teams = await self.bot.services.accounts.teams(interaction.guild_id)
        return any(t.role_id in roles and t.budget_micros > 0 for t in teams)


async def setup(bot: KontextBot) -> None:
    await bot.add_cog(AccountCog(bot))
