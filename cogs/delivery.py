"""A job's life in the channel, shared by every command and button that starts one.

Progress is shown by editing the deferred response no more than every few seconds; results are
uploaded as attachments fitted to the upload limit (never provider links), ten per message at most,
with an embed and the result buttons. A job that outlives the 15-minute interaction token is
delivered with a channel message that mentions the requester. Mentions in prompts never ping.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import discord

from bot import images
from bot.catalog import Catalog, Model, micros_to_usd
from bot.errors import UserError
from bot.jobs import JobEvent, JobFailed, JobRequest, JobResult, Stage

if TYPE_CHECKING:
    from bot.client import KontextBot

log = logging.getLogger(__name__)

PROGRESS_EVERY = 3.0  # seconds between progress edits: Discord rate-limits message edits
TOKEN_LIFETIME = 15 * 60 - 30  # interaction tokens live 15 minutes; keep a margin
MAX_FILES = 10
NO_MENTIONS = discord.AllowedMentions.none()


def safe_text(text: str, limit: int) -> str:
    """User text for an embed or message: no mentions resolved, no markdown tricks, bounded."""
    text = discord.utils.escape_mentions(discord.utils.escape_markdown(text))
    text = "".join(ch for ch in text if ch == "\n" or ch >= " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def model_short(model_id: str) -> str:
    return model_id.split("/", 1)[-1]


class Progress:
    """Edits the deferred response with the job's state, at most every PROGRESS_EVERY seconds."""

    def __init__(self, interaction: discord.Interaction, bot: KontextBot) -> None:
        self.interaction = interaction
        self.bot = bot
        self.job_id: str | None = None
        self._last_edit = 0.0
        self._pending: str | None = None
        self._flush: asyncio.Task[None] | None = None
        self._closed = False

    async def on_event(self, event: JobEvent) -> None:
        if self.job_id is None:
            self.job_id = event.job_id
            task = asyncio.current_task()
            if task is not None:
                self.bot.running_jobs[event.job_id] = task  # type: ignore[assignment]
        if event.stage is Stage.QUEUED:
            text = f"⏳ Queued — position {event.position} · `{event.job_id}`"
        else:
            pct = f" {round(event.progress * 100)}%" if event.progress is not None else ""
            verb = "Switching provider" if event.stage is Stage.FAILOVER else "Generating"
            text = (
                f"🎨 {verb}{pct} — {model_short(event.model)} on {event.provider} · "
                f"{event.elapsed:.0f}s · `{event.job_id}`"
            )
        await self._show(text, cancel=True)

    async def _show(self, text: str, *, cancel: bool) -> None:
        self._pending = text
        wait = PROGRESS_EVERY - (time.monotonic() - self._last_edit)
        if wait <= 0:
            await self._edit_now()
        elif self._flush is None or self._flush.done():
            self._flush = asyncio.create_task(self._edit_later(wait))

    async def _edit_later(self, wait: float) -> None:
        await asyncio.sleep(wait)
        await self._edit_now()

    async def _edit_now(self) -> None:
        if self._closed or self._pending is None:
            return
        text, self._pending = self._pending, None
        self._last_edit = time.monotonic()
        view = None
        if self.job_id is not None:
            from cogs.buttons import CancelButton

            view = discord.ui.View(timeout=None)
            view.add_item(CancelButton(self.job_id))
        try:
            await self.interaction.edit_original_response(
                content=text, view=view, allowed_mentions=NO_MENTIONS
            )
        except discord.HTTPException as exc:  # progress is best effort; the result is not
            log.debug("progress edit failed: %s", exc)

    def close(self) -> None:
        self._closed = True
        if self._flush is not None:
            self._flush.cancel()
        if self.job_id is not None:
            self.bot.running_jobs.pop(self.job_id, None)


async def fitted_files(result: JobResult, limit: int) -> list[discord.File]:
    files = []
    for i, img in enumerate(result.images[:MAX_FILES], 1):
        fitted = await images.fit_for_upload(img.data, limit)
        name = f"kontext-{result.job_id}-{i}.{fitted.ext}"
        files.append(discord.File(io.BytesIO(fitted.data), filename=name, spoiler=img.nsfw))
    return files


