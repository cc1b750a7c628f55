"""Runs one route: picks the adapter (or the sandbox), bounds each provider's concurrency.

Default provider accounts limit tasks in flight (WaveSpeed: 2, BFL: 24); going past that earns
429s, so each provider gets a semaphore sized by ``ProviderSettings.max_concurrency``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor

from bot.catalog import Route
from bot.providers import sandbox
from bot.providers.base import Adapter, GenerationRequest, ProviderOutput
from bot.providers.http import ProviderClient


class ProviderRunner:
    def __init__(
        self,
        client: ProviderClient,
        adapters: Mapping[str, Adapter],
        concurrency: Mapping[str, int],
        pillow: Executor | None = None,  # the sandbox draws its images with Pillow
    ) -> None:
        self._client = client
        self._pillow = pillow
        self._adapters = dict(adapters)
        self._slots = {name: asyncio.Semaphore(max(1, concurrency.get(name, 8))) for name in adapters}

    @property
    def client(self) -> ProviderClient:
        return self._client

    def enabled(self) -> tuple[str, ...]:
        return tuple(self._adapters)

    async def run(
        self,
        route: Route,
        req: GenerationRequest,
        *,
        deadline: float,
        on_task: Callable[[str], Awaitable[None]] | None = None,
        on_progress: Callable[[float | None], Awaitable[None]] | None = None,
    ) -> ProviderOutput:
        if route.provider == sandbox.NAME:
            return await sandbox.run(req, self._pillow)
        adapter = self._adapters[route.provider]
        async with self._slots[route.provider]:
            return await self._client.run(
                adapter, req, deadline=deadline, on_task=on_task, on_progress=on_progress
            )

    async def resume(
        self,
        provider: str,
        task_id: str,
        *,
        deadline: float,
        on_progress: Callable[[float | None], Awaitable[None]] | None = None,
    ) -> ProviderOutput:
        adapter = self._adapters[provider]  # KeyError: that provider is no longer configured
        async with self._slots[provider]:
            return await self._client.resume(adapter, task_id, deadline=deadline, on_progress=on_progress)
