"""KontextBot: the discord.py client. It gets its services injected and loads the cogs.

Only this module and cogs/ import discord. The REST base and gateway URL can be pointed elsewhere
(a REST rate-limit proxy, or the fake Discord in the tests) through DISCORD_API_BASE and
DISCORD_GATEWAY_URL.
"""

from __future__ import annotations

import logging
from typing import Any

import discord
import yarl
from discord.ext import commands

from bot.config import Settings
from bot.services import Services

log = logging.getLogger(__name__)

# Every process that talks to Discord loads these; the commands only where the gateway runs.
COMMANDS = ("cogs.errors", "cogs.create", "cogs.buttons", "cogs.account", "cogs.admin")
DELIVERY = ("cogs.delivery",)

# Discord rate-limits message edits (numbers unpublished); the best bots edit every 3-5 s.
PROGRESS_EVERY = 3.0  # at least this many seconds between two progress edits
PROGRESS_REFRESH = 5.0  # re-show the elapsed time this often when nothing else changes
NO_MENTIONS = discord.AllowedMentions.none()


def point_discord_at(settings: Settings) -> None:
    """discord.py reads these class attributes for every request and connection."""
    if settings.discord_api_base:
        discord.http.Route.BASE = settings.discord_api_base
    if settings.discord_gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


class KontextBot(commands.Bot):
    """``run_jobs``: this process runs queued jobs (``kontext-bot run`` without --no-worker, and
    ``kontext-bot worker``); ``commands``: it serves the slash commands (it has the gateway)."""

    def __init__(
        self,
        services: Services,
        *,
        run_jobs: bool = True,
        commands_enabled: bool = True,
        progress_every: float = PROGRESS_EVERY,
        progress_refresh: float = PROGRESS_REFRESH,
        **options: Any,
    ) -> None:
        # This bot never joins voice: discord.py's "PyNaCl/davey is not installed" warnings at every
        # start would only make operators look for a problem that is not there.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        intents = discord.Intents.default()  # slash commands need no privileged intent
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            allowed_mentions=NO_MENTIONS,  # prompts never ping anyone
            help_command=None,
            **options,
        )
        self.services = services
        self.run_jobs = run_jobs
        self.commands_enabled = commands_enabled
        self.progress_every = progress_every  # tests lower these instead of sleeping
        self.progress_refresh = progress_refresh
        self.waiting_room: Any = None  # set by cogs/delivery.py: shows a new job's place at once

    async def setup_hook(self) -> None:
        for ext in (*(COMMANDS if self.commands_enabled else ()), *DELIVERY):
            await self.load_extension(ext)

    async def close(self) -> None:
        # Running jobs get the shutdown grace to finish; what cannot is handed back to the queue
        # (resumable by its task id), so the next worker picks it up. Delivery needs the HTTP
        # session, so the worker stops before the client does.
        await self.services.worker.stop(self.services.settings.limits.shutdown_grace)
        await super().close()
