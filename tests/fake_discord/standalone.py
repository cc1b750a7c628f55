"""Standalone mode: ``python -m tests.fake_discord [--port 0] [--shards N] [--guild ID ...]`` serves
one fake in its own process, prints ``FAKE_DISCORD_URL=http://127.0.0.1:PORT`` and runs until
SIGTERM/SIGINT. Multi-process tests drive it through the control API (``/_fake/``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence

from tests.fake_discord.fake import FakeDiscord


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeDiscord(
        app_id=args.app_id,
        guild_id=args.guild_id,
        token=args.token,
        upload_limit=args.upload_limit,
        shards=args.shards,
        max_concurrency=args.max_concurrency,
        token_lifetime=args.token_lifetime,
        channel_edits_interaction_responses=args.channel_edits_interaction_responses,
    )
    for guild_id in args.guild:
        fake.add_guild(guild_id)
    await fake.start(args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The one line a parent process parses to find us; flush because stdout is a pipe there.
    print(f"FAKE_DISCORD_URL={fake.url}", flush=True)
    await stop.wait()
    await fake.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fake_discord", description="A fake Discord (REST v10 + gateway) for tests."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--app-id", type=int, default=1_100_000_000_000_000_001)
    parser.add_argument("--guild-id", type=int, default=1_200_000_000_000_000_001, help="the primary guild")
    parser.add_argument("--guild", type=int, action="append", default=[], help="one more guild (repeatable)")
    parser.add_argument("--token", default="fake-token")
    parser.add_argument("--upload-limit", type=int, default=10 * 1024 * 1024)
    parser.add_argument("--shards", type=int, default=1, help="shard count GET /gateway/bot recommends")
    parser.add_argument("--max-concurrency", type=int, default=1)
    parser.add_argument("--token-lifetime", type=float, default=15 * 60.0, help="interaction token, seconds")
    parser.add_argument(
        "--channel-edits-interaction-responses",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="whether channel endpoints may edit non-ephemeral interaction responses",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
