"""Runs one route: the sandbox locally, every other provider through its adapter and the one HTTP
client. How many jobs a provider gets at once is the queue's business (storage/queue.py grants a
provider slot with every claim), so nothing here waits for capacity."""

from __future__ import annotations

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
        pillow: Executor | None = None,  # the sandbox draws its images with Pillow
    ) -> None:
        self._client = client
        self._pillow = pillow
        self._adapters = dict(adapters)

    @property
    def client(self) -> ProviderClient:
        return self._client

    def enabled(self) -> tuple[str, ...]:
        return tuple(self._adapters)

    def resumable(self) -> tuple[str, ...]:
        """Providers whose tasks can be asked about again by id (not the synchronous ones)."""
        return tuple(name for name, a in self._adapters.items() if not getattr(a, "synchronous", False))

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
        return await self._client.run(
            self._adapters[route.provider], req, deadline=deadline, on_task=on_task, on_progress=on_progress
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
        return await self._client.resume(adapter, task_id, deadline=deadline, on_progress=on_progress)
