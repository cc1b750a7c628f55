"""The queue in front of the providers: fair between users, bounded per user and overall.

A job waits here for a running slot. Slots are handed out round-robin between users, so one member
queueing ten jobs cannot starve the next member's single job. Each user may have at most
``per_user`` jobs running; beyond ``max_queue`` waiting jobs a new one is refused at once.
Per-provider concurrency is the provider runner's business, not this queue's.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager

from bot.errors import UserError

log = logging.getLogger(__name__)


PositionSink = Callable[[int], Awaitable[None]]


class QueueFull(UserError):
    code = "queue_full"


class Dispatcher:
    def __init__(self, *, max_running: int = 256, per_user: int = 3, max_queue: int = 500) -> None:
        self.max_running = max_running
        self.per_user = per_user
        self.max_queue = max_queue
        self._running: dict[Hashable, int] = {}
        self._total_running = 0
        # user -> their waiting futures, in arrival order; OrderedDict keeps the rotation order
        self._waiting: OrderedDict[Hashable, deque[asyncio.Future[None]]] = OrderedDict()
        self._waiting_count = 0
        # Waiters who want to hear their place in line as it moves: future -> (user, callback, last told)
        self._listeners: dict[asyncio.Future[None], tuple[Hashable, PositionSink, list[int]]] = {}
        self._notices: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> int:
        return self._total_running

    @property
    def waiting(self) -> int:
        return self._waiting_count

    def position(self, user: Hashable, fut: asyncio.Future[None]) -> int:
        """1-based place in line, counting the round-robin: users ahead take turns with this one."""
        queue = self._waiting.get(user)
        if queue is None or fut not in queue:
            return 0
        mine = list(queue).index(fut)  # this job is served in round ``mine`` of the rotation
        ahead, before_me = mine, True
        for other, q in self._waiting.items():  # rotation order: the next user to serve first
            if other == user:
                before_me = False
                continue
            ahead += min(len(q), mine) + (1 if before_me and len(q) > mine else 0)
        return ahead + 1

    @asynccontextmanager
    async def slot(self, user: Hashable, on_position: PositionSink | None = None) -> AsyncIterator[None]:
        """Hold a running slot for the body. ``user`` None-like keys (operator) are not capped per user."""
        # Anyone still waiting is blocked by their own per-user cap (a free slot would have woken
        # them), so a user who may start now jumps no one.
        if self._can_start(user):
            self._start(user)
        else:
            if self._waiting_count >= self.max_queue:
                raise QueueFull(
                    f"The queue is full ({self.max_queue} jobs waiting). Please try again in a few minutes."
                )
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.setdefault(user, deque()).append(fut)
            self._waiting_count += 1
            try:
                if on_position is not None:
                    told = [self.position(user, fut)]
                    self._listeners[fut] = (user, on_position, told)
                    await on_position(told[0])
                await fut
            except BaseException:
                self._listeners.pop(fut, None)
                if fut.done() and not fut.cancelled():
                    # We were granted a slot but are leaving: give it back to the next in line.
                    self._finish(user)
                else:
                    self._forget(user, fut)
                raise
            self._listeners.pop(fut, None)
        try:
            yield
        finally:
            self._finish(user)

    def _can_start(self, user: Hashable) -> bool:
        if self._total_running >= self.max_running:
            return False
        return user is None or self._running.get(user, 0) < self.per_user

    def _start(self, user: Hashable) -> None:
        self._running[user] = self._running.get(user, 0) + 1
        self._total_running += 1

    def _finish(self, user: Hashable) -> None:
        left = self._running.get(user, 0) - 1
        if left > 0:
            self._running[user] = left
        else:
            self._running.pop(user, None)
        self._total_running -= 1
        self._wake()

    def _forget(self, user: Hashable, fut: asyncio.Future[None]) -> None:
        queue = self._waiting.get(user)
        if queue is not None and fut in queue:
            queue.remove(fut)
            self._waiting_count -= 1
            if not queue:
                del self._waiting[user]
            self._tell_positions()  # everyone behind moved up

    def _wake(self) -> None:
        """Grant free slots round-robin: take the first user who may start, then rotate them last."""
        progressed = True
        while progressed and self._waiting and self._total_running < self.max_running:
            progressed = False
            for user in list(self._waiting):
                if not self._can_start(user):
                    continue
                queue = self._waiting.pop(user)
                fut = queue.popleft()
                self._waiting_count -= 1
                if queue:
                    self._waiting[user] = queue  # re-inserted at the end: the next user goes first
                self._start(user)
                fut.set_result(None)
                progressed = True
                break
        self._tell_positions()

    def _tell_positions(self) -> None:
        """The line moved: tell each listening waiter its new place (only when it changed). The
        callbacks run as tasks so a slow message edit never holds up the queue."""
        for fut, (user, callback, told) in list(self._listeners.items()):
            if fut.done():
                continue
            place = self.position(user, fut)
            if place != told[0]:
                told[0] = place
                task = asyncio.get_running_loop().create_task(callback(place))
                self._notices.add(task)
                task.add_done_callback(self._notices.discard)
