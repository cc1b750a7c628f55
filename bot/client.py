"""KontextBot: the discord.py client. It gets its services injected and loads the cogs.

Only this module and cogs/ import discord. The REST base and gateway URL can be pointed elsewhere
(a REST rate-limit proxy, or the fake Discord in the tests) through DISCORD_API_BASE and
DISCORD_GATEWAY_URL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.ext import commands

from bot.config import Settings
from bot.errors import ConfigError, UserError
from bot.services import Services

log = logging.getLogger(__name__)

# Every process that talks to Discord loads these; the commands only where the gateway runs.
COMMANDS = ("cogs.errors", "cogs.create", "cogs.buttons", "cogs.account", "cogs.admin")
DELIVERY = ("cogs.delivery", "cogs.alerts")

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


class AnsweringTree(app_commands.CommandTree):
    """The command tree, keeping the commands being answered (``KontextBot.answering``): a stopping
    gateway lets them finish, so a member's job is either queued and acknowledged or never taken."""

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        answer = getattr(self.client, "answer", None)
        if answer is not None:
            answer()
        return True


class KontextBot(commands.Bot):
    """``run_jobs``: this process runs queued jobs (``kontext-bot run`` without --no-worker, and
    ``kontext-bot worker``); ``commands``: it serves the slash commands (it has the gateway)."""

    def __init__(
        self,
        services: Services,
        *,
        run_jobs: bool = True,
        commands_enabled: bool = True,
        deliver: bool = True,
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
            tree_cls=AnsweringTree,
            **options,
        )
        self.services = services
        # Commands and buttons being answered (AnsweringTree, and cogs/starting.py for every job a
        # button or modal starts); ``closing``: no new job is taken, members are asked to try again.
        self.answering: set[asyncio.Task[Any]] = set()
        self.closing = False
        self.run_jobs = run_jobs
        self.commands_enabled = commands_enabled
        self.deliver = deliver  # sync only registers commands: nothing is shown or run
        self.progress_every = progress_every  # tests lower these instead of sleeping
        self.progress_refresh = progress_refresh
        self.waiting_room: Any = None  # set by cogs/delivery.py: shows a new job's place at once
        if commands_enabled:  # /healthz: this process is healthy only while its gateway is connected
            services.health.expect_gateway()

    async def setup_hook(self) -> None:
        for ext in (*(COMMANDS if self.commands_enabled else ()), *(DELIVERY if self.deliver else ())):
            await self.load_extension(ext)

    # The gateway's state, for /healthz (bot/health.py): discord.py calls these by name.
    async def on_ready(self) -> None:
        self.services.health.gateway_connected(True)

    async def on_resumed(self) -> None:
        self.services.health.gateway_connected(True)

    async def on_disconnect(self) -> None:
        self.services.health.gateway_connected(False)

    def answer(self) -> None:
        """The running task answers a member: a stopping bot waits for it before it closes."""
        task = asyncio.current_task()
        if task is not None and task not in self.answering:
            self.answering.add(task)
            task.add_done_callback(self.answering.discard)

    async def close(self) -> None:
        self.closing = True
        self.services.health.gateway_connected(False)
        # Commands half answered finish first (their jobs are queued, their members told). Running
        # jobs get the shutdown grace to finish; what cannot is handed back to the queue
        # (resumable by its task id), so the next worker picks it up. Delivery needs the HTTP
        # session, so the worker stops before the client does.
        grace = self.services.settings.limits.shutdown_grace
        until = asyncio.get_running_loop().time() + max(grace, 5.0)
        while self.answering and (left := until - asyncio.get_running_loop().time()) > 0:
            await asyncio.wait(set(self.answering), timeout=left)  # those that came in meanwhile too
        await self.services.worker.stop(grace)
        await super().close()


class ShardedKontextBot(KontextBot, commands.AutoShardedBot):
    """The gateway over shards (``kontext-bot run --shard-count N --shard-ids ...``): each process
    connects only its shards; Discord sends each guild's events on shard (guild_id >> 22) % N."""


