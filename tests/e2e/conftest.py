"""The whole bot in-process: the real KontextBot (discord.py) against the fake Discord, with the real
services over a SQLite file and the provider emulator. ``make_stack(**env)`` starts one; tests talk to
it only the way Discord would (``stack.fake.slash(...)``) and read the books through ``stack.svc``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import discord
import pytest

from bot.client import KontextBot
from bot.config import load_settings
from bot.services import Services, open_services
from tests.emulator import ProviderEmulator, make_png
from tests.fake_discord import FakeDiscord

MEMBER = 4242
OTHER = 4343
ADMIN = 4444
ART_ROLE = 777
MANAGE_GUILD = 1 << 5


@dataclass
class Stack:
    fake: FakeDiscord
    bot: KontextBot
    svc: Services
    emulator: ProviderEmulator | None
    db_path: Path

    def png(self, name: str = "cat.png", w: int = 256, h: int = 256) -> dict:
        return self.fake.add_attachment(name, make_png(w, h), "image/png")


@contextlib.asynccontextmanager
async def run_stack(
    tmp_path: Path, emulator: ProviderEmulator | None, env: dict[str, str]
) -> AsyncIterator[Stack]:
    fake = FakeDiscord()
    await fake.start()
    restore = fake.configure_discord_py()
    fake.add_role(ART_ROLE, "artists")
    fake.add_member(MEMBER, name="alice", roles=[ART_ROLE])
    fake.add_member(OTHER, name="bob")
    fake.add_member(ADMIN, name="carol", permissions=MANAGE_GUILD)
    base = {
        "KONTEXT_DB": str(tmp_path / "kontext.db"),
        "DISCORD_TOKEN": fake.token,
        "DISCORD_API_BASE": fake.api_base,
        "DISCORD_GATEWAY_URL": fake.gateway_url,
    }
    if emulator is not None:
        base.update(emulator.env())
    settings = load_settings({**base, **env})
    # The emulator serves results on loopback, which the bot refuses unless told otherwise.
    settings = replace(settings, limits=replace(settings.limits, allow_private_results=True))
    try:
        async with open_services(settings) as svc:
            bot = KontextBot(svc, guild_ready_timeout=0.05)
            runner = asyncio.create_task(bot.start(settings.discord_token))
            try:
                ready = asyncio.create_task(fake.wait_ready())
                await asyncio.wait({ready, runner}, return_when=asyncio.FIRST_COMPLETED)
                if runner.done():
                    ready.cancel()
                    runner.result()  # the bot died while starting: show why
                    raise RuntimeError("the bot stopped while starting")
                await ready
                await bot.wait_until_ready()
                guild = discord.Object(id=fake.guild_id)
                bot.tree.copy_global_to(guild=guild)
                await bot.tree.sync(guild=guild)
                yield Stack(fake, bot, svc, emulator, tmp_path / "kontext.db")
            finally:
                await bot.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(runner, 10)
    finally:
        restore()
        await fake.stop()


@pytest.fixture
async def make_stack(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Stack]]]:
    """``await make_stack(emulator=emu_or_None, **env)``; stopped at the end of the test."""
    stack_cm: list[contextlib.AbstractAsyncContextManager[Stack]] = []

    async def make(emulator: ProviderEmulator | None = None, **env: str) -> Stack:
        cm = run_stack(tmp_path, emulator, env)
        stack_cm.append(cm)
        return await cm.__aenter__()

    yield make
    for cm in reversed(stack_cm):
        await cm.__aexit__(None, None, None)
