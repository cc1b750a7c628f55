"""Starting a job from any interaction: a slash command, the message menu's modal, a button.

Check fast and refuse privately, defer within Discord's 3 seconds, queue the job with where its
progress and result go, show its place in line. From there a worker (in this process or another)
runs it and tells the member (cogs/presenter.py). The rules (allowed channels, default model,
preferences, adult content) are the job service's; this only gathers what Discord tells us.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import discord

from bot.errors import UserError
from bot.requests import Delivery, InputLoader
from cogs.replies import age_restricted, role_ids, tell_error

if TYPE_CHECKING:
    from bot.client import KontextBot

log = logging.getLogger(__name__)


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
) -> str | None:
    """Queue a job for this interaction; returns its id (None when it was refused, and told).
    ``images`` (bytes already in hand, e.g. a Re-roll's stored inputs) replaces ``attachments``."""
    svc = bot.services
    if bot.closing:  # stopping: a job taken now could be cut off half acknowledged
        await tell_error(interaction, UserError("The bot is restarting. Please try again in a minute."))
        return None
    bot.answer()  # a stopping bot lets this finish: the job is queued and acknowledged, or never taken
    count = len(images) if images is not None else len(attachments)
    max_bytes = svc.settings.limits.max_input_bytes
    try:
        composed = await svc.jobs.compose(
            purpose=purpose,
            model=model,
            prompt=prompt,
            params=params,
            user_id=interaction.user.id,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            role_ids=role_ids(interaction.user),
            source=source,
            age_restricted=age_restricted(interaction.channel),
            image_count=count,
        )
        for att in attachments:  # before deferring, so the refusal is private and instant
            if att.size > max_bytes:
                raise _too_big(att, max_bytes)
    except UserError as exc:
        await tell_error(interaction, exc)
        return None
    try:
        response = await interaction.response.defer(thinking=True, ephemeral=composed.private)
    except discord.HTTPException as exc:  # too late (10062) or answered twice: nobody to tell
        log.warning("interaction %s: could not defer: %s", interaction.id, exc)
        return None
    inputs: list[bytes | InputLoader] = (
        list(images) if images is not None else [attachment_loader(att, max_bytes) for att in attachments]
    )
    delivery = Delivery(
        application_id=interaction.application_id,
        token=interaction.token,
        token_expires_at=interaction.expires_at,
        channel_id=interaction.channel_id,
        guild_id=interaction.guild_id,
        user_id=interaction.user.id,
        message_id=getattr(response, "message_id", None),
        ephemeral=composed.private,
        upload_limit=interaction.filesize_limit or discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES,
    )
    try:
        submitted = await svc.jobs.submit(replace(composed.request, images=inputs), delivery=delivery)
    except UserError as exc:
        await tell_error(interaction, exc)
        return None
    room = bot.waiting_room
    if room is not None:
        await room.admit(submitted.job_id, delivery)
    return submitted.job_id