def result_embed(
    result: JobResult, requester: discord.abc.User | None, first_file: str | None = None
) -> discord.Embed:
    embed = discord.Embed(description=safe_text(result.prompt, 1000), colour=discord.Colour.blurple())
    embed.add_field(name="Model", value=model_short(result.model))
    embed.add_field(name="Seed", value=str(result.seed) if result.seed is not None else "—")
    embed.add_field(name="Time", value=f"{result.elapsed:.1f}s")
    if result.sandbox:
        paid = "free (sandbox: no provider key is set; this is a placeholder image)"
    elif result.charged_to == "free":
        left = result.free_remaining
        paid = f"free quota ({left} free left)" if left is not None else "free quota"
    elif result.charged_to.startswith("team:"):
        paid = f"{micros_to_usd(result.charged_micros)} from team {safe_text(result.charged_to[5:], 60)}"
    elif result.charged_to == "guild":
        paid = f"{micros_to_usd(result.charged_micros)} from the server budget"
    else:
        paid = micros_to_usd(result.cost_micros)
    embed.add_field(name="Cost", value=paid, inline=False)
    footer = f"job {result.job_id} · {result.provider}"
    if requester is not None:
        footer = f"{requester.display_name} · " + footer
    embed.set_footer(text=footer)
    if first_file:
        embed.set_image(url=f"attachment://{first_file}")
    return embed


def error_text(exc: UserError) -> str:
    text = exc.user_message
    if not isinstance(exc, JobFailed):
        text += " You were not charged."
    return "⚠️ " + text


async def tell_error(interaction: discord.Interaction, exc: UserError) -> None:
    """An ephemeral message, whether or not the interaction was answered yet."""
    text = error_text(exc)
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
            return
        try:
            await interaction.delete_original_response()
        except discord.HTTPException:
            pass
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
    except discord.HTTPException as http_exc:
        log.warning("could not tell the user about an error: %s", http_exc)


async def read_attachments(attachments: Sequence[discord.Attachment], max_bytes: int) -> list[bytes]:
    """Read at once: attachment links are signed and expire. Size is checked before reading."""
    for att in attachments:
        if att.size > max_bytes:
            raise UserError(
                f"{att.filename} is {att.size / 1048576:.0f} MB; the limit is {max_bytes // 1048576} MB."
            )
    try:
        return list(await asyncio.gather(*(att.read() for att in attachments)))
    except (discord.HTTPException, discord.NotFound) as exc:
        raise UserError("Could not read the attached image from Discord; please attach it again.") from exc


async def run_and_deliver(
    bot: KontextBot, interaction: discord.Interaction, request: JobRequest, *, private: bool
) -> JobResult | None:
    """Run a job for a deferred interaction and post the outcome. Never raises a UserError."""
    started = time.monotonic()
    progress = Progress(interaction, bot)
    try:
        result = await bot.services.jobs.run(request, on_event=progress.on_event)
    except UserError as exc:
        progress.close()
        await tell_error(interaction, exc)
        return None
    except asyncio.CancelledError:
        progress.close()
        if not bot.is_closed():
            await tell_error(interaction, UserError("Cancelled."))
        raise
    progress.close()
    await post_result(bot, interaction, result, private=private, started=started)
    return result


async def post_result(
    bot: KontextBot, interaction: discord.Interaction, result: JobResult, *, private: bool, started: float
) -> None:
    from cogs.buttons import result_view

    limit = interaction.filesize_limit or discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES
    files = await fitted_files(result, limit)
    embed = result_embed(result, interaction.user, files[0].filename if files else None)
    view = result_view(result.job_id)
    message: discord.Message | None = None
    if time.monotonic() - started < TOKEN_LIFETIME:
        try:
            message = await interaction.edit_original_response(
                content=None, embed=embed, attachments=files, view=view, allowed_mentions=NO_MENTIONS
            )
        except discord.HTTPException as exc:
            if exc.status != 401 and getattr(exc, "code", 0) != 50027:
                raise
            files = await fitted_files(result, limit)  # the first attempt consumed the buffers
    if message is None and not private and interaction.channel is not None:
        # The token expired: a plain channel message, pinging only the requester.
        message = await interaction.channel.send(  # type: ignore[union-attr]
            content=f"{interaction.user.mention} your image is ready.",
            embed=embed,
            files=files,
            view=view,
            allowed_mentions=discord.AllowedMentions(users=[interaction.user]),
        )
    if message is not None:
        await bot.services.jobs.set_posted(result.job_id, message.channel.id, message.id)


