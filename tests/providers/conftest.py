"""A ProviderClient wired to the emulator over loopback, with a fake clock so waits cost nothing."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from bot.config import Limits
from bot.providers.base import GenerationRequest
from bot.providers.http import ProviderClient
from bot.providers.modelverse import ModelverseAdapter
from bot.providers.vtrix import VtrixAdapter
from bot.providers.wavespeed import WaveSpeedAdapter
from tests.emulator import ProviderEmulator, data_uri, make_png

KEYS = ProviderEmulator.KEYS
OTHER_SECRET = "discord-token-never-shown"
# Real read timeouts stay short: hang faults must cost a fraction of a second, not 30 s.
FAST = {"connect_timeout": 2.0, "read_timeout": 2.0, "poll_interval": 3.0}


class FakeTime:
    """``sleep`` records each delay and moves ``monotonic`` on instead of waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@dataclass
class Rig:
    emu: ProviderEmulator
    http: httpx.AsyncClient
    time: FakeTime

    def client(self, **limits: Any) -> ProviderClient:
        return ProviderClient(
            self.http,
            # The emulator serves results on 127.0.0.1, which the default policy refuses.
            Limits(**{"max_retries": 3, "allow_private_results": True, **limits}),
            secrets=(*KEYS.values(), OTHER_SECRET),
            sleep=self.time.sleep,
            clock=self.time.monotonic,
            rng=random.Random(7),
            download_timeout=2.0,
        )

    def deadline(self, seconds: float = 120.0) -> float:
        return self.time.now + seconds

    def modelverse(self, **kw: Any) -> ModelverseAdapter:
        return ModelverseAdapter(KEYS["modelverse"], self.emu.url, **{**FAST, **kw})

    def vtrix(self, **kw: Any) -> VtrixAdapter:
        return VtrixAdapter(KEYS["vtrix"], self.emu.url, **{**FAST, **kw})

    def wavespeed(self, **kw: Any) -> WaveSpeedAdapter:
        return WaveSpeedAdapter(KEYS["wavespeed"], self.emu.url, **{**FAST, **kw})

    def calls(self, provider: str, method: str | None = None) -> list[Any]:
        return [
            r for r in self.emu.requests if r.provider == provider and (method is None or r.method == method)
        ]


@pytest.fixture
async def rig(emulator: ProviderEmulator) -> AsyncIterator[Rig]:
    async with httpx.AsyncClient() as http:
        yield Rig(emulator, http, FakeTime())


IMAGE = data_uri(make_png(40, 40))


def edit_request(provider: str, **params: Any) -> GenerationRequest:
    model = {
        "modelverse": "black-forest-labs/flux-kontext-pro",
        "vtrix": "flux_kontext_pro",
        "wavespeed": "wavespeed-ai/flux-kontext-pro",
    }[provider]
    return GenerationRequest(model, "make the sky purple", (IMAGE,), params)
