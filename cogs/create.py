"""Making images: /edit, /combine, /create and the "Edit with Kontext" message menu."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.catalog import ASPECT_RATIOS
from bot.errors import UserError
from cogs.choices import model_choices
from cogs.replies import tell_error
from cogs.starting import start_job

if TYPE_CHECKING:
    from bot.client import KontextBot

log = logging.getLogger(__name__)

# /edit and /combine take the same tuning options; each model accepts the subset the seeds give it.
TUNING_HELP = {
    "aspect_ratio": "Width:height of the result, where the model supports it",
    "seed": "Same seed + same prompt = same result (-1 = random)",
    "steps": "Inference steps, 1-50, where supported",
    "guidance": "How closely to follow the prompt",
    "negative_prompt": "What should not appear, where supported",
    "count": "How many images, 1-4, where supported",
}
ASPECT_CHOICES = [app_commands.Choice(name=r, value=r) for r in ASPECT_RATIOS]
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")


class PromptModal(discord.ui.Modal, title="Edit with Kontext"):
    """The message menu's one question. One image is edited; two to four are combined."""

    def __init__(self, cog: CreateCog, attachments: list[discord.Attachment]) -> None:
        super().__init__(timeout=600)
        self.cog = cog
        self.attachments = attachments
        label = "What should change?" if len(attachments) == 1 else "How should the images be combined?"
        self.prompt: discord.ui.TextInput[PromptModal] = discord.ui.TextInput(
            label=label, style=discord.TextStyle.paragraph, max_length=2000, custom_id="prompt"
        )
        self.add_item(self.prompt)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        purpose = "edit" if len(self.attachments) == 1 else "combine"
        await start_job(
            self.cog.bot,
            interaction,
            purpose=purpose,
            model=None,
            prompt=str(self.prompt.value),
            attachments=self.attachments,
            params={},
            source="context-menu",
        )

    async def on_error(self, interaction: discord.Interaction, error: Exception) -> None:
        # discord.py would only log it; the member must hear back.
        log.error("context-menu modal failed (interaction %s)", interaction.id, exc_info=error)
        await tell_error(interaction, UserError("Something went wrong on our side."))


class CreateCog(commands.Cog):
    def __init__(self, bot: KontextBot) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(name="Edit with Kontext", callback=self.edit_message)
        bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    @app_commands.command(name="edit", description="Edit an image with a text instruction")
    @app_commands.describe(
        image="The image to edit",
        prompt="What should change, e.g. 'make it a pencil sketch'",
        model="Model (default: FLUX.1 Kontext pro)",
        **TUNING_HELP,
    )
    @app_commands.choices(aspect_ratio=ASPECT_CHOICES)
    async def edit(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        prompt: app_commands.Range[str, 1, 2000],
        model: str | None = None,
        aspect_ratio: str | None = None,
        seed: app_commands.Range[int, -1, 9_999_999_999] | None = None,
        steps: app_commands.Range[int, 1, 50] | None = None,
        guidance: app_commands.Range[float, 1.0, 20.0] | None = None,
        negative_prompt: app_commands.Range[str, 1, 2000] | None = None,
        count: app_commands.Range[int, 1, 4] | None = None,
    ) -> None:
        params = {
            "aspect_ratio": aspect_ratio,
            "seed": seed,
            "steps": steps,
            "guidance": guidance,
            "negative_prompt": negative_prompt,
            "n": count,
        }
        await start_job(
            self.bot,
            interaction,
            purpose="edit",
            model=model,
            prompt=prompt,
            attachments=[image],
            params=params,
        )

    @edit.autocomplete("model")
    async def _edit_models(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await model_choices(self.bot, interaction, current, "edit")

    @app_commands.command(name="combine", description="Combine 2-4 images with a text instruction")
    @app_commands.describe(
        image1="First image",
        image2="Second image",
        image3="Third image",
        image4="Fourth image",
        prompt="How to combine them, e.g. 'put the cat from image 1 on the sofa of image 2'",
        model="Model (default: FLUX.1 Kontext pro multi-image)",
        **TUNING_HELP,
    )
    @app_commands.choices(aspect_ratio=ASPECT_CHOICES)
    async def combine(
        self,
        interaction: discord.Interaction,
        image1: discord.Attachment,
        image2: discord.Attachment,
        prompt: app_commands.Range[str, 1, 2000],
        image3: discord.Attachment | None = None,
        image4: discord.Attachment | None = None,
        model: str | None = None,
        aspect_ratio: str | None = None,
        seed: app_commands.Range[int, -1, 9_999_999_999] | None = None,
        steps: app_commands.Range[int, 1, 50] | None = None,
        guidance: app_commands.Range[float, 1.0, 20.0] | None = None,
        negative_prompt: app_commands.Range[str, 1, 2000] | None = None,
        count: app_commands.Range[int, 1, 4] | None = None,
    ) -> None:
        attachments = [a for a in (image1, image2, image3, image4) if a is not None]
        params = {
            "aspect_ratio": aspect_ratio,
            "seed": seed,
            "steps": steps,
            "guidance": guidance,
            "negative_prompt": negative_prompt,
            "n": count,
        }
        await start_job(
            self.bot,
            interaction,
            purpose="combine",
            model=model,
            prompt=prompt,
            attachments=attachments,
            params=params,
        )

    @combine.autocomplete("model")
    async def _combine_models(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await model_choices(self.bot, interaction, current, "combine")

    @app_commands.command(name="create", description="Create an image from a text prompt")
    @app_commands.describe(
        prompt="Describe the image",
        model="Model (default: FLUX.1 Kontext pro text-to-image)",
        aspect_ratio="Width:height of the result",
        seed="Same seed + same prompt = same result (-1 = random)",
        count="How many images, 1-4",
    )
    @app_commands.choices(aspect_ratio=ASPECT_CHOICES)
    async def create(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 2000],
        model: str | None = None,
        aspect_ratio: str | None = None,
        seed: app_commands.Range[int, -1, 9_999_999_999] | None = None,
        count: app_commands.Range[int, 1, 4] | None = None,
    ) -> None:
        params = {"aspect_ratio": aspect_ratio, "seed": seed, "n": count}
        await start_job(
            self.bot, interaction, purpose="create", model=model, prompt=prompt, attachments=[], params=params
        )

    @create.autocomplete("model")
    async def _create_models(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await model_choices(self.bot, interaction, current, "create")

    async def edit_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        attachments = [a for a in message.attachments if _looks_like_image(a)]
        if not attachments:
            await tell_error(interaction, UserError("That message has no image attached."))
            return
        if len(attachments) > 4:
            await tell_error(
                interaction, UserError("That message has more than 4 images; Kontext takes up to 4.")
            )
            return
        await interaction.response.send_modal(PromptModal(self, attachments))


def _looks_like_image(att: discord.Attachment) -> bool:
    # A first sort only: the bytes are checked by content before anything is sent anywhere.
    return (att.content_type or "").startswith("image/") or att.filename.lower().endswith(IMAGE_EXTENSIONS)


async def setup(bot: KontextBot) -> None:
    await bot.add_cog(CreateCog(bot))
