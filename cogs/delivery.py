"""Where jobs meet Discord after they are queued: the worker's presenter, the progress board and
the waiting room, started together.

Loaded by every process that talks to Discord: ``kontext-bot run`` (also runs jobs, unless
``--no-worker``) and ``kontext-bot worker`` (runs jobs, no gateway). A process that runs jobs
attaches the presenter to its worker and starts it for every job; every process may paint the
waiting room (one at a time, see cogs/waiting_room.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from discord.ext import commands

from cogs.board import Board
from cogs.presenter import DiscordPresenter
from cogs.waiting_room import WaitingRoom

if TYPE_CHECKING:
    from bot.client import KontextBot

log = logging.getLogger(__name__)


class DeliveryCog(commands.Cog, name="Delivery"):
    def __init__(self, bot: KontextBot) -> None:
        self.bot = bot
        self.board = Board(bot)
        self.presenter = DiscordPresenter(bot, self.board)
        self.room = WaitingRoom(bot, owner=bot.services.worker.id)
        self._room_task: asyncio.Task[Any] | None = None

    async def cog_load(self) -> None:
        self.bot.waiting_room = self.room
        self._room_task = asyncio.create_task(self.room.run(), name="waiting-room")
        if self.bot.run_jobs and not self.bot.closing:  # a SIGTERM during start-up: no worker to start
            worker = self.bot.services.worker
            worker.observer = self.presenter
            await worker.start(claim_all=True)

    async def cog_unload(self) -> None:
        self.bot.waiting_room = None
        if self._room_task is not None:
            self._room_task.cancel()
            with contextlib.suppress(BaseException):
                await self._room_task
        await self.board.close()


async def setup(bot: KontextBot) -> None:
    await bot.add_cog(DeliveryCog(bot))
