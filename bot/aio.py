"""Small asyncio helpers the worker and the Discord face share."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

T = TypeVar("T")


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:  # noqa: ASYNC109
    """Wait until ``event`` is set or ``timeout`` seconds pass; True if it was set.

    Not ``asyncio.wait_for``: on Python 3.11 a cancellation that lands while wait_for is tearing
    its inner wait down can be swallowed, leaving a stopping task waiting for ever (seen as a hang
    in the worker's stop). ``asyncio.timeout`` re-raises the cancellation as it should.
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def within(awaitable: Awaitable[T], timeout: float) -> T | None:  # noqa: ASYNC109
    """``awaitable``'s result, or None when it takes longer than ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            return await awaitable
    except TimeoutError:
        return None


class LineGate:
    """Who may change the line of waiting jobs, and who may show it.

    Enqueues and claims change the line, many at once (``changing``). Showing positions reads the
    line and sends the edits (``showing``), alone: while it runs no job joins or leaves the line in
    this process, so a position on screen is the one the job had when the edit reached Discord.
    A waiting shower goes before new changers, so a steady stream of claims cannot starve it.
    """

    def __init__(self) -> None:
        self._cond = asyncio.Condition()
        self._changers = 0
        self._showing = False

    @contextlib.asynccontextmanager
    async def changing(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._showing)
            self._changers += 1
        try:
            yield
        finally:
            async with self._cond:
                self._changers -= 1
                self._cond.notify_all()

    @contextlib.asynccontextmanager
    async def showing(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._showing)
            self._showing = True
            await self._cond.wait_for(lambda: self._changers == 0)
        try:
            yield
        finally:
            async with self._cond:
                self._showing = False
                self._cond.notify_all()
