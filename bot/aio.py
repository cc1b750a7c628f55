"""Small asyncio helpers the worker and the Discord face share."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
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
