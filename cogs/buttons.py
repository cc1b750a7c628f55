"""Buttons on every result, alive across restarts: the job id is in each ``custom_id``
(discord.ui.DynamicItem), so a click after a restart finds its job in the database."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import discord

from bot.errors import UserError
from cogs.delivery import NO_MENTIONS, start_job, tell_error

if TYPE_CHECKING:
    from bot.client import KontextBot

log = logging.getLogger(__name__)

JOB = r"(?P<job>[0-9a-z]{12})"


def _bot(interaction: discord.Interaction) -> KontextBot:
    return interaction.client  # type: ignore[return-value]


def is_admin(interaction: discord.Interaction) -> bool:
    perms = getattr(interaction.user, "guild_permissions", None)
    return bool(perms and (perms.manage_guild or perms.manage_messages or perms.administrator))


async def _job(interaction: discord.Interaction, job_id: str) -> Any:
    record = await _bot(interaction).services.jobs.get(job_id)
    if record is None:
        raise UserError("This result's job is no longer on record.")
    return record


class RerollButton(discord.ui.DynamicItem[discord.ui.Button], template=rf"kx:reroll:{JOB}"):
    """Same settings, new seed, charged to whoever clicks."""

    def __init__(self, job_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Re-roll",
                emoji="🎲",
                style=discord.ButtonStyle.primary,
                custom_id=f"kx:reroll:{job_id}",
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ) -> RerollButton:
        return cls(match["job"])

    async def callback(self, interaction: discord.Interaction) -> None:
        bot = _bot(interaction)
        try:
            record = await _job(interaction, self.job_id)
            inputs = await bot.services.jobs.stored_inputs(record)
        except UserError as exc:
            await tell_error(interaction, exc)
            return
        params = {k: v for k, v in record.params.items() if k != "seed"}
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


class EditAgainButton(discord.ui.DynamicItem[discord.ui.Button], template=rf"kx:again:{JOB}"):
    """A new prompt applied to this result: chains of edits are what Kontext is for."""

    def __init__(self, job_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Edit again",
                emoji="✏️",
                style=discord.ButtonStyle.secondary,
                custom_id=f"kx:again:{job_id}",
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ) -> EditAgainButton:
        return cls(match["job"])

    async def callback(self, interaction: discord.Interaction) -> None:
        message = interaction.message
        attachments = [
            a for a in (message.attachments if message else []) if a.filename.startswith("kontext-")
        ]
        if not attachments:
            await tell_error(interaction, UserError("This result has no image left to edit."))
            return
        try:
            record = await _job(interaction, self.job_id)
        except UserError as exc:
            await tell_error(interaction, exc)
            return
        await interaction.response.send_modal(EditAgainModal(record.model, attachments[0]))


class EditAgainModal(discord.ui.Modal, title="Edit again"):
    prompt: discord.ui.TextInput[EditAgainModal] = discord.ui.TextInput(
        label="What should change now?", style=discord.TextStyle.paragraph, max_length=2000
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
            model=model.id if model.can_edit else None,
            prompt=str(self.prompt.value),
            params={},
            attachments=[self.attachment],
            source="edit-again",
        )


class UseSeedButton(discord.ui.DynamicItem[discord.ui.Button], template=rf"kx:seed:{JOB}"):
    def __init__(self, job_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Use seed",
                emoji="🌱",
                style=discord.ButtonStyle.secondary,
                custom_id=f"kx:seed:{job_id}",
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ) -> UseSeedButton:
        return cls(match["job"])

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            record = await _job(interaction, self.job_id)
        except UserError as exc:
            await tell_error(interaction, exc)
            return
        seed = record.params.get("seed")
        if seed is None:
            await tell_error(interaction, UserError("This model takes no seed."))
            return
        await interaction.response.send_message(
            f"Seed **{seed}** — add `seed:{seed}` to /edit, /combine or /create with the same prompt "
            "to get the same result, or change the prompt a little to vary it.",
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )


class DeleteButton(discord.ui.DynamicItem[discord.ui.Button], template=rf"kx:del:{JOB}"):
    def __init__(self, job_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Delete", emoji="🗑️", style=discord.ButtonStyle.danger, custom_id=f"kx:del:{job_id}"
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ) -> DeleteButton:
        return cls(match["job"])

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            record = await _job(interaction, self.job_id)
        except UserError as exc:
            await tell_error(interaction, exc)
            return
        if record.user_id != interaction.user.id and not is_admin(interaction):
            await tell_error(
                interaction,
                UserError("Only the member who asked for this image, or an admin, can delete it."),
            )
            return
        await interaction.response.defer()
        if interaction.message is not None:
            await interaction.message.delete()


class CancelButton(discord.ui.DynamicItem[discord.ui.Button], template=rf"kx:cancel:{JOB}"):
    def __init__(self, job_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Cancel",
                emoji="✖️",
                style=discord.ButtonStyle.secondary,
                custom_id=f"kx:cancel:{job_id}",
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ) -> CancelButton:
        return cls(match["job"])

    async def callback(self, interaction: discord.Interaction) -> None:
        bot = _bot(interaction)
        try:
            record = await _job(interaction, self.job_id)
        except UserError as exc:
            await tell_error(interaction, exc)
            return
        if record.user_id != interaction.user.id and not is_admin(interaction):
            await tell_error(
                interaction, UserError("Only the member who asked for this job, or an admin, can cancel it.")
            )
            return
        task = bot.running_jobs.get(self.job_id)
        if task is None or task.done():
            await tell_error(interaction, UserError("This job is no longer running."))
            return
        task.cancel()
        await interaction.response.send_message(
            f"Cancelled job `{self.job_id}`. You were not charged.", ephemeral=True
        )


def result_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for item in (RerollButton, EditAgainButton, UseSeedButton, DeleteButton):
        view.add_item(item(job_id))
    return view


def _purpose(image_count: int) -> str:
    return "create" if image_count == 0 else "edit" if image_count == 1 else "combine"


async def setup(bot: KontextBot) -> None:
    bot.add_dynamic_items(RerollButton, EditAgainButton, UseSeedButton, DeleteButton, CancelButton)
