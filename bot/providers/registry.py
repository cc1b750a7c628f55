"""Which adapter class speaks for which provider name, and building them from settings."""

from __future__ import annotations

from collections.abc import Callable

from bot.config import ProviderSettings, Settings
from bot.providers.base import Adapter
from bot.providers.modelverse import ModelverseAdapter
from bot.providers.vtrix import VtrixAdapter
from bot.providers.wavespeed import WaveSpeedAdapter


def adapter_factories() -> dict[str, Callable[[ProviderSettings], Adapter]]:
    """A fresh mapping each call, so no caller can change another's view of it."""
    return {
        "modelverse": ModelverseAdapter.from_settings,
        "vtrix": VtrixAdapter.from_settings,
        "wavespeed": WaveSpeedAdapter.from_settings,
    }


def build_adapters(settings: Settings) -> dict[str, Adapter]:
    """One adapter per enabled provider (one with an API key). The sandbox is not built here."""
    factories = adapter_factories()
    return {
        name: factories[name](ps)
        for name, ps in settings.providers.items()
        if ps.enabled and name in factories
    }
