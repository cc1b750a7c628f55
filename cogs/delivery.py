"""A job's life in the channel, shared by every command and button that starts one.

Progress is shown by editing the deferred response, at most every ``bot.progress_every`` seconds;
results are uploaded as attachments fitted to the interaction's upload limit (never provider links),
ten per message at most, with an embed and the result buttons. A job that outlives the 15-minute
interaction token is delivered with a channel message that mentions the requester. Mentions in
prompts never ping.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import discord

from bot import images
from bot.catalog import Catalog, Model
from bot.client import NO_MENTIONS, answer_privately, token_gone, user_error_text
from bot.errors import UserError
from bot.jobs import InputLoader, JobEvent, JobFailed, JobRequest, JobResult, Stage
from bot.money import micros_to_usd

if TYPE_CHECKING:
    from bot.client import KontextBot
    from storage import Job

log = logging.getLogger(__name__)

MAX_FILES = 10  # attachments Discord takes per message
TOKEN_MARGIN = 30.0  # seconds: do not start an upload on a token about to expire


def safe_text(text: str, limit: int) -> str:
    """User text for an embed or message: no mentions resolved, no markdown tricks, bounded."""
    text = discord.utils.escape_mentions(discord.utils.escape_markdown(text))
    text = "".join(ch for ch in text if ch == "\n" or ch >= " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def model_short(model_id: str) -> str:
    return model_id.split("/", 1)[-1]


def error_text(exc: UserError) -> str:
    return user_error_text(exc)


async def tell_error(interaction: discord.Interaction, exc: UserError) -> None:
    """An ephemeral message, whether or not the interaction was answered yet."""
    await answer_privately(interaction, user_error_text(exc))


async def tell_requester(interaction: discord.Interaction, exc: UserError) -> None:
    """Like tell_error, for a job's end: once the token has expired an ephemeral message is
    impossible, so the requester is told in the channel (pinging only them)."""
    text = user_error_text(exc)
    if await answer_privately(interaction, text):
        return
    channel = interaction.channel
    if channel is None or not hasattr(channel, "send"):
        log.warning("interaction %s: nowhere left to say %r", interaction.id, text)
        return
    try:
        await channel.send(
            f"{interaction.user.mention} {text}",
            allowed_mentions=discord.AllowedMentions(users=[interaction.user]),
        )
    except discord.HTTPException as exc_:
        log.warning("interaction %s: could not post a failure in the channel: %s", interaction.id, exc_)


def _expiring(interaction: discord.Interaction) -> bool:
    remaining = (interaction.expires_at - discord.utils.utcnow()).total_seconds()
    return remaining < TOKEN_MARGIN


# --- progress ------------------------------------------------------------------------------------


class Progress:
    """Shows a job's state in the deferred response. Edits run in their own task, so a slow or
    rate-limited edit never holds up the job; they are at least ``bot.progress_every`` apart."""

    def __init__(self, interaction: discord.Interaction, bot: KontextBot) -> None:
        self.interaction = interaction
        self.bot = bot
        self.task: asyncio.Task[Any] | None = None  # the job's task, registered for Cancel
        self.job_id: str | None = None
        self._event: JobEvent | None = None
        self._started = time.monotonic()
        self._wake = asyncio.Event()
        self._painter: asyncio.Task[None] | None = None
        self._shown: str | None = None
        self._dead = False  # the token is gone: no more edits

    async def on_event(self, event: JobEvent) -> None:
        if self.job_id is None:
            self.job_id = event.job_id
            self._started = time.monotonic() - event.elapsed
            if self.task is not None:
                self.bot.running_jobs[event.job_id] = self.task
            self._painter = asyncio.create_task(self._paint(), name=f"progress-{event.job_id}")
        self._event = event
        self._wake.set()

    def render(self) -> str:
        event = self._event
        assert event is not None
        job = f"job `{event.job_id}`"
        if event.stage is Stage.QUEUED:
            return f"⏳ Queued — position {event.position} in line · {job}"
        elapsed = f"{time.monotonic() - self._started:.0f}s"
        pct = f" {round(event.progress * 100)}%" if event.progress is not None else ""
        verb = "Switching to another provider" if event.stage is Stage.FAILOVER else "Generating"
        return f"🎨 {verb}{pct} — {model_short(event.model)} on {event.provider} · {elapsed} · {job}"

    async def _paint(self) -> None:
        while not self._dead:
            text = self.render()
            if text != self._shown:
                self._shown = text
                await self._edit(text)
                await asyncio.sleep(self.bot.progress_every)
            # Wait for news, or refresh the elapsed time after a while.
            wait = max(self.bot.progress_refresh - self.bot.progress_every, 0.01)
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass
            self._wake.clear()

    async def _edit(self, text: str) -> None:
        from cogs.buttons import cancel_view

        try:
            await self.interaction.edit_original_response(
                content=text, view=cancel_view(self.job_id or ""), allowed_mentions=NO_MENTIONS
            )
        except discord.HTTPException as exc:  # progress is best effort; the result is not
            self._dead = token_gone(exc)
            log.debug("job %s: progress edit failed: %s", self.job_id, exc)
        except Exception as exc:  # e.g. the HTTP session closing under a stopping bot
            self._dead = True
            log.debug("job %s: progress edit failed: %r", self.job_id, exc)

    async def close(self) -> None:
        """Stop editing, and make sure no edit in flight lands after the final one."""
        if self._painter is not None:
            self._painter.cancel()
            await asyncio.gather(self._painter, return_exceptions=True)
        if self.job_id is not None:
            self.bot.running_jobs.pop(self.job_id, None)

    async def show_final(self, text: str) -> None:
        if _expiring(self.interaction):
            return
        try:
            await self.interaction.edit_original_response(
                content=text, embed=None, attachments=[], view=None, allowed_mentions=NO_MENTIONS
            )
        except discord.HTTPException as exc:
            log.debug("job %s: final edit failed: %s", self.job_id, exc)


# --- results -------------------------------------------------------------------------------------


async def fit_images(
    result: JobResult, limit: int, pillow: Executor | None = None
) -> list[tuple[str, bytes, bool]]:
    """(filename, bytes, spoiler) per image, each within ``limit`` bytes (re-encoded if need be)."""
    fitted = await asyncio.gather(*(images.fit_for_upload(img.data, limit, pillow) for img in result.images))
    return [
        (f"kontext-{result.job_id}-{i}.{f.ext}", f.data, img.nsfw)
        for i, (f, img) in enumerate(zip(fitted, result.images, strict=True), 1)
    ]


def as_files(fitted: Sequence[tuple[str, bytes, bool]]) -> list[discord.File]:
    # Fresh File objects for every attempt: an upload consumes their buffers.
    return [discord.File(io.BytesIO(data), filename=name, spoiler=nsfw) for name, data, nsfw in fitted]


def _batches(fitted: list[tuple[str, bytes, bool]]) -> list[list[tuple[str, bytes, bool]]]:
    return [fitted[i : i + MAX_FILES] for i in range(0, len(fitted), MAX_FILES)] or [[]]


def paid_text(result: JobResult) -> str:
    if result.sandbox:
        return "Free — sandbox placeholder (no provider key is set)"
    if result.charged_to == "free":
        left = result.free_remaining
        tail = f", {left} free image(s) left" if left is not None else ""
        return f"Free quota (worth {micros_to_usd(result.cost_micros)}){tail}"
    if result.charged_to.startswith("team:"):
        return f"{micros_to_usd(result.charged_micros)} from team {safe_text(result.charged_to[5:], 60)}"
    if result.charged_to == "guild":
        return f"{micros_to_usd(result.charged_micros)} from the server budget"
    return micros_to_usd(result.cost_micros)


def result_embed(
    result: JobResult, requester: discord.abc.User | None, first_file: str | None = None
) -> discord.Embed:
    embed = discord.Embed(description=safe_text(result.prompt, 1000), colour=discord.Colour.blurple())
    embed.add_field(name="Model", value=model_short(result.model))
    embed.add_field(name="Seed", value=str(result.seed) if result.seed is not None else "—")
    embed.add_field(name="Time", value=f"{result.elapsed:.1f}s")
    embed.add_field(name="Cost", value=paid_text(result), inline=False)
    footer = f"job {result.job_id} · {result.provider}"
    if requester is not None:
        footer = f"{requester.display_name} · " + footer
    embed.set_footer(text=footer)
    if first_file and not result.nsfw:  # an embed image would show a spoilered file unblurred
        embed.set_image(url=f"attachment://{first_file}")
    return embed


async def post_result(
    bot: KontextBot, interaction: discord.Interaction, result: JobResult, *, private: bool
) -> discord.Message:
    """Put the images in the deferred response; once its token has expired, in a channel message
    that mentions the requester (or a DM for private results). Raises when nothing could be posted."""
    from cogs.buttons import result_view

    limit = interaction.filesize_limit or discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES
    fitted = await fit_images(result, limit, bot.services.pillow)
    batches = _batches(fitted)
    first = batches[0][0][0] if batches[0] else None
    embed = result_embed(result, interaction.user, first)
    message: discord.Message | None = None
    if not _expiring(interaction):
        try:
            message = await interaction.edit_original_response(
                content=None,
                embed=embed,
                attachments=as_files(batches[0]),
                view=result_view(result.job_id),
                allowed_mentions=NO_MENTIONS,
            )
            for batch in batches[1:]:
                await interaction.followup.send(
                    files=as_files(batch), ephemeral=private, allowed_mentions=NO_MENTIONS
                )
        except discord.HTTPException as exc:
            if not token_gone(exc):
                raise
            log.info("job %s: interaction token expired; posting in the channel", result.job_id)
    if message is None:
        message = await _post_without_token(interaction, result, private=private)
    await bot.services.jobs.set_posted(result.job_id, message.channel.id, message.id)
    return message


async def _post_without_token(
    interaction: discord.Interaction, result: JobResult, *, private: bool
) -> discord.Message:
    from cogs.buttons import result_view

    user = interaction.user
    target: Any = user if private else interaction.channel
    if target is None:
        raise UserError("The interaction expired and there is no channel to post the result in.")
    limit = interaction.filesize_limit or discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES
    guild_limit = getattr(interaction.guild, "filesize_limit", None)
    limit = min(limit, guild_limit or limit) if not private else discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES
    fitted = await fit_images(result, limit, interaction.client.services.pillow)  # type: ignore[attr-defined]
    batches = _batches(fitted)
    first = batches[0][0][0] if batches[0] else None
    message = await target.send(
        content=f"{user.mention} your image is ready (job `{result.job_id}`).",
        embed=result_embed(result, user, first),
        files=as_files(batches[0]),
        view=result_view(result.job_id),
        allowed_mentions=discord.AllowedMentions(users=[user]),  # the requester only
    )
    for batch in batches[1:]:
        await target.send(files=as_files(batch), allowed_mentions=NO_MENTIONS)
    return message


async def run_and_deliver(
    bot: KontextBot, interaction: discord.Interaction, request: JobRequest, *, private: bool
) -> JobResult | None:
    """Run a job for a deferred interaction and post the outcome. Every failure is told to the
    requester; nothing is raised but a cancellation of this task itself (the bot stopping)."""
    progress = Progress(interaction, bot)
    # The job runs in a task of its own, so Cancel can stop it while this one tells the user.
    job = asyncio.create_task(bot.services.jobs.run(request, on_event=progress.on_event))
    progress.task = job
    try:
        result = await job
    except asyncio.CancelledError:
        await progress.close()
        me = asyncio.current_task()
        if bot.stopping or (me is not None and me.cancelling()):
            raise  # interrupted by a stop: the job keeps its state for the next start
        await progress.show_final(f"✖️ Cancelled · job `{progress.job_id}` · you were not charged.")
        return None
    except UserError as exc:
        await progress.close()
        await tell_requester(interaction, exc)
        return None
    except Exception:
        await progress.close()
        log.exception("interaction %s: the job failed unexpectedly", interaction.id)
        await tell_requester(interaction, UserError("Something went wrong on our side."))
        return None
    await progress.close()
    try:
        await post_result(bot, interaction, result, private=private)
    except Exception as exc:
        # The member got nothing, so they pay nothing: give the settled charge back.
        log.exception("job %s: the result could not be posted", result.job_id)
        try:
            await bot.services.accounts.refund(result.job_id, reason="the result could not be posted")
        except Exception:
            log.exception("job %s: refund after a failed delivery failed", result.job_id)
        why = exc.user_message if isinstance(exc, UserError) else "Discord did not accept the upload."
        await tell_requester(
            interaction, JobFailed(result.job_id, UserError(f"The result could not be posted: {why}"))
        )
        return None
    return result


async def deliver_to_channel(bot: KontextBot, record: Job, outcome: JobResult | JobFailed) -> None:
    """After a restart: post a recovered job's result (or its refund) in its channel."""
    from cogs.buttons import result_view

    channel: Any = bot.get_channel(record.channel_id or 0) or await bot.fetch_channel(record.channel_id or 0)
    user = discord.Object(id=record.user_id) if record.user_id else None
    mention = f"<@{record.user_id}> " if record.user_id else ""
    allowed = discord.AllowedMentions(users=[user]) if user else NO_MENTIONS
    if isinstance(outcome, JobResult) and outcome.nsfw and not nsfw_allowed(channel):
        await bot.services.accounts.refund(outcome.job_id, reason="flagged as adult content")
        outcome = JobFailed(
            outcome.job_id,
            UserError("The provider flagged this result as adult content, which this channel cannot show."),
        )
    if isinstance(outcome, JobFailed):
        await channel.send(f"{mention}{user_error_text(outcome)}", allowed_mentions=allowed)
        return
    guild = getattr(channel, "guild", None)
    limit = getattr(guild, "filesize_limit", discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES)
    fitted = await fit_images(outcome, limit, bot.services.pillow)
    batches = _batches(fitted)
    message = await channel.send(
        content=f"{mention}your image is ready (finished after a restart).",
        embed=result_embed(outcome, None, batches[0][0][0] if batches[0] else None),
        files=as_files(batches[0]),
        view=result_view(outcome.job_id),
        allowed_mentions=allowed,
    )
    for batch in batches[1:]:
        await channel.send(files=as_files(batch), allowed_mentions=NO_MENTIONS)
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
    """Age-restricted channels (and threads in them) may show flagged results, as spoilers."""
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


