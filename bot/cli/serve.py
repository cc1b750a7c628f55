"""``run`` (serve Discord) and ``sync`` (register the slash commands).

The Discord work lives in bot/client.py (``run_bot``, ``sync_commands``), which turns Discord's own
failures into UserError / ConfigError: no module of the CLI imports discord.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import TYPE_CHECKING

from bot.cli.common import EXIT_OK
from bot.errors import ConfigError

if TYPE_CHECKING:
    from bot.config import Settings


def _need_token(settings: Settings) -> None:
    if not settings.discord_token:
        raise ConfigError(
            "DISCORD_TOKEN is not set: create a bot at https://discord.com/developers/applications "
            "and export its token."
        )


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from bot.client import run_bot
    from bot.services import open_services

    _need_token(settings)
    if (
        settings.sandbox_only and settings.log_format == "text"
    ):  # json: stderr is JSON lines (services log it)
        print(
            "Sandbox mode: no provider API key is set, so every model makes free local placeholder "
            "images. Set MODELVERSE_API_KEY, WAVESPEED_API_KEY or VTRIX_API_KEY for real ones.",
            file=sys.stderr,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)  # jobs in flight keep their state; the next start resumes
    async with open_services(settings, serve_http=True) as svc:  # KONTEXT_HTTP: /metrics, /healthz
        await run_bot(svc, stop)
    return EXIT_OK


async def sync(args: argparse.Namespace, settings: Settings) -> int:
    from bot.client import sync_commands
    from bot.services import open_services

    _need_token(settings)
    async with open_services(settings) as svc:
        names = await sync_commands(svc, args.guild)
    where = f"guild {args.guild} (instant)" if args.guild else "globally (may take up to an hour to appear)"
    print(f"Registered {len(names)} commands {where}: {', '.join(sorted(names))}")
    return EXIT_OK
