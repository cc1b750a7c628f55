"""Buttons on every result (and Cancel on every job in progress), alive across restarts: the action
and the job id are in each ``custom_id`` (``kx:<action>:<job id>``, discord.ui.DynamicItem), so a
click after a restart finds its job in the database."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord

from bot.errors import UserError
from cogs.delivery import NO_MENTIONS, start_job, tell_error

if TYPE_CHECKING:
    from bot.client import KontextBot
    from storage import Job

log = logging.getLogger(__name__)

CANCEL_WAIT = 10.0  # seconds a Cancel waits for the job to let go before answering anyway
# action -> (label, emoji, style)
LOOKS: dict[str, tuple[str, str, discord.ButtonStyle]] = {
    "reroll": ("Re-roll", "🎲", discord.ButtonStyle.primary),
    "again": ("Edit again", "✏️", discord.ButtonStyle.secondary),
    "seed": ("Use seed", "🌱", discord.ButtonStyle.secondary),
    "del": ("Delete", "🗑️", discord.ButtonStyle.danger),
    "cancel": ("Cancel", "✖️", discord.ButtonStyle.secondary),
}


def _bot(interaction: discord.Interaction) -> KontextBot:
    return interaction.client  # type: ignore[return-value]


def is_admin(interaction: discord.Interaction) -> bool:
    # interaction.permissions are what Discord resolved for this member in this channel.
    perms = interaction.permissions
    return perms.administrator or perms.manage_guild or perms.manage_messages


async def _job(interaction: discord.Interaction, job_id: str) -> Job:
    record = await _bot(interaction).services.jobs.get(job_id)
    if record is None:
        raise UserError(f"Job {job_id} is no longer on record.")
    return record


def _purpose(image_count: int) -> str:
    return "create" if image_count == 0 else "edit" if image_count == 1 else "combine"


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
        handlers: dict[str, Callable[[discord.Interaction], Awaitable[None]]] = {
            "reroll": self.reroll,
            "again": self.edit_again,
            "seed": self.use_seed,
            "del": self.delete,
            "cancel": self.cancel,
        }
        # discord.py only logs what a dynamic item raises; the member must always hear back.
        try:
            await handlers[self.action](interaction)
        except UserError as exc:
            await tell_error(interaction, exc)
        except Exception:
            log.exception("button %s on job %s failed", self.action, self.job_id)
            await tell_error(interaction, UserError(f"Something went wrong on our side (job {self.job_id})."))

    async def reroll(self, interaction: discord.Interaction) -> None:
        """Same model, prompt, inputs and settings, a new seed; charged to whoever clicks."""
        bot = _bot(interaction)
        record = await _job(interaction, self.job_id)
        inputs = await bot.services.jobs.stored_inputs(record)
        model = bot.services.settings.catalog.get(record.model)
        # The record holds every parameter with its default filled in. Passing the defaults back
        # as if the member had chosen them would rule out routes that cannot carry them.
        params = {
            k: v
            for k, v in record.params.items()
            if k != "seed" and k in model.params and (k == "aspect_ratio" or v != model.params[k].default)
        }
        await start_job(
            bot,
            interaction,
            purpose=_purpose(len(inputs)),
            model=record.model,
            prompt=record.prompt,
            params=params,
            images=inputs,
            source="reroll",
        )

    async def edit_again(self, interaction: discord.Interaction) -> None:
        """A new prompt applied to this result: chains of edits are what Kontext is for."""
        message = interaction.message
        # Our files are kontext-<job>-<n>.<ext>; a flagged one carries Discord's SPOILER_ prefix.
        results = [a for a in (message.attachments if message else []) if "kontext-" in a.filename]
        if not results:
            raise UserError("This result has no image left to edit.")
        record = await _job(interaction, self.job_id)
        await interaction.response.send_modal(EditAgainModal(record.model, results[0]))

    async def use_seed(self, interaction: discord.Interaction) -> None:
        record = await _job(interaction, self.job_id)
        seed = record.params.get("seed")
        if seed is None or seed == -1:
            raise UserError(f"{record.model} takes no seed, so this result cannot be repeated exactly.")
        await interaction.response.send_message(
            f"🌱 Seed **{seed}** — add `seed:{seed}` to /edit, /combine or /create with the same prompt "
            "and image to get the same result, or change the prompt a little to vary it.",
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )

    async def delete(self, interaction: discord.Interaction) -> None:
        record = await _job(interaction, self.job_id)
        if record.user_id != interaction.user.id and not is_admin(interaction):
            raise UserError("Only the member who asked for this image, or an admin, can delete it.")
        await interaction.response.defer()
        # After a deferred update the "original response" is the message the button is on; this
        # works for ephemeral results and channel messages alike.
        await interaction.delete_original_response()

    async def cancel(self, interaction: discord.Interaction) -> None:
        bot = _bot(interaction)
        record = await _job(interaction, self.job_id)
        if record.user_id != interaction.user.id and not is_admin(interaction):
            raise UserError("Only the member who asked for this job, or an admin, can cancel it.")
        task = bot.running_jobs.get(self.job_id)
        if record.finished or task is None or task.done():
            raise UserError(f"Job {self.job_id} is no longer running, so there is nothing to cancel.")
        await interaction.response.defer(ephemeral=True, thinking=True)
        task.cancel()
        # The job refunds itself as it stops; wait for that so the answer is true.
        await asyncio.wait({task}, timeout=CANCEL_WAIT)
        after = await _job(interaction, self.job_id)
        if after.status == "cancelled":
            text = f"✖️ Cancelled job `{self.job_id}`. Nobody was charged for it."
        elif after.finished:
            text = f"Job `{self.job_id}` had already finished ({after.status})."
        else:
            text = f"Job `{self.job_id}` is stopping; it will not be charged."
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)


class EditAgainModal(discord.ui.Modal, title="Edit again"):
    prompt: discord.ui.TextInput[EditAgainModal] = discord.ui.TextInput(
        label="What should change now?",
        style=discord.TextStyle.paragraph,
        max_length=2000,
        custom_id="prompt",
    )

    def __init__(self, model_id: str, attachment: discord.Attachment) -> None:
        super().__init__(timeout=600)
        self.model_id = model_id
        self.attachment = attachment

    async def on_submit(self, interaction: discord.Interaction) -> None:
        bot = _bot(interaction)
        model = bot.services.settings.catalog.get(self.model_id)
        await start_job(
            bot,
            interaction,
            purpose="edit",
            model=model.id if model.can_edit else None,  # a combine/create result: default editor
            prompt=str(self.prompt.value),
            params={},
            attachments=[self.attachment],
            source="edit-again",
        )

    async def on_error(self, interaction: discord.Interaction, error: Exception) -> None:
        log.error("edit-again modal failed (interaction %s)", interaction.id, exc_info=error)
        await tell_error(interaction, UserError("Something went wrong on our side."))


def result_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for action in ("reroll", "again", "seed", "del"):
        view.add_item(JobButton(action, job_id))
    return view


def cancel_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton("cancel", job_id))
    return view


async def setup(bot: KontextBot) -> None:
    bot.add_dynamic_items(JobButton)
