"""A member's own account: /quota, /models, /history, /settings, and /usage for those who manage spend.

Every answer is ephemeral (it is about one member's money or preferences) and mentions nobody.
Reads are a single database round trip, so they answer at once; /usage, which also draws a chart,
defers first and renders the chart off the event loop.

Who may run /usage: members with Manage Server, and "team leads". The bot has no separate notion of
a lead, so a member holding any role an admin mapped to a team (with a budget above 0) counts as
one. Managers see the whole server's report; a lead sees the jobs charged to the teams whose roles
they hold and their own jobs, nothing of other teams (bot.accounts decides: ``usage_scope``). The
report holds ids, counts and costs, never prompts or images. Permissions are
read from ``interaction.permissions``, which Discord resolves for this member at this moment
(owner and Administrator included), rather than from the role cache.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.accounts import USAGE_GROUPS, Viewer, usage_window
from bot.catalog import ASPECT_RATIOS
from bot.errors import UserError
from cogs.account_embeds import (
    history_embed,
    models_embed,
    quota_embed,
    scope_text,
    settings_embed,
)
from cogs.choices import catalog_choices
from cogs.replies import NO_MENTIONS, can_manage, reply_error, role_ids
from cogs.usage_post import usage_message

if TYPE_CHECKING:
    from bot.client import KontextBot

log = logging.getLogger(__name__)

HISTORY_LIMIT = 10
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


# --- helpers shared with cogs/admin.py -------------------------------------------------------------


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
            embed=models_embed(
                self.bot, free, interaction.guild_id is not None, await self.bot.services.jobs.providers()
            ),
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
        viewer = Viewer(interaction.user.id, role_ids(interaction.user), can_manage(interaction))
        try:
            scope = await accounts.usage_scope(interaction.guild_id, viewer)
        except UserError as exc:
            await reply_error(interaction, exc)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        now = datetime.now(UTC)
        try:
            since, until = usage_window(period, now)
            report = await accounts.usage(interaction.guild_id, since, until, by, scope)
            per_day = (
                report
                if by == "day"
                else await accounts.usage(interaction.guild_id, since, until, "day", scope)
            )
        except UserError as exc:
            await reply_error(interaction, exc)
            return
        label = WINDOW_LABELS.get(period, period)
        content, files = await usage_message(
            report,
            per_day,
            heading=f"**Usage {label}, by {by}**" + ("" if scope.whole else f" ({scope_text(scope)})"),
            chart_title=f"Spend per day, {label} (USD)",
            start=since.date() if since else None,
            end=now.date(),
            name=period,
        )
        await interaction.followup.send(content, files=files, ephemeral=True, allowed_mentions=NO_MENTIONS)


async def setup(bot: KontextBot) -> None:
    await bot.add_cog(AccountCog(bot))
