"""/kontext-admin rate, and the overview's rate limits and per-role free images.

``RateCommands`` is a mixin of AdminCog (cogs/admin.py), which gives it ``_refused``, ``_say`` and
``accounts``: the subcommand joins the /kontext-admin group with the same Manage Server check and
audit. The words for a limit are bot/refusals.py's, the same the command line prints.
"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bot.checks import MAX_RATE_JOBS
from bot.errors import UserError
from bot.refusals import rate_words
from cogs.replies import model_short, reply_error

WINDOW_CHOICES = [
    app_commands.Choice(name="10 minutes", value="10m"),
    app_commands.Choice(name="1 hour", value="1h"),
    app_commands.Choice(name="1 day", value="1d"),
]


def _who(role_id: int | None) -> str:
    return "Everyone else" if role_id is None else f"<@&{role_id}>"


def add_rate_fields(embed: discord.Embed, settings: Any, labels: dict[str, str]) -> None:
    """The overview's "Rate limits" and "Free images by role" (GuildSettings from AccountService)."""
    limits = [f"{_who(x.role_id)}: {rate_words(x)}" for x in settings.rate_limits]
    embed.add_field(name="Rate limits", value="\n".join(limits)[:1024] if limits else "none", inline=False)
    by_role = [
        f"<@&{role}> · {'every other model' if model == '*' else labels.get(model, model_short(model))}: "
        + (f"{p.images} per {p.period}" if p.images else "none")
        for role, models in sorted(settings.role_free_quotas.items())
        for model, p in sorted(models.items())
    ]
    if by_role:
        embed.add_field(name="Free images by role", value="\n".join(by_role)[:1024], inline=False)


class RateCommands:
    """Mixed into AdminCog; discord.py collects app commands from every class of a cog's MRO."""

    @app_commands.command(name="rate", description="At most N jobs per member in a rolling window")
    @app_commands.describe(
        jobs="Jobs each member may start per window (0: remove this limit)",
        per="The rolling window",
        role="Only for members holding this role, in place of the server-wide limit",
    )
    @app_commands.choices(per=WINDOW_CHOICES)
    async def rate(
        self: Any,
        interaction: discord.Interaction,
        jobs: app_commands.Range[int, 0, MAX_RATE_JOBS],
        per: str = "1h",
        role: discord.Role | None = None,
    ) -> None:
        if await self._refused(interaction):
            return
        role_id = None if role is None or role.is_default() else role.id  # @everyone: the server-wide one
        try:
            limits = await self.accounts.set_rate(
                interaction.guild_id, jobs, per, role_id=role_id, actor_id=interaction.user.id
            )
        except UserError as exc:
            await reply_error(interaction, exc)
            return
        who = "members without a limited role" if role_id is None else f"members holding <@&{role_id}>"
        if jobs == 0:
            text = f"No rate limit for {who} now."
        else:
            (limit,) = [x for x in limits if x.role_id == role_id]
            text = (
                f"{who[0].upper()}{who[1:]} may start at most {rate_words(limit)} each. A job over the "
                "limit is refused before anything is charged, saying when the next one is allowed."
            )
        listed = "\n".join(f"• {_who(x.role_id)}: {rate_words(x)}" for x in limits) or "• none"
        await self._say(
            interaction, f"{text}\nRate limits here (the most generous of a member's roles wins):\n{listed}"
        )
