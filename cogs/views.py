"""The buttons on every result (and Cancel on every job not yet finished), alive across restarts:
the action and the job id are in each ``custom_id`` (``kx:<action>:<job id>``, a discord.py
DynamicItem), so a click after a restart, or on a message another process posted, finds its job
in the database. A click is handed to the buttons cog (cogs/buttons.py), which owns the actions."""

from __future__ import annotations

import logging
import re
from typing import Any

import discord

from bot.errors import UserError
from cogs.replies import tell_error

log = logging.getLogger(__name__)

BUTTONS_COG = "JobButtons"
# action -> (label, emoji, style)
LOOKS: dict[str, tuple[str, str, discord.ButtonStyle]] = {
    "reroll": ("Re-roll", "🎲", discord.ButtonStyle.primary),
    "again": ("Edit again", "✏️", discord.ButtonStyle.secondary),
    "seed": ("Use seed", "🌱", discord.ButtonStyle.secondary),
    "del": ("Delete", "🗑️", discord.ButtonStyle.danger),
    "cancel": ("Cancel", "✖️", discord.ButtonStyle.secondary),
}


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"kx:(?P<action>reroll|again|seed|del|cancel):(?P<job>[0-9a-z]{8,32})",
):
    def __init__(self, action: str, job_id: str) -> None:
        label, emoji, style = LOOKS[action]
        super().__init__(
            discord.ui.Button(label=label, emoji=emoji, style=style, custom_id=f"kx:{action}:{job_id}")
        )
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button[Any], match: re.Match[str]
    ) -> JobButton:
        return cls(match["action"], match["job"])

    async def callback(self, interaction: discord.Interaction) -> None:
        # discord.py only logs what a dynamic item raises; the member must always hear back.
        cog = interaction.client.get_cog(BUTTONS_COG)  # type: ignore[attr-defined]
        try:
            if cog is None:
                raise UserError("Buttons are not available right now; please try again in a minute.")
            await cog.handle(interaction, self.action, self.job_id)
        except UserError as exc:
            await tell_error(interaction, exc)
        except Exception:
            log.exception("button %s on job %s failed", self.action, self.job_id)
            await tell_error(interaction, UserError(f"Something went wrong on our side (job {self.job_id})."))


def result_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for action in ("reroll", "again", "seed", "del"):
        view.add_item(JobButton(action, job_id))
    return view


def cancel_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton("cancel", job_id))
    return view
