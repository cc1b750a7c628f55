"""/kontext-admin alerts: budget alerts and period reports in a channel.

A mixin of AdminCog (cogs/admin.py): discord.py's GroupCog gathers the app commands of every class
in its MRO, so this subcommand joins the /kontext-admin group while living in its own module. It
uses AdminCog's ``_refused`` (Manage Server, checked in code) and ``_say``. The posting itself is
cogs/alerts.py's, in every process that talks to Discord.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot.alert_text import settings_text
from bot.errors import UserError
from cogs.replies import NO_MENTIONS, reply_error

if TYPE_CHECKING:
    from bot.client import KontextBot

log = logging.getLogger(__name__)

REPORT_CHOICES = [
    app_commands.Choice(name="weekly (when each week ends, Monday 00:00 UTC)", value="weekly"),
    app_commands.Choice(name="monthly (when each month ends, UTC)", value="monthly"),
    app_commands.Choice(name="off (no reports)", value="off"),
]
# Where the bot can post a plain message: text and announcement channels, voice and stage chats,
# threads (a forum takes posts, not messages).
ALERT_CHANNELS = [
    discord.ChannelType.text,
    discord.ChannelType.news,
    discord.ChannelType.voice,
    discord.ChannelType.stage_voice,
    discord.ChannelType.public_thread,
    discord.ChannelType.private_thread,
    discord.ChannelType.news_thread,
]


class AlertChannel(app_commands.Transformer):
    """A channel option answered as sent: nothing needs the channel in the cache."""

    @property
    def type(self) -> discord.AppCommandOptionType:
        return discord.AppCommandOptionType.channel

    @property
    def channel_types(self) -> list[discord.ChannelType]:
        return ALERT_CHANNELS

    async def transform(self, interaction: discord.Interaction, value: Any, /) -> Any:
        return value


Channel = app_commands.Transform[app_commands.AppCommandChannel, AlertChannel]


class AlertCommands:
    """``/kontext-admin alerts``; see the module docstring."""

    bot: KontextBot

    if TYPE_CHECKING:

        async def _refused(self, interaction: discord.Interaction) -> bool: ...

        async def _say(self, interaction: discord.Interaction, text: str) -> None: ...

    @app_commands.command(
        name="alerts", description="Budget alerts and weekly or monthly usage reports in a channel"
    )
    @app_commands.describe(
        channel="Where to post alerts and reports (leave everything empty to see what is set)",
        at="Percentages of each budget to alert at, rising, e.g. 50,80,100 ('off': reports only)",
        report="Post the usage report (table, CSV, chart) when each week or month ends",
        off="Stop alerts and reports",
    )
    @app_commands.choices(report=REPORT_CHOICES)
    async def alerts(
        self,
        interaction: discord.Interaction,
        channel: Channel | None = None,
        at: app_commands.Range[str, 1, 60] | None = None,
        report: str | None = None,
        off: bool = False,
    ) -> None:
        if await self._refused(interaction):
            return
        service = self.bot.services.alerts
        try:
            if not off and channel is None and at is None and report is None:
                current = await service.settings(interaction.guild_id)
                await interaction.response.send_message(
                    "Budget alerts: " + _words(current), ephemeral=True, allowed_mentions=NO_MENTIONS
                )
                return
            done = await service.configure(
                interaction.guild_id,
                channel_id=channel.id if channel is not None else None,
                at=at,
                report=report,
                off=off,
                actor_id=interaction.user.id,
            )
        except UserError as exc:
            await reply_error(interaction, exc)
            return
        await self._say(interaction, "Budget alerts: " + _words(done))


def _words(settings: Any) -> str:
    return settings_text(settings, f"<#{settings.channel_id}>")
