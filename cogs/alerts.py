"""Posting budget alerts and period reports in the channel each guild chose.

Loaded by every process that talks to Discord (bot/client.py DELIVERY): each looks for what is due
(bot/alerts.py) after every settlement it hears of (the queue's notification: a slot came free, a
job was accepted) and every ``every`` seconds, so a week's end or a job settled by another process
is noticed within a minute. Several processes may look at once: each notice is claimed in the
database before it is posted, so exactly one of them posts it. Messages go out over REST
(``get_partial_messageable``: no gateway cache needed) and mention nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from bot.aio import wait_event
from bot.alerts import Notice
from cogs.replies import NO_MENTIONS
from cogs.usage_post import usage_message
from storage import queue

if TYPE_CHECKING:
    from bot.client import KontextBot

log = logging.getLogger(__name__)

EVERY = 60.0  # seconds between two looks when nothing wakes the checker sooner
MIN_GAP = 1.0  # seconds at least between two looks: a busy queue wakes it many times a second
MESSAGE_CHARS = 2000


class AlertsCog(commands.Cog, name="Alerts"):
    def __init__(self, bot: KontextBot, *, every: float = EVERY, min_gap: float = MIN_GAP) -> None:
        self.bot = bot
        self.every = every
        self.min_gap = min_gap
        self.posted = 0  # messages posted by this process (tests and logs read it)
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[Any] | None = None

    async def cog_load(self) -> None:
        self._task = asyncio.create_task(self._run(), name="budget-alerts")

    async def cog_unload(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    async def _on_queue(self, _payload: str) -> None:
        self._wake.set()

    async def _run(self) -> None:
        listening = await self.bot.services.db.listen(queue.QUEUE_CHANNEL, self._on_queue)
        try:
            while True:
                self._wake.clear()
                try:
                    await self.check()
                except Exception:
                    log.exception("checking budget alerts failed")
                await asyncio.sleep(self.min_gap)
                await wait_event(self._wake, max(0.0, self.every - self.min_gap))
        finally:
            await listening.stop()

    async def check(self) -> int:
        """Post what is due now; returns how many messages this process posted."""
        async with self._lock:  # one look at a time in this process; other processes claim
            alerts = self.bot.services.alerts
            posted = 0
            for notice in await alerts.due():
                posted += await self._post(notice)
            return posted

    async def _post(self, notice: Notice) -> int:
        alerts = self.bot.services.alerts
        try:
            content, files = await self._render(notice)
            channel = self.bot.get_partial_messageable(notice.channel_id, guild_id=notice.guild_id)
            message = await channel.send(content, files=files, allowed_mentions=NO_MENTIONS)
        except (discord.Forbidden, discord.NotFound) as exc:
            # The channel is gone or closed to the bot: trying again every minute would not help.
            log.warning(
                "cannot post a %s alert of guild %s in channel %s (%s); an admin can choose another "
                "channel with /kontext-admin alerts",
                notice.kind,
                notice.guild_id,
                notice.channel_id,
                exc.text or exc.status,
            )
            await alerts.sent(notice, None)
            return 0
        except Exception:
            log.exception(
                "posting a %s alert of guild %s failed; trying again later", notice.kind, notice.guild_id
            )
            await alerts.failed(notice)
            return 0
        await alerts.sent(notice, message.id)
        self.posted += 1
        log.info("posted a %s alert in guild %s (message %s)", notice.kind, notice.guild_id, message.id)
        return 1

    @staticmethod
    async def _render(notice: Notice) -> tuple[str, list[discord.File]]:
        r = notice.report
        if r is None:
            return notice.text[:MESSAGE_CHARS], []
        last = (r.end - timedelta(days=1)).date()
        content, files = await usage_message(
            r.by_user,
            r.by_day,
            heading=r.title,
            chart_title=f"Spend per day, {r.start.date()} to {last} (USD)",
            start=r.start.date(),
            end=last,
            name=f"{r.report}-{r.start.date()}",
        )
        return content[:MESSAGE_CHARS], files


async def setup(bot: KontextBot) -> None:
    await bot.add_cog(AlertsCog(bot))
