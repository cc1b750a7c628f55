"""/kontext-admin: a server's budget, free quotas, teams, per-member cap, grants, refunds and channels
(budget alerts and reports: cogs/admin_alerts.py; rate limits: cogs/admin_rates.py; both mixed in).

The group is registered for Manage Server only (``default_permissions``), but a server owner can
change who sees a command in Server Settings > Integrations, so every subcommand checks Manage
Server again in code, from the permissions Discord resolved for the interaction. Guild only.
Every change goes through AccountService with ``actor_id`` = the admin, which writes the audit row
in the same transaction as the change. Replies are ephemeral and mention nobody.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.accounts import FREE_QUOTA_PERIODS, PERIODS, AccountService, GuildSettings
from bot.errors import UserError
from bot.money import price, total
from cogs.admin_alerts import AlertCommands
from cogs.admin_rates import RateCommands, add_rate_fields
from cogs.choices import catalog_choices
from cogs.replies import NO_MENTIONS, can_manage, model_short, reply_error, safe_text

if TYPE_CHECKING:
    from bot.client import KontextBot

log = logging.getLogger(__name__)

PERIOD_CHOICES = [app_commands.Choice(name=f"per {p} (UTC)", value=p) for p in PERIODS]
FREE_PERIOD_CHOICES = [
    app_commands.Choice(name="off (no free images)" if p == "off" else f"per {p} (UTC)", value=p)
    for p in FREE_QUOTA_PERIODS
]
USD = app_commands.Range[str, 1, 24]
# Where images may be posted: text, announcement, voice and stage chats, forums, threads.
POSTING_CHANNELS = [
    discord.ChannelType.text,
    discord.ChannelType.news,
    discord.ChannelType.voice,
    discord.ChannelType.stage_voice,
    discord.ChannelType.forum,
    discord.ChannelType.media,
    discord.ChannelType.public_thread,
    discord.ChannelType.private_thread,
    discord.ChannelType.news_thread,
]


class PostingChannel(app_commands.Transformer):
    """A channel option answered as sent (id, name, type): nothing needs the channel in the cache."""

    @property
    def type(self) -> discord.AppCommandOptionType:
        return discord.AppCommandOptionType.channel

    @property
    def channel_types(self) -> list[discord.ChannelType]:
        return POSTING_CHANNELS

    async def transform(self, interaction: discord.Interaction, value: Any, /) -> Any:
        return value


Channel = app_commands.Transform[app_commands.AppCommandChannel, PostingChannel]


def _ok(text: str) -> str:
    return "✅ " + text


def _per(period: str) -> str:
    return f"per {period}"


def _channel_list(channels: frozenset[int]) -> str:
    if not channels:
        return "every channel (the allow-list is empty)"
    return ", ".join(f"<#{c}>" for c in sorted(channels))


def overview_embed(settings: GuildSettings, labels: dict[str, str]) -> discord.Embed:
    c = settings.config
    embed = discord.Embed(title="Kontext settings for this server", colour=discord.Colour.blurple())
    embed.add_field(
        name="Server budget",
        value=f"{total(c.budget_micros)} {_per(c.budget_period)}"
        if c.budget_micros
        else "none (no paid images unless a team pays)",
        inline=False,
    )
    embed.add_field(
        name="Per-member cap",
        value=f"{total(c.cap_micros)} {_per(c.cap_period)}" if c.cap_micros is not None else "none",
        inline=False,
    )
    quotas = [
        f"{'every other model' if model == '*' else labels.get(model, model_short(model))}: "
        + (f"{p.images} {_per(p.period)}" if p.images else "off")
        for model, p in sorted(settings.free_quotas.items())
    ]
    embed.add_field(
        name="Free quota",
        value="\n".join(quotas)[:1024] if quotas else "the catalog's defaults (see /models)",
        inline=False,
    )
    teams = [
        f"<@&{t.role_id}> → **{safe_text(t.name, 60)}**: {total(t.budget_micros)} {_per(t.period)}"
        + (" (retired)" if t.budget_micros == 0 else "")
        for t in settings.teams
    ]
    embed.add_field(name="Teams", value="\n".join(teams)[:1024] if teams else "none", inline=False)
    embed.add_field(
        name="Image commands allowed in", value=_channel_list(settings.channels)[:1024], inline=False
    )
    add_rate_fields(embed, settings, labels)
    over = settings.overrun_micros
    embed.add_field(
        name=f"Provider overruns this {c.budget_period}",
        value=f"{total(over)} reported beyond what jobs reserved; not charged (see /usage)"
        if over
        else "none (every job cost at most what it reserved)",
        inline=False,
    )
    return embed


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class AdminCog(
    AlertCommands,  # /kontext-admin alerts (cogs/admin_alerts.py)
    RateCommands,  # /kontext-admin rate (cogs/admin_rates.py)
    commands.GroupCog,
    group_name="kontext-admin",
    group_description="Admins: budget, free quota, teams, cap, rate, grants, refunds, channels, alerts",
):
    def __init__(self, bot: KontextBot) -> None:
        self.bot = bot

    @property
    def accounts(self) -> AccountService:
        return self.bot.services.accounts

    def _labels(self) -> dict[str, str]:
        return {m.id: m.label for m in self.bot.services.settings.catalog.models}

    async def _refused(self, interaction: discord.Interaction) -> bool:
        """True (after telling them) when the member may not administer the bot here."""
        if interaction.guild_id is None:
            await reply_error(interaction, "Admin commands work in a server, not in direct messages.")
            return True
        if not can_manage(interaction):
            await reply_error(interaction, "Only members with the Manage Server permission can do that.")
            return True
        return False

    async def _say(self, interaction: discord.Interaction, text: str) -> None:
        await interaction.response.send_message(_ok(text), ephemeral=True, allowed_mentions=NO_MENTIONS)

    # --- money ------------------------------------------------------------------------------------

    @app_commands.command(
        name="budget", description="Set the server budget that pays for images beyond free quota"
    )
    @app_commands.describe(
        usd="Budget in USD per period, e.g. 25 or 12.50 (0: no paid images)",
        period="When the budget starts over (calendar day, ISO week or month, UTC)",
    )
    @app_commands.choices(period=PERIOD_CHOICES)
    async def budget(self, interaction: discord.Interaction, usd: USD, period: str = "month") -> None:
        if await self._refused(interaction):
            return
        try:
            config = await self.accounts.set_budget(
                interaction.guild_id, usd, period, actor_id=interaction.user.id
            )
        except UserError as exc:
            await reply_error(interaction, exc)
            return
        if config.budget_micros == 0:
            text = "Server budget set to $0: only free images and team budgets pay for jobs now."
        else:
            text = (
                f"Server budget set to {total(config.budget_micros)} {_per(config.budget_period)}. "
                "It pays for images after a member's free quota and team budgets."
            )
        await self._say(interaction, text)

    @app_commands.command(name="team", description="Map a role to a team with its own budget")
    @app_commands.describe(
        role="Members with this role are charged to the team (after their free quota)",
        name="Team name shown to members, e.g. 'Design'",
        usd="Team budget in USD per period (0 retires the team)",
        period="When the team budget starts over (UTC)",
    )
    @app_commands.choices(period=PERIOD_CHOICES)
    async def team(
        self,
        interaction: discord.Interaction,
        role: discord.Role,
        name: app_commands.Range[str, 1, 100],
        usd: USD,
        period: str = "month",
    ) -> None:
        if await self._refused(interaction):
            return
        try:
            team = await self.accounts.set_team(
                interaction.guild_id, role.id, name, usd, period, actor_id=interaction.user.id
            )
        except UserError as exc:
            await reply_error(interaction, exc)
            return
        if team.budget_micros == 0:
            text = f"Team **{safe_text(team.name, 100)}** ({role.mention}) is retired: its budget is $0."
        else:
            text = (
                f"{role.mention} is team **{safe_text(team.name, 100)}** with "
                f"{total(team.budget_micros)} {_per(team.period)}. Its members' paid images are "
                "charged to it before the server budget."
            )
        await self._say(interaction, text)

    @app_commands.command(
        name="cap", description="Limit what one member may spend from team and server budgets"
    )
    @app_commands.describe(
        usd="Most a member may spend per period in USD, e.g. 2.50, or 'off' for no cap",
        period="When each member's spending starts over (UTC)",
    )
    @app_commands.choices(period=PERIOD_CHOICES)
    async def cap(self, interaction: discord.Interaction, usd: USD, period: str = "month") -> None:
        if await self._refused(interaction):
            return
        try:
            config = await self.accounts.set_cap(
                interaction.guild_id, usd, period, actor_id=interaction.user.id
            )
        except UserError as exc:
            await reply_error(interaction, exc)
            return
        if config.cap_micros is None:
            text = "No per-member cap: members may spend whatever the team and server budgets allow."
        else:
            text = (
                f"Each member may now spend at most {total(config.cap_micros)} "
                f"{_per(config.cap_period)} from team and server budgets."
            )
        await self._say(interaction, text)

    # --- free images ------------------------------------------------------------------------------

    @app_commands.command(name="free-quota", description="Set free images per member for a model, or all")
    @app_commands.describe(
        model="The model, or 'all' for every model without its own setting",
        images="Free images per member per period (0: none)",
        period="When free images start over (UTC), or 'off' for no free images",
        role="Only for members holding this role, in place of the server's ('off' removes the role's own)",
    )
    @app_commands.choices(period=FREE_PERIOD_CHOICES)
    async def free_quota(
        self,
        interaction: discord.Interaction,
        model: app_commands.Range[str, 1, 100],
        images: app_commands.Range[int, 0, 100_000],
        period: str = "month",
        role: discord.Role | None = None,
    ) -> None:
        if await self._refused(interaction):
            return
        role_id = None if role is None or role.is_default() else role.id
        try:
            await self.accounts.set_free_quota(
                interaction.guild_id, model, images, period, role_id=role_id, actor_id=interaction.user.id
            )
            which = (
                "every model without its own setting"
                if model in ("all", "*")
                else f"`{self.bot.services.settings.catalog.get(model).id}`"
            )
        except UserError as exc:
            await reply_error(interaction, exc)
            return
        if role_id is not None:
            text = (
                f"Members holding <@&{role_id}> get the server's free images of {which} again."
                if period == "off"
                else f"Members holding <@&{role_id}> now get {images} free image(s) {_per(period)} of "
                f"{which}, in place of the server's (the most generous of their roles wins)."
            )
        elif period == "off" or images == 0:
            text = f"Free images are off for {which}: jobs are paid from team or server budgets."
        else:
            text = f"Members now get {images} free image(s) {_per(period)} of {which}."
        await self._say(interaction, text)

    @free_quota.autocomplete("model")
    async def _free_quota_models(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return catalog_choices(interaction, current, include_all=True)

    @app_commands.command(name="grant", description="Give a member extra free images for this period")
    @app_commands.describe(
        user="The member who gets the images",
        model="The model the images are for",
        images="How many extra free images (they last until the model's free quota resets)",
    )
    async def grant(
        self,
        interaction: discord.Interaction,
        user: discord.Member,
        model: app_commands.Range[str, 1, 100],
        images: app_commands.Range[int, 1, 10_000],
    ) -> None:
        if await self._refused(interaction):
            return
        try:
            period = await self.accounts.grant(
                interaction.guild_id, user.id, model, images, actor_id=interaction.user.id
            )
            model_id = self.bot.services.settings.catalog.get(model).id
        except UserError as exc:
            await reply_error(interaction, exc)
            return
        text = (
            f"Gave {user.mention} {images} extra free image(s) of `{model_id}`, "
            f"usable until {discord.utils.format_dt(period.end, 'f')}."
        )
        await self._say(interaction, text)

    @grant.autocomplete("model")
    async def _grant_models(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return catalog_choices(interaction, current)

    @app_commands.command(
        name="refund", description="Give back what a job was charged (free images or money)"
    )
    @app_commands.describe(
        job_id="The job id, as shown under a result or in /history",
        reason="Why, for the audit log (optional)",
    )
    async def refund(
        self,
        interaction: discord.Interaction,
        job_id: app_commands.Range[str, 1, 40],
        reason: app_commands.Range[str, 1, 200] | None = None,
    ) -> None:
        if await self._refused(interaction):
            return
        job_id = job_id.strip().lower()
        try:
            result = await self.accounts.refund(
                job_id, actor_id=interaction.user.id, reason=reason or "", guild_id=interaction.guild_id
            )
            job = await self.bot.services.jobs.get(job_id)
        except UserError as exc:
            await reply_error(interaction, exc)
            return
        if result.already:
            await reply_error(interaction, f"Job `{job_id}` has nothing left to refund; nothing changed.")
            return
        back = []
        if result.returned_micros:
            payer = (job.charged_to if job else None) or ""
            to = (
                f"team {safe_text(payer[5:], 60)}"
                if payer.startswith("team:")
                else "the server budget"
                if payer == "guild"
                else payer or "its payer"
            )
            back.append(f"{price(result.returned_micros)} back to {to}")
        if result.returned_images:
            owner = f"<@{job.user_id}>" if job and job.user_id else "the member"
            back.append(f"{result.returned_images} free image(s) back to {owner}")
        what = " and ".join(back) or "nothing was charged for it"
        stopped = (
            " It had not finished: it was cancelled, and the member was told." if result.cancelled else ""
        )
        await self._say(interaction, f"Refunded job `{job_id}`: {what}.{stopped}")

    # --- channels ---------------------------------------------------------------------------------

    @app_commands.command(name="channel-allow", description="Allow image commands in a channel")
    @app_commands.describe(channel="Channel to add to the allow-list (with a list, only those channels work)")
    async def channel_allow(self, interaction: discord.Interaction, channel: Channel) -> None:
        if await self._refused(interaction):
            return
        try:
            channels = await self.accounts.set_channel(
                interaction.guild_id, channel.id, True, actor_id=interaction.user.id
            )
        except UserError as exc:
            await reply_error(interaction, exc)
            return
        allowed = _channel_list(channels)
        await self._say(
            interaction, f"Image commands are allowed in <#{channel.id}>. They now work only in: {allowed}."
        )

    @app_commands.command(name="channel-deny", description="Remove a channel from the allow-list")
    @app_commands.describe(channel="Channel to remove from the allow-list")
    async def channel_deny(self, interaction: discord.Interaction, channel: Channel) -> None:
        if await self._refused(interaction):
            return
        try:
            channels = await self.accounts.set_channel(
                interaction.guild_id, channel.id, False, actor_id=interaction.user.id
            )
        except UserError as exc:
            await reply_error(interaction, exc)
            return
        if channels:
            text = f"<#{channel.id}> removed. Image commands work only in: {_channel_list(channels)}."
        else:
            text = (
                f"<#{channel.id}> removed. The allow-list is now empty, so image commands work in "
                "every channel again."
            )
        await self._say(interaction, text)

    @app_commands.command(name="channels", description="List the channels where image commands work")
    async def channels(self, interaction: discord.Interaction) -> None:
        if await self._refused(interaction):
            return
        channels = await self.accounts.allowed_channels(interaction.guild_id)
        await interaction.response.send_message(
            f"Image commands work in: {_channel_list(channels)}.",
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )

    # --- overview ---------------------------------------------------------------------------------

    @app_commands.command(
        name="overview", description="Everything set for this server: budget, cap, quotas, teams"
    )
    async def overview(self, interaction: discord.Interaction) -> None:
        if await self._refused(interaction):
            return
        settings = await self.accounts.guild_settings(interaction.guild_id)
        await interaction.response.send_message(
            embed=overview_embed(settings, self._labels()), ephemeral=True, allowed_mentions=NO_MENTIONS
        )


async def setup(bot: KontextBot) -> None:
    await bot.add_cog(AdminCog(bot))
