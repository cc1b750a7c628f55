"""Every command error ends in a private message, never "The application did not respond"."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.errors import UserError
from cogs.replies import answer_privately, user_error_text

if TYPE_CHECKING:
    from bot.client import KontextBot

log = logging.getLogger(__name__)


async def on_command_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
    original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
    if isinstance(original, UserError):
        await answer_privately(interaction, user_error_text(original, interaction.id))
        return
    if isinstance(original, app_commands.AppCommandError) and not isinstance(
        original, app_commands.CommandInvokeError
    ):
        # Check failures, missing permissions, cooldowns: discord.py's text is written for users.
        await answer_privately(interaction, f"⚠️ {original}")
        return
    name = interaction.command.qualified_name if interaction.command else "?"
    log.error("command /%s failed (interaction %s)", name, interaction.id, exc_info=original)
    await answer_privately(
        interaction,
        f"⚠️ Something went wrong on our side (reference {interaction.id}). "
        "Nothing was charged for it; please try again.",
    )


async def setup(bot: KontextBot) -> None:
    bot.tree.error(on_command_error)