def _too_big(att: discord.Attachment, max_bytes: int) -> UserError:
    size, limit = att.size / 1048576, max_bytes // 1048576
    return UserError(f"{att.filename} is {size:.1f} MB; the limit is {limit} MB.")


def attachment_loader(att: discord.Attachment, max_bytes: int) -> InputLoader:
    """The attachment as a job input, read by the job service when its intake gate lets it in, so a
    burst of uploads is not all held in memory while waiting to be normalised. Attachment links
    stay valid for hours; the wait is seconds. Size is checked before reading."""

    async def load() -> bytes:
        if att.size > max_bytes:
            raise _too_big(att, max_bytes)
        try:
            return await att.read()
        except discord.HTTPException as exc:
            raise UserError(
                "Could not read the attached image from Discord; please attach it again."
            ) from exc

    return load


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
    """Check fast, defer within 3 s, then run and deliver; the job service reads the attachments
    when its intake lets them in (an unreadable one is told privately, nothing recorded).
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
        # A member's preferred aspect ratio fills in for new jobs; a Re-roll keeps the job's own.
        if source != "reroll" and params.get("aspect_ratio") is None and prefs.aspect_ratio:
            if purpose != "edit" and "aspect_ratio" in catalog.get(model_id).params:
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
                raise _too_big(att, max_bytes)
    except UserError as exc:
        await tell_error(interaction, exc)
        return
    try:
        await interaction.response.defer(thinking=True, ephemeral=prefs.private_results)
    except discord.HTTPException as exc:  # too late (10062) or answered twice: nobody to tell
        log.warning("interaction %s: could not defer: %s", interaction.id, exc)
        return
    inputs: list[bytes | InputLoader] = (
        list(images) if images is not None else [attachment_loader(att, max_bytes) for att in attachments]
    )
    await run_and_deliver(bot, interaction, replace(request, images=inputs), private=prefs.private_results)
