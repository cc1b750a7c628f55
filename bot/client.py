"""KontextBot: the discord.py client. It gets its services injected and loads the cogs.

Only this module and cogs/ import discord. The REST base and gateway URL can be pointed elsewhere
(a REST rate-limit proxy, or the fake Discord in the tests) through DISCORD_API_BASE and
DISCORD_GATEWAY_URL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.ext import commands

from bot.config import Settings
from bot.errors import ConfigError, UserError
from bot.jobs import JobFailed, JobResult
from bot.services import Services

log = logging.getLogger(__name__)

EXTENSIONS = ("cogs.create", "cogs.buttons", "cogs.account", "cogs.admin")

# Discord rate-limits message edits (numbers unpublished); the best bots edit every 3-5 s.
PROGRESS_EVERY = 3.0  # at least this many seconds between two progress edits
PROGRESS_REFRESH = 5.0  # re-show the elapsed time this often when nothing else changes
SHUTDOWN_GRACE = 5.0  # seconds a stopping bot waits for its cancelled jobs to let go
NO_MENTIONS = discord.AllowedMentions.none()


def point_discord_at(settings: Settings) -> None:
    """discord.py reads these class attributes for every request and connection."""
    if settings.discord_api_base:
        discord.http.Route.BASE = settings.discord_api_base
    if settings.discord_gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


def user_error_text(exc: UserError) -> str:
    """What a member reads for a failure: the plain message, the job id when one was recorded, and
    whether they were charged. JobFailed already names its job and says it was not charged."""
    text = exc.user_message
    if not isinstance(exc, JobFailed):
        job_id = getattr(exc, "job_id", None)  # e.g. a quota refusal is recorded as a job
        text += f" (job {job_id}; you were not charged)" if job_id else " You were not charged."
    return "⚠️ " + text


def token_gone(exc: discord.HTTPException) -> bool:
    """The interaction token expired (15 minutes) or the interaction is unknown: answer elsewhere."""
    return exc.status == 401 or exc.code in (50027, 10015, 10062)


async def answer_privately(interaction: discord.Interaction, text: str) -> bool:
    """An ephemeral message whether or not the interaction was answered yet. False if Discord
    would not take it (the token expired), so the caller can say it somewhere else."""
    if interaction.is_expired():
        return False
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
            return True
        if interaction.response.type is discord.InteractionResponseType.deferred_channel_message:
            # The original is our "thinking…" (or progress) message. An ephemeral follow-up cannot
            # replace a public one (it would inherit its visibility), so it goes, and a private
            # message takes its place.
            try:
                await interaction.delete_original_response()
            except discord.HTTPException as exc:
                if token_gone(exc):
                    return False
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        return True
    except discord.HTTPException as exc:
        log.warning("could not answer interaction %s: %s", interaction.id, exc)
        return False


class KontextTree(app_commands.CommandTree["KontextBot"]):
    """Every command error ends in an ephemeral message, never "The application did not respond"."""

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        if isinstance(original, UserError):
            await answer_privately(interaction, user_error_text(original))
            return
        if isinstance(original, app_commands.AppCommandError) and not isinstance(
            original, app_commands.CommandInvokeError
        ):
            # Check failures, missing permissions, cooldowns: discord.py's text is written for users.
            await answer_privately(interaction, f"⚠️ {original}")
            return
        name = interaction.command.qualified_name if interaction.command else "?"
        log.error("command /%s failed (interaction %s)", name, interaction.id, exc_info=original)
        await answer_privately(
            interaction,
            f"⚠️ Something went wrong on our side (reference {interaction.id}). "
            "Nothing was charged for it; please try again.",
        )


class KontextBot(commands.Bot):
    def __init__(
        self,
        services: Services,
        *,
        recover: bool = True,
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
            tree_cls=KontextTree,
            **options,
        )
        self.services = services
        self.progress_every = progress_every  # tests lower these instead of sleeping
        self.progress_refresh = progress_refresh
        self.stopping = False  # set by close(): cancelled jobs are being interrupted, not cancelled
        self._recover = recover
        self.running_jobs: dict[str, asyncio.Task[Any]] = {}  # job id -> task, for Cancel
        self._background: set[asyncio.Task[Any]] = set()

    async def setup_hook(self) -> None:
        for ext in EXTENSIONS:
            await self.load_extension(ext)
        if self._recover:
            self.spawn(self._recover_jobs())

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Start a background task and keep a reference (asyncio keeps only weak ones)."""
        task = asyncio.create_task(coro)
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
        # Jobs in flight keep their recorded state (queued, or running with the provider's task id)
        # so the next start resumes or refunds them; their tasks are only interrupted here.
        self.stopping = True
        self.services.jobs.begin_shutdown()
        tasks = [t for t in (*self.running_jobs.values(), *self._background) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE)
        await super().close()


# --- what the CLI's `run` and `sync` call: the Discord side of them, so the CLI imports no discord ---


def _discord_failure(exc: BaseException, settings: Settings) -> BaseException:
    """Discord's own failures at login or connection, as the one line an operator reads."""
    if isinstance(exc, discord.LoginFailure):
        return ConfigError("Discord refused DISCORD_TOKEN (login failed); check the token.")
    if isinstance(exc, (aiohttp.ClientError, OSError)):  # DNS, refused, TLS: not our bug
        api = settings.discord_api_base or "discord.com"
        return UserError(f"Cannot reach Discord ({api}): {type(exc).__name__}.")
    return exc


async def run_bot(services: Services, stop: asyncio.Event) -> None:
    """Serve Discord until ``stop`` is set (then close, leaving jobs in flight to the next start) or
    the connection ends for good. Raises ConfigError for a refused token, UserError when Discord
    cannot be reached."""
    settings = services.settings
    point_discord_at(settings)
    async with KontextBot(services) as bot:
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


async def sync_commands(services: Services, guild_id: int | None = None) -> list[str]:
    """Register the slash commands, in one guild (instant) or globally; returns their names.
    Raises ConfigError for a refused token, UserError when Discord refuses or cannot be reached."""
    settings = services.settings
    point_discord_at(settings)
    guild = discord.Object(id=guild_id) if guild_id else None
    async with KontextBot(services, recover=False) as bot:
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
