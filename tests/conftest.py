"""Fixtures shared by every test: the provider emulator and small real images."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from tests.emulator import ProviderEmulator, make_png


@pytest.fixture
async def emulator() -> AsyncIterator[ProviderEmulator]:
    """A started ProviderEmulator serving all three provider APIs on 127.0.0.1."""
    emu = ProviderEmulator()
    await emu.start()
    try:
        yield emu
    finally:
        await emu.stop()


@pytest.fixture
def png_bytes() -> Callable[..., bytes]:
    """``png_bytes()`` -> a 32x32 PNG; ``png_bytes(300, 200, color=(0, 0, 255))`` for others."""
    return make_png
