"""KontextBot: the discord.py client. It gets its services injected and loads the cogs.

Only this module and cogs/ import discord. The REST base and gateway URL can be pointed elsewhere
(a REST rate-limit proxy, or the fake Discord in the tests) through DISCORD_API_BASE and
DISCORD_GATEWAY_URL.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord
import yarl
from discord.ext import commands

from bot.config import Settings
from bot.jobs import JobFailed, JobResult
from bot.services import Services

log = logging.getLogger(__name__)

EXTENSIONS = ("cogs.create", "cogs.buttons")


def point_discord_at(settings: Settings) -> None:
    """discord.py reads these class attributes for every request and connection."""
    if settings.discord_api_base:
        discord.http.Route.BASE = settings.discord_api_base
    if settings.discord_gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


class KontextBot(commands.Bot):
    def __init__(self, services: Services, *, recover: bool = True, **options: Any) -> None:
        intents = discord.Intents.default()  # slash commands need no privileged intent
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            allowed_mentions=discord.AllowedMentions.none(),  # prompts never ping anyone
            help_command=None,
            **options,
        )
        self.services = services
        self._recover = recover
        self.running_jobs: dict[str, asyncio.Task[object]] = {}  # job id -> task, for Cancel
        self._background: set[asyncio.Task[object]] = set()

    async def setup_hook(self) -> None:
        for ext in EXTENSIONS:
            await self.load_extension(ext)
        if self._recover:
            self.spawn(self._recover_jobs())

    def spawn(self, coro: object) -> asyncio.Task[object]:
        """Start a background task and keep a reference (asyncio keeps only weak ones)."""
        task = asyncio.create_task(coro)  # type: ignore[arg-type]
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _recover_jobs(self) -> None:
        await self.wait_until_ready()
        count = await self.services.jobs.recover(self.deliver_recovered)
        if count:
            log.info("recovered %d unfinished job(s) after a restart", count)

    async def deliver_recovered(self, job_id: str, outcome: JobResult | JobFailed) -> None:
        from cogs.delivery import deliver_to_channel

        record = await self.services.jobs.get(job_id)
        if record is None or not record.channel_id:
            return
        await deliver_to_channel(self, record, outcome)

    async def close(self) -> None:
        # In-flight jobs keep their state (running + task id) so the next start resumes them.
        self.services.jobs.begin_shutdown()
        for task in list(self.running_jobs.values()) + list(self._background):
            task.cancel()
        await super().close()
