"""Reaching a job's message from any process, and editing it calmly.

``Reach`` finds the way to a job's message from what the job stored (``bot.requests.Delivery``):
the interaction webhook while its 15-minute token lives (no gateway needed: a worker process that
only logged in can use it), the channel endpoint after that (the bot may still edit its own public
messages), and nothing for an expired private (ephemeral) message.

``Board`` shows a running job's state by editing that message: at most one edit per message every
``bot.progress_every`` seconds, the elapsed time refreshed every ``bot.progress_refresh``, never an
older state over a newer one, and all boards' progress edits together held under a global rate
(Discord allows 50 requests/s per bot; progress must never crowd out the answers that matter).
Intermediate states may be skipped; final states go through ``finish`` and are never skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import discord

from bot.aio import wait_event
from bot.requests import Delivery
from cogs.replies import NO_MENTIONS, token_gone
from cogs.views import cancel_view

if TYPE_CHECKING:
    from bot.client import KontextBot

log = logging.getLogger(__name__)

TOKEN_MARGIN = timedelta(seconds=30)  # do not start a webhook call on a token about to expire
PROGRESS_RATE = 5.0  # progress edits per second, all jobs of this process together
PROGRESS_BURST = 10


class Reach:
    """The ways to a job's message; see the module docstring."""

    def __init__(self, bot: KontextBot, delivery: Delivery) -> None:
        self.bot = bot
        self.d = delivery
        self._dead_token = False

    def token_alive(self) -> bool:
        return not self._dead_token and datetime.now(UTC) + TOKEN_MARGIN < self.d.token_expires_at

    def _webhook(self) -> discord.Webhook:
        # An application-owned webhook bound to the client's state, exactly what
        # Interaction.followup builds: it may carry ephemeral flags and the persistent buttons.
        data: Any = {"id": self.d.application_id, "type": 3, "token": self.d.token}
        return discord.Webhook.from_state(data, self.bot._connection)

    def channel(self) -> discord.PartialMessageable | None:
        return self.bot.get_partial_messageable(self.d.channel_id) if self.d.channel_id else None

    async def edit(self, *, webhook_only: bool = False, **kw: Any) -> discord.Message | None:
        """Edit the job's message; None when no way is left (an expired private message, or
        ``webhook_only`` once the token is gone)."""
        kw.setdefault("allowed_mentions", NO_MENTIONS)
        if self.d.message_id is None:
            return None
        if self.token_alive():
            try:
                return await self._webhook().edit_message(self.d.message_id, **kw)
            except discord.HTTPException as exc:
                if not token_gone(exc):
                    raise
                self._dead_token = True
        channel = self.channel()
        if webhook_only or self.d.ephemeral or channel is None:
            return None
        return await channel.get_partial_message(self.d.message_id).edit(**kw)

    async def followup(self, **kw: Any) -> discord.Message | None:
        """A new message under the interaction (``ephemeral`` honoured); None once the token is gone."""
        kw.setdefault("allowed_mentions", NO_MENTIONS)
        if not self.token_alive():
            return None
        try:
            return await self._webhook().send(wait=True, **kw)
        except discord.HTTPException as exc:
            if not token_gone(exc):
                raise
            self._dead_token = True
            return None

    async def post(self, content: str, **kw: Any) -> discord.Message:
        """A new message for the requester when the interaction cannot carry it: in the channel,
        as a reply to the job's message and mentioning only them; a private job goes to their DMs."""
        mention = f"<@{self.d.user_id}> "
        allowed = discord.AllowedMentions(users=[discord.Object(self.d.user_id)])
        channel = self.channel()
        if self.d.ephemeral or channel is None:
            user = await self.bot.fetch_user(self.d.user_id)
            return await user.send(content, allowed_mentions=NO_MENTIONS, **kw)
        if self.d.message_id is not None:
            kw["reference"] = discord.MessageReference(
                message_id=self.d.message_id, channel_id=self.d.channel_id, fail_if_not_exists=False
            )
        return await channel.send(mention + content, allowed_mentions=allowed, **kw)


@dataclass
class _Slot:
    reach: Reach
    rank: int
    render: Callable[[], str]
    live: bool
    shown: str | None = None
    last: float = float("-inf")
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class _Budget:
    """A token bucket: ``rate`` edits per second with bursts of ``burst``, granted in order."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = float(burst)
        self.stamp = clock()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        async with self._lock:
            while True:
                now = self.clock()
                self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


class Board:
    def __init__(
        self,
        bot: KontextBot,
        *,
        rate: float = PROGRESS_RATE,
        burst: int = PROGRESS_BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bot = bot
        self.clock = clock
        self.budget = _Budget(rate, burst, clock)
        self._slots: dict[str, _Slot] = {}
        self.edits = 0  # progress edits sent (the benchmarks and tests read it)

    def show(
        self, job_id: str, delivery: Delivery, *, rank: int, render: Callable[[], str], live: bool
    ) -> None:
        """Show a job's state (``render`` is called at each edit, so a live state shows the time
        at that moment). A state of lower ``rank`` than the one shown is ignored."""
        slot = self._slots.get(job_id)
        if slot is not None and rank < slot.rank:
            return
        if slot is None:
            slot = self._slots[job_id] = _Slot(Reach(self.bot, delivery), rank, render, live)
            slot.task = asyncio.create_task(self._paint(job_id, slot), name=f"progress-{job_id}")
        slot.rank, slot.render, slot.live = rank, render, live
        slot.wake.set()

    async def finish(self, job_id: str) -> None:
        """Stop showing progress, and make sure no progress edit in flight lands after this."""
        slot = self._slots.pop(job_id, None)
        if slot is not None and slot.task is not None:
            slot.task.cancel()
            await asyncio.gather(slot.task, return_exceptions=True)

    async def close(self) -> None:
        for job_id in list(self._slots):
            await self.finish(job_id)

    async def _paint(self, job_id: str, slot: _Slot) -> None:
        while True:
            if slot.render() != slot.shown:
                wait = slot.last + self.bot.progress_every - self.clock()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self.budget.take()
                text = slot.render()
                slot.last = self.clock()
                if text != slot.shown:
                    slot.shown = text
                    if not await self._edit(job_id, slot, text):
                        return
            slot.wake.clear()
            timeout = self.bot.progress_refresh if slot.live else None
            await wait_event(slot.wake, timeout)

    async def _edit(self, job_id: str, slot: _Slot, text: str) -> bool:
        try:
            self.edits += 1
            return await slot.reach.edit(content=text, view=cancel_view(job_id)) is not None
        except discord.HTTPException as exc:  # progress is best effort; the result is not
            log.debug("job %s: progress edit failed: %s", job_id, exc)
            return True
        except Exception as exc:  # e.g. the HTTP session closing under a stopping bot
            log.debug("job %s: progress edit failed: %r", job_id, exc)
            return False
