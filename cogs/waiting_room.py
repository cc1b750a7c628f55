"""Every waiting job's message shows its true place in line, calmly.

One process at a time paints the waiting room (it holds the ``waiting-room`` role in the database;
any process can take over when the holder dies). It reads the queue in the order claims serve it
and edits the messages whose place changed, with three bounds:

- a message is edited only when what it shows changes, at most once every ``bot.progress_every``
  seconds;
- updates are at most ``rate`` per second in all, however deep the queue, the messages not shown
  longest going first, so nobody's place goes stale for ever (a new job's first place is part of
  accepting it, one edit per arriving job on its own interaction token, and is not held back);
- never while a job joins or leaves the line in this process (the worker's line gate), so a place
  shown is the place the job had when its edit reached Discord.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from bot.aio import wait_event
from bot.requests import Delivery
from cogs.board import Reach
from cogs.presenter import queued_text
from cogs.views import cancel_view
from storage import queue, roles
from storage import waiting as line_store

if TYPE_CHECKING:
    from bot.client import KontextBot

log = logging.getLogger(__name__)

ROLE = "waiting-room"
EVERY = 1.0  # seconds between two looks at the line, at most (sooner when it moves)
RATE = 5.0  # position edits per second, all messages together, however deep the line
BURST = 10  # edits one look may send after a quiet spell (a burst of new jobs' first places)
EDIT_HOLD = 0.5  # seconds claims wait for this look's edits; a slower edit finishes on its own


class WaitingRoom:
    def __init__(
        self,
        bot: KontextBot,
        *,
        owner: str,
        every: float = EVERY,
        rate: float = RATE,
        burst: int = BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bot = bot
        self.owner = owner
        self.every = every
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._shown: dict[str, tuple[str, float]] = {}  # job id -> (text, when)
        self._tokens = float(burst)
        self._stamp = clock()
        self._moved = asyncio.Event()
        self._sending: set[asyncio.Task[None]] = set()
        self.edits = 0

    def moved(self) -> None:
        self._moved.set()

    async def run(self) -> None:
        listening = await self.bot.services.db.listen(queue.QUEUE_CHANNEL, self._on_queue)
        try:
            while True:
                try:
                    if await roles.hold_role(self.bot.services.db, ROLE, self.owner, ttl=self.every * 5):
                        await self.paint()
                except Exception:
                    log.exception("painting the waiting room failed")
                await wait_event(self._moved, self.every)
                self._moved.clear()
                await asyncio.sleep(min(self.every, 0.25))  # coalesce a burst of moves into one look
        finally:
            with contextlib.suppress(Exception):
                await listening.stop()

    async def _on_queue(self, _payload: str) -> None:
        self.moved()

    async def admit(self, job_id: str, delivery: Delivery) -> None:
        """A job this process just queued: its first place goes out with the next look (at once
        when the line is quiet), ahead of updates to places already on screen."""
        self.moved()

    def _allowance(self) -> int:
        """Edits this look may send: a token bucket of ``rate`` per second, ``burst`` at most."""
        now = self.clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        return int(self._tokens)

    async def paint(self) -> None:
        """One look at the line: edit the messages whose place changed, longest unchanged first.
        Claims and enqueues in this process wait meanwhile (bot.aio.LineGate)."""
        spacing = self.bot.progress_every
        async with self.bot.services.worker.line_gate.showing():
            now = self.clock()
            line = await line_store.waiting(self.bot.services.db)
            due = []
            for entry in line:
                if entry.delivery is None:
                    continue
                text = self._text(entry)
                shown, when = self._shown.get(entry.job_id, (None, float("-inf")))
                if text != shown and now - when >= spacing:
                    due.append((when, entry.position, entry, text))
            # A new job's first place is part of accepting it (one edit per job that arrives, on
            # its own interaction token): never held back. Updates share the rate, stalest first.
            first = [d for d in due if d[0] == float("-inf")]
            updates = sorted((d for d in due if d[0] != float("-inf")), key=lambda d: (d[0], d[1]))
            chosen = first + updates[: self._allowance()]
            self._tokens -= len(chosen) - len(first)
            sending = [
                asyncio.create_task(self._edit(e.job_id, Delivery.from_json(e.delivery), text))
                for _, _, e, text in chosen
            ]
            self._sending.update(sending)
            for task in sending:
                task.add_done_callback(self._sending.discard)
            if sending:
                await asyncio.wait(sending, timeout=EDIT_HOLD)
        waiting_ids = {e.job_id for e in line}
        for job_id in list(self._shown):
            if job_id not in waiting_ids:
                del self._shown[job_id]

    @staticmethod
    def _text(entry: line_store.Waiting) -> str:
        reason = entry.waiting_reason or ""
        busy = reason.split(":", 1)[1] if reason.startswith("provider_busy:") else None
        return queued_text(entry.job_id, entry.position, busy)

    async def _edit(self, job_id: str, delivery: Delivery, text: str) -> None:
        self._shown[job_id] = (text, self.clock())
        self.edits += 1
        try:
            await Reach(self.bot, delivery).edit(content=text, view=cancel_view(job_id))
        except Exception as exc:  # a position is best effort; the next look tries again
            log.debug("job %s: position edit failed: %r", job_id, exc)
