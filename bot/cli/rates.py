"""``admin rate``: per-member rate limits, through AccountService (the service /kontext-admin rate
uses). Its grammar lives here too, so parser.py registers it in one line."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bot.cli.common import EXIT_OK, UsageError, print_json
from bot.refusals import rate_words

if TYPE_CHECKING:
    from bot.config import Settings
    from storage import RateLimit


def add_rate(admin: Any, sub: Callable[..., argparse.ArgumentParser], id_type: Callable[[str], int]) -> None:
    """``admin rate``; ``sub`` and ``id_type`` are parser.py's ``_sub`` and ``discord_id``."""
    q = sub(
        admin,
        "rate",
        "at most N jobs per member in a rolling window ('--off' to stop)",
        rate,
        "At most N jobs per member in any rolling window (10m, 1h, 1d: minutes, hours, days; up to 7d). "
        "With --role the limit is for members holding that role, in place of the server-wide one (the "
        "most generous of a member's roles wins); without, for everyone else. Counted: jobs accepted "
        "and not failed or cancelled. A job over the limit is refused before anything is charged, "
        "saying when the next one is allowed. Without --jobs or --off, lists the server's limits.",
    )
    q.add_argument("--guild", type=id_type, required=True, metavar="ID", help="the Discord server")
    q.add_argument("--jobs", type=int, metavar="N", help="jobs per member per window (0: no limit)")
    q.add_argument(
        "--per", default="1h", metavar="WINDOW", help="the rolling window: 10m, 1h or 1d (default 1h)"
    )
    q.add_argument("--role", type=id_type, metavar="ROLE_ID", help="the limit of members holding this role")
    q.add_argument("--off", action="store_true", help="remove the limit (of --role, or the server-wide one)")
    q.add_argument("--json", action="store_true", help="print the server's limits as one JSON object")


def describe(limit: RateLimit) -> str:
    who = "server-wide" if limit.role_id is None else f"role {limit.role_id}"
    return f"{who}: {rate_words(limit)}"


async def rate(args: argparse.Namespace, settings: Settings) -> int:
    from bot.services import open_services

    if args.off and args.jobs is not None:
        raise UsageError("--off and --jobs do not go together: --off removes the limit, as --jobs 0 does.")
    async with open_services(settings) as svc:
        if args.off or args.jobs is not None:
            limits = await svc.accounts.set_rate(
                args.guild, 0 if args.off else args.jobs, args.per, role_id=args.role
            )
        else:
            limits = await svc.accounts.rate_limits(args.guild)
    if args.json:
        print_json(
            {
                "guild_id": args.guild,
                "limits": [{"role_id": x.role_id, "jobs": x.jobs, "per_s": x.window_s} for x in limits],
            }
        )
        return EXIT_OK
    if args.off or args.jobs == 0:
        whose = f"role {args.role}" if args.role else "the server-wide one"
        print(f"Guild {args.guild}: rate limit removed ({whose}).")
    elif args.jobs is not None:
        (now_set,) = [x for x in limits if x.role_id == args.role]
        holding = f" holding role {args.role}" if args.role else " without a limited role"
        print(f"Guild {args.guild}: at most {rate_words(now_set)} per member{holding}.")
    listed = "; ".join(describe(x) for x in limits) or "none"
    print(f"Rate limits in guild {args.guild}: {listed}.")
    return EXIT_OK
