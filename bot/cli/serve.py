"""``run`` (serve Discord), ``worker`` (run queued jobs, no gateway) and ``sync`` (register the
slash commands).

The Discord work lives in bot/client.py (``run_bot``, ``sync_commands``), which turns Discord's own
failures into UserError / ConfigError: no module of the CLI imports discord.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from dataclasses import replace
from typing import TYPE_CHECKING

from bot.cli.common import EXIT_OK, UsageError
from bot.errors import ConfigError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from bot.config import Settings


def _need_token(settings: Settings) -> None:
    if not settings.discord_token:
        raise ConfigError(
            "DISCORD_TOKEN is not set: create a bot at https://discord.com/developers/applications "
            "and export its token."
        )


def _stop_on_signals() -> asyncio.Event:
    """SIGTERM and Ctrl-C set the event: the process stops claiming, gives running jobs the shutdown
    grace, hands back the rest (resumed by the next worker) and exits 0."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _sandbox_notice(settings: Settings) -> None:
    if settings.sandbox_only and settings.log_format == "text":  # json: stderr is JSON lines (logged)
        print(
            "Sandbox mode: no provider API key is set, so every model makes free local placeholder "
            "images. Set MODELVERSE_API_KEY, WAVESPEED_API_KEY or VTRIX_API_KEY for real ones.",
            file=sys.stderr,
        )


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from bot.client import run_bot
    from bot.services import open_services

    _need_token(settings)
    shard_count, shard_ids = getattr(args, "shard_count", None), getattr(args, "shard_ids", None)
    if shard_ids is not None and shard_count is None:
        raise UsageError("--shard-ids needs --shard-count (the total every process is given).")
    if shard_ids is not None and max(shard_ids) >= shard_count:
        raise UsageError(f"--shard-ids are numbered 0 to {shard_count - 1} for --shard-count {shard_count}.")
    run_jobs = not getattr(args, "no_worker", False)
    if run_jobs:
        _sandbox_notice(settings)
    stop = _stop_on_signals()
    async with open_services(settings, serve_http=True) as svc:  # KONTEXT_HTTP: /metrics, /healthz
        await run_bot(svc, stop, run_jobs=run_jobs, shard_count=shard_count, shard_ids=shard_ids)
    return EXIT_OK


async def worker(args: argparse.Namespace, settings: Settings) -> int:
    from bot.client import run_worker
    from bot.services import open_services

    _need_token(settings)
    if args.concurrency is not None:
        settings = replace(settings, limits=replace(settings.limits, max_running=args.concurrency))
    _sandbox_notice(settings)
    stop = _stop_on_signals()
    async with open_services(settings, serve_http=True) as svc:

        def ready() -> None:
            log.info("Worker %s is running queued jobs (no gateway).", svc.worker.id)

        await run_worker(svc, stop, ready)
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