# --- what the CLI's run, worker and sync call: their Discord side, so the CLI imports no discord ---


def _discord_failure(exc: BaseException, settings: Settings) -> BaseException:
    """Discord's own failures at login or connection, as the one line an operator reads."""
    if isinstance(exc, discord.LoginFailure):
        return ConfigError("Discord refused DISCORD_TOKEN (login failed); check the token.")
    if isinstance(exc, (aiohttp.ClientError, OSError)):  # DNS, refused, TLS: not our bug
        api = settings.discord_api_base or "discord.com"
        return UserError(f"Cannot reach Discord ({api}): {type(exc).__name__}.")
    return exc


async def run_bot(
    services: Services,
    stop: asyncio.Event,
    *,
    run_jobs: bool = True,
    shard_count: int | None = None,
    shard_ids: list[int] | None = None,
) -> None:
    """Serve Discord until ``stop`` is set (then close, leaving jobs in flight to the next start) or
    the connection ends for good. ``run_jobs=False``: the gateway only (jobs are queued for workers).
    ``shard_count``/``shard_ids``: only those shards (discord.py's AutoShardedBot); without them, one
    connection as discord.py's Bot makes. Raises ConfigError for a refused token, UserError when
    Discord cannot be reached."""
    settings = services.settings
    point_discord_at(settings)
    if shard_count is None and shard_ids is None:
        bot: KontextBot = KontextBot(services, run_jobs=run_jobs)
    else:
        bot = ShardedKontextBot(services, run_jobs=run_jobs, shard_count=shard_count, shard_ids=shard_ids)
    async with bot:
        runner = asyncio.create_task(bot.start(settings.discord_token))
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stopper in done:
            await bot.close()  # jobs in flight keep their state; the next start resumes them
        stopper.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        exc = None if runner.cancelled() else runner.exception()
        if exc is not None:
            failure = _discord_failure(exc, settings)
            if failure is exc:
                raise exc
            raise failure from exc


async def run_worker(
    services: Services, stop: asyncio.Event, on_ready: Callable[[], None] | None = None
) -> None:
    """Run queued jobs until ``stop`` is set, with no gateway: progress and results go through
    Discord's REST API (the interaction webhook while its token lives, a channel message after).
    Raises ConfigError for a refused token, UserError when Discord cannot be reached."""
    settings = services.settings
    point_discord_at(settings)
    async with KontextBot(services, commands_enabled=False) as bot:
        try:
            await bot.login(settings.discord_token)  # REST only; loads the delivery cog, starts the worker
        except (discord.LoginFailure, aiohttp.ClientError, OSError) as exc:
            raise _discord_failure(exc, settings) from None
        if on_ready is not None:
            on_ready()
        await stop.wait()
        await bot.close()  # the worker hands back what it cannot finish in the shutdown grace


async def sync_commands(services: Services, guild_id: int | None = None) -> list[str]:
    """Register the slash commands, in one guild (instant) or globally; returns their names.
    Raises ConfigError for a refused token, UserError when Discord refuses or cannot be reached."""
    settings = services.settings
    point_discord_at(settings)
    guild = discord.Object(id=guild_id) if guild_id else None
    async with KontextBot(services, run_jobs=False, deliver=False) as bot:
        try:
            await bot.login(settings.discord_token)
            if guild is not None:
                bot.tree.copy_global_to(guild=guild)
            synced = await bot.tree.sync(guild=guild)
        except discord.Forbidden:
            raise UserError(
                f"Discord would not register commands in guild {guild_id}: is the bot in that server, "
                "invited with the applications.commands scope?"
            ) from None
        except discord.HTTPException as exc:
            raise UserError(f"Discord refused the commands (HTTP {exc.status}): {exc.text}") from None
        except (discord.LoginFailure, aiohttp.ClientError, OSError) as exc:
            raise _discord_failure(exc, settings) from None
    return [c.name for c in synced]