async def deliver_to_channel(bot: KontextBot, record: Any, outcome: JobResult | JobFailed) -> None:
    """After a restart: post a recovered job's result (or its refund) in its channel."""
    from cogs.buttons import result_view

    channel = bot.get_channel(record.channel_id) or await bot.fetch_channel(record.channel_id)
    user = discord.Object(id=record.user_id) if record.user_id else None
    mention = f"<@{record.user_id}> " if record.user_id else ""
    allowed = discord.AllowedMentions(users=[user]) if user else NO_MENTIONS
    if isinstance(outcome, JobFailed):
        await channel.send(f"{mention}{error_text(outcome)}", allowed_mentions=allowed)  # type: ignore[union-attr]
        return
    limit = getattr(
        getattr(channel, "guild", None), "filesize_limit", discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES
    )
    files = await fitted_files(outcome, limit)
    message = await channel.send(  # type: ignore[union-attr]
        content=f"{mention}your image is ready (finished after a restart).",
        embed=result_embed(outcome, None, files[0].filename if files else None),
        files=files,
        view=result_view(outcome.job_id),
        allowed_mentions=allowed,
    )
    await bot.services.jobs.set_posted(outcome.job_id, message.channel.id, message.id)


# --- starting a job from any interaction ---------------------------------------------------------

DEFAULT_MODEL = {
    "edit": "black-forest-labs/flux-kontext-pro",
    "combine": "black-forest-labs/flux-kontext-pro/multi",
    "create": "black-forest-labs/flux-kontext-pro/text-to-image",
}


def fits(model: Model, purpose: str) -> bool:
    return {"edit": model.can_edit, "combine": model.can_combine, "create": model.can_create}[purpose]


def role_ids(user: discord.abc.User) -> tuple[int, ...]:
    return tuple(r.id for r in getattr(user, "roles", ()))


def nsfw_allowed(channel: Any) -> bool:
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


def _preferred(model_id: str | None, purpose: str, catalog: Catalog) -> str | None:
    if not model_id:
        return None
    try:
        model = catalog.get(model_id)
    except UserError:
        return None
    return model.id if fits(model, purpose) else None


async def start_job(
    bot: KontextBot,
    interaction: discord.Interaction,
    *,
    purpose: str,
    model: str | None,
    prompt: str,
    params: dict[str, Any],
    attachments: Sequence[discord.Attachment] = (),
    images: Sequence[bytes] | None = None,
    source: str = "slash",
) -> None:
    """Check fast, defer within 3 s, read the attachments at once, then run and deliver.
    ``images`` (bytes already in hand, e.g. a Re-roll's stored inputs) replaces ``attachments``."""
    svc = bot.services
    count = len(images) if images is not None else len(attachments)
    max_bytes = svc.settings.limits.max_input_bytes
    try:
        prefs = await svc.accounts.settings(interaction.user.id)
        if interaction.guild_id and not await svc.accounts.channel_allowed(
            interaction.guild_id, interaction.channel_id
        ):
            raise UserError("Image commands are not enabled in this channel; ask an admin which ones are.")
        catalog = svc.settings.catalog
        model_id = model or _preferred(prefs.default_model, purpose, catalog) or DEFAULT_MODEL[purpose]
        if params.get("aspect_ratio") is None and prefs.aspect_ratio and purpose != "edit":
            if "aspect_ratio" in catalog.get(model_id).params:
                params = {**params, "aspect_ratio": prefs.aspect_ratio}
        request = JobRequest(
            model=model_id,
            prompt=prompt,
            params=params,
            user_id=interaction.user.id,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            role_ids=role_ids(interaction.user),
            source=source,
            nsfw_allowed=nsfw_allowed(interaction.channel),
        )
        svc.jobs.check(request, image_count=count)
        for att in attachments:  # before deferring, so the refusal is private and instant
            if att.size > max_bytes:
                raise UserError(
                    f"{att.filename} is {att.size / 1048576:.0f} MB; the limit is {max_bytes // 1048576} MB."
                )
    except UserError as exc:
        await tell_error(interaction, exc)
        return
    await interaction.response.defer(thinking=True, ephemeral=prefs.private_results)
    if images is None:
        try:
            images = await read_attachments(attachments, max_bytes)
        except UserError as exc:
            await tell_error(interaction, exc)
            return
    await run_and_deliver(
        bot, interaction, replace(request, images=list(images)), private=prefs.private_results
    )
