"""How a job looks in Discord while it runs and when it ends: the worker's observer.

Progress (generating, waiting for a busy provider, switching provider) is shown by editing the job's
message through a ``Board``. At the end the message reaches its final state: the images (re-encoded
to the upload limit, ten per message, with the embed and the result buttons), or a short neutral
note for everyone with the details sent privately to the requester. After the 15-minute token the
result is posted as a reply that mentions only the requester, and the original message is edited
(through the channel) to point at it, so no finished job keeps its Cancel button.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import TYPE_CHECKING

import discord

import storage
from bot import images
from bot.money import price
from bot.outcomes import JobFailed, JobResult, refunded_by_admin
from bot.providers.base import label_of
from bot.requests import Delivery, JobEvent, Stage
from bot.worker import Posted
from cogs.board import Board, Reach
from cogs.replies import NO_MENTIONS, model_short, safe_text, user_error_text
from cogs.views import result_view

if TYPE_CHECKING:
    from bot.client import KontextBot

log = logging.getLogger(__name__)

MAX_FILES = 10  # attachments Discord takes per message
RANK = {Stage.QUEUED: 0, Stage.WAITING: 1, Stage.RUNNING: 2, Stage.FAILOVER: 2}


# --- what a job shows while it waits or runs ---------------------------------------------------


def queued_text(job_id: str, position: int, waiting_for: str | None = None) -> str:
    place = f"position {position} in line" if position else "in line"
    if waiting_for:
        busy = f"⏳ Waiting for {label_of(waiting_for)}, which is busy — your place is kept"
        return f"{busy} ({place}) · job `{job_id}`"
    return f"⏳ Queued — {place} · job `{job_id}`"


def running_text(event: JobEvent, now: float) -> str:
    job = f"job `{event.job_id}`"
    provider = label_of(event.provider or "")
    if event.stage is Stage.WAITING:
        return f"⏳ Waiting for {provider}, which is busy — your place in line is kept · {job}"
    elapsed = f"{max(now - (event.started or now), 0):.0f}s"
    waited = f" (waited {event.waited:.0f}s in line)" if event.waited >= 1 else ""
    pct = f" {round(event.progress * 100)}%" if event.progress is not None else ""
    verb = "Switching to another provider" if event.stage is Stage.FAILOVER else "Generating"
    return f"🎨 {verb}{pct} — {model_short(event.model)} on {provider} · {elapsed}{waited} · {job}"


# --- the result ----------------------------------------------------------------------------------


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


def paid_text(result: JobResult) -> str:
    if result.sandbox:
        return "Free — sandbox placeholder (no provider key is set)"
    if result.charged_to == "free":
        left = result.free_remaining
        tail = f", {left} free image(s) left" if left is not None else ""
        return f"Free quota (worth {price(result.cost_micros)}){tail}"
    if result.charged_to.startswith("team:"):
        return f"{price(result.charged_micros)} from team {safe_text(result.charged_to[5:], 60)}"
    if result.charged_to == "guild":
        return f"{price(result.charged_micros)} from the server budget"
    return price(result.cost_micros)


def time_text(result: JobResult) -> str:
    text = f"{result.elapsed:.1f}s"
    return text + f" (+{result.waited:.0f}s in line)" if result.waited >= 1 else text


def result_embed(result: JobResult, first_file: str | None = None) -> discord.Embed:
    embed = discord.Embed(description=safe_text(result.prompt, 1000), colour=discord.Colour.blurple())
    embed.add_field(name="Model", value=model_short(result.model))
    embed.add_field(name="Seed", value=str(result.seed) if result.seed is not None else "—")
    embed.add_field(name="Time", value=time_text(result))
    if result.user_id is not None:  # a mention inside an embed shows the name and pings nobody
        embed.add_field(name="Requested by", value=f"<@{result.user_id}>")
    embed.add_field(name="Cost", value=paid_text(result), inline=False)
    embed.set_footer(text=f"job {result.job_id} · {label_of(result.provider)}")
    if first_file and not result.nsfw:  # an embed image would show a spoilered file unblurred
        embed.set_image(url=f"attachment://{first_file}")
    return embed


class DiscordPresenter:
    """The worker's observer for Discord jobs (see bot.worker.JobObserver)."""

    def __init__(self, bot: KontextBot, board: Board) -> None:
        self.bot = bot
        self.board = board

    async def update(self, job: storage.Job, event: JobEvent) -> None:
        if job.delivery is None:
            return
        delivery = Delivery.from_json(job.delivery)
        self.board.show(
            job.id,
            delivery,
            rank=RANK[event.stage],
            render=lambda: running_text(event, time.monotonic()),
            live=event.stage in (Stage.RUNNING, Stage.FAILOVER),
        )

    async def finish(self, job: storage.Job, outcome: JobResult | JobFailed) -> Posted | None:
        await self.board.finish(job.id)
        if job.delivery is None:
            return None
        reach = Reach(self.bot, Delivery.from_json(job.delivery))
        if isinstance(outcome, JobResult):
            message = await self._post(reach, outcome)
            return Posted(message.channel.id, message.id)
        await self._tell(reach, job, outcome)
        return None

    async def _post(self, reach: Reach, result: JobResult) -> discord.Message:
        fitted = await fit_images(result, reach.d.upload_limit, self.bot.services.pillow)
        batches = [fitted[i : i + MAX_FILES] for i in range(0, len(fitted), MAX_FILES)] or [[]]
        first = batches[0][0][0] if batches[0] else None
        embed = result_embed(result, first)
        message = None
        if reach.token_alive():  # after the token a new message pings the requester instead
            message = await reach.edit(
                webhook_only=True,
                content=None,
                embed=embed,
                attachments=as_files(batches[0]),
                view=result_view(result.job_id),
            )
            for batch in batches[1:]:
                if message is not None:
                    await reach.followup(files=as_files(batch), ephemeral=reach.d.ephemeral)
        if message is None:  # the token ran out: a reply that pings the requester alone
            message = await reach.post(
                f"your image is ready (job `{result.job_id}`).",
                embed=embed,
                files=as_files(batches[0]),
                view=result_view(result.job_id),
            )
            for batch in batches[1:]:
                await message.channel.send(files=as_files(batch), allowed_mentions=NO_MENTIONS)
            await self._point_to(
                reach, f"✅ Finished — the result is in the reply below · job `{result.job_id}`"
            )
        return message

    async def _tell(self, reach: Reach, job: storage.Job, failure: JobFailed) -> None:
        details = user_error_text(failure)
        if reach.d.ephemeral:  # only the requester sees this message: the details belong in it
            if await self._point_to(reach, details):
                return
            await reach.post(details)
            return
        if refunded_by_admin(job):
            note = f"✖️ Refunded by an admin before it finished · job `{job.id}` · nobody was charged for it."
        elif job.status == "cancelled":
            note = f"✖️ Cancelled · job `{job.id}` · nobody was charged for it."
        else:
            note = f"⚠️ This job did not finish (job `{job.id}`). The requester was told why, privately."
        await self._point_to(reach, note)
        if job.status == "cancelled" and "cancelled: cancelled by the member" in (job.error or ""):
            return  # the member who cancelled was answered by the Cancel button itself
        if await reach.followup(content=details, ephemeral=True) is None:
            await reach.post(details)

    async def _point_to(self, reach: Reach, text: str) -> bool:
        """The job's own message in its final state (no buttons). False when it cannot be edited."""
        try:
            return await reach.edit(content=text, embed=None, attachments=[], view=None) is not None
        except discord.HTTPException as exc:
            log.info("job message could not be edited to its final state: %s", exc)
            return False
