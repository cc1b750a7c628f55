"""``admin alerts``: where a guild's budget alerts and period reports go, through AlertService (the
service /kontext-admin alerts uses). Without --channel, --at, --report or --off it shows the settings
and only reads; the Discord face posts what is due."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bot.alert_text import settings_text
from bot.cli.common import EXIT_OK, services_for_reading

if TYPE_CHECKING:
    from bot.config import Settings
    from storage.alerts import AlertSettings

SHOWN_HISTORY = 5


def add_parser(admin: Any, discord_id: Callable[[str], int]) -> None:
    """``admin alerts ...`` in the ``admin`` subcommands."""
    help_text = "budget alerts and weekly or monthly reports in a channel"
    q = admin.add_parser(
        "alerts",
        help=help_text,
        description=(
            "Post a message in a channel when the server budget or a team budget passes a share of "
            "its limit (once per threshold per period), when a provider bills a job beyond what was "
            "reserved, and a usage report (table, CSV, chart) when each week or month ends. The "
            "running bot posts them. Without options: show what is set."
        ),
    )
    q.set_defaults(handler=alerts)
    q.add_argument("--guild", type=discord_id, required=True, metavar="ID", help="the Discord server")
    q.add_argument(
        "--channel",
        type=discord_id,
        metavar="CHANNEL_ID",
        help="the channel to post in (required unless --off)",
    )
    q.add_argument(
        "--at",
        metavar="PERCENTS",
        help="percentages of each budget to alert at, rising, 1 to 1000, e.g. 50,80,100 "
        "(default: as set, else 50,80,100); 'off' for reports only",
    )
    q.add_argument(
        "--report",
        choices=("weekly", "monthly", "off"),
        help="post a usage report when each week (from Monday) or month ends, UTC "
        "(default: as set, else off)",
    )
    q.add_argument("--off", action="store_true", help="stop alerts and reports")


def describe(s: AlertSettings) -> str:
    return f"Guild {s.guild_id}: {settings_text(s, f'channel {s.channel_id}')}"


async def alerts(args: argparse.Namespace, settings: Settings) -> int:
    changing = args.off or any(v is not None for v in (args.channel, args.at, args.report))
    if not changing:
        async with services_for_reading(settings) as (svc, _missing):
            current = await svc.alerts.settings(args.guild)
            history = await svc.alerts.history(args.guild)
        print(describe(current))
        for sent in history[-SHOWN_HISTORY:]:
            state = "being posted" if sent.sent_at is None else f"posted {sent.sent_at:%Y-%m-%d %H:%M} UTC"
            what = sent.key.subject + (f" at {sent.key.threshold}%" if sent.key.threshold else "")
            print(f"  {what} (period from {sent.key.period_start[:10]}): {state}")
        return EXIT_OK
    from bot.services import open_services

    async with open_services(settings) as svc:
        done = await svc.alerts.configure(
            args.guild, channel_id=args.channel, at=args.at, report=args.report, off=args.off
        )
    print(describe(done))
    return EXIT_OK
