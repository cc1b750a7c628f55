"""What the buttons do: Re-roll, Edit again, Use seed, Delete on results; Cancel on jobs not done.

The buttons themselves (cogs/views.py) carry the action and the job id; this cog answers a click,
in whichever process received it, from the job's record in the database.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from bot.errors import UserError
from bot.requests import purpose_of
from cogs.replies import NO_MENTIONS, is_admin, tell_error
from cogs.starting import start_job
from cogs.views import BUTTONS_COG, JobButton

if TYPE_CHECKING:
    from bot.client import KontextBot

log = logging.getLogger(__name__)


class ButtonsCog(commands.Cog, name=BUTTONS_COG):
    def __init__(self, bot: KontextBot) -> None:
        self.bot = bot

    async def handle(self, interaction: discord.Interaction, action: str, job_id: str) -> None:
        handlers = {
            "reroll": self.reroll,
            "again": self.edit_again,
            "seed": self.use_seed,
            "del": self.delete,
            "cancel": self.cancel,
        }
        await handlers[action](interaction, job_id)

    async def reroll(self, interaction: discord.Interaction, job_id: str) -> None:
        """Same model, prompt, inputs and settings, a new seed; charged to whoever clicks."""
        jobs = self.bot.services.jobs
        record = await jobs.get(job_id)
        if record is None:
            raise UserError(f"Job {job_id} is no longer on record.")
        inputs = await jobs.stored_inputs(record)
        model = self.bot.services.settings.catalog.get(record.model)
        # The record holds every parameter with its default filled in. Passing the defaults back
        # as if the member had chosen them would rule out routes that cannot carry them.
        params = {
            k: v
            for k, v in record.params.items()
            if k != "seed" and k in model.params and (k == "aspect_ratio" or v != model.params[k].default)
        }
        await start_job(
            self.bot,
            interaction,
            purpose=purpose_of(len(inputs)),
            model=record.model,
            prompt=record.prompt,
            params=params,
            images=inputs,
            source="reroll",
        )

    async def edit_again(self, interaction: discord.Interaction, job_id: str) -> None:
        """A new prompt applied to this result: chains of edits are what Kontext is for."""
        message = interaction.message
        # Our files are kontext-<job>-<n>.<ext>; a flagged one carries Discord's SPOILER_ prefix.
        results = [a for a in (message.attachments if message else []) if "kontext-" in a.filename]
        if not results:
            raise UserError("This result has no image left to edit.")
        record = await self.bot.services.jobs.get(job_id)
        if record is None:
            raise UserError(f"Job {job_id} is no longer on record.")
        await interaction.response.send_modal(EditAgainModal(self.bot, record.model, results[0]))

    async def use_seed(self, interaction: discord.Interaction, job_id: str) -> None:
        record = await self.bot.services.jobs.get(job_id)
        if record is None:
            raise UserError(f"Job {job_id} is no longer on record.")
        seed = record.params.get("seed")
        if seed is None or seed == -1:
            raise UserError(f"{record.model} takes no seed, so this result cannot be repeated exactly.")
        await interaction.response.send_message(
            f"🌱 Seed **{seed}** — add `seed:{seed}` to /edit, /combine or /create with the same prompt "
            "and image to get the same result, or change the prompt a little to vary it.",
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )

    async def delete(self, interaction: discord.Interaction, job_id: str) -> None:
        await self.bot.services.jobs.get_owned(
            job_id, interaction.user.id, is_admin(interaction), "delete it"
        )
        await interaction.response.defer()
        # After a deferred update the "original response" is the message the button is on; this
        # works for ephemeral results and channel messages alike.
        await interaction.delete_original_response()

    async def cancel(self, interaction: discord.Interaction, job_id: str) -> None:
        await self.bot.services.jobs.cancel(
            job_id, user_id=interaction.user.id, is_admin=is_admin(interaction)
        )
        await interaction.response.send_message(
            f"✖️ Cancelled job `{job_id}`. Nobody was charged for it.",
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )


class EditAgainModal(discord.ui.Modal, title="Edit again"):
    prompt: discord.ui.TextInput[EditAgainModal] = discord.ui.TextInput(
        label="What should change now?",
        style=discord.TextStyle.paragraph,
        max_length=2000,
        custom_id="prompt",
    )

    def __init__(self, bot: KontextBot, model_id: str, attachment: discord.Attachment) -> None:
        super().__init__(timeout=600)
        self.bot = bot
        self.model_id = model_id
        self.attachment = attachment

    async def on_submit(self, interaction: discord.Interaction) -> None:
        model = self.bot.services.settings.catalog.get(self.model_id)
        await start_job(
            self.bot,
            interaction,
            purpose="edit",
            model=model.id if model.can_edit else None,  # a combine/create result: default editor
            prompt=str(self.prompt.value),
            params={},
            attachments=[self.attachment],
            source="edit-again",
        )

    async def on_error(self, interaction: discord.Interaction, error: Exception, /, *_: Any) -> None:
        log.error("edit-again modal failed (interaction %s)", interaction.id, exc_info=error)
        await tell_error(interaction, UserError("Something went wrong on our side."))


async def setup(bot: KontextBot) -> None:
    bot.add_dynamic_items(JobButton)
    await bot.add_cog(ButtonsCog(bot))
