"""The ``kontext-bot`` command. A thin face over bot/services: parse, call, print.

Exit status: 0 success, 1 the job or operation failed (one clear line on stderr), 2 bad usage or
configuration. Output for people goes to stdout; ``--json`` prints exactly one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from bot.catalog import SANDBOX
from bot.config import Settings, load_settings
from bot.errors import ConfigError, UserError
from bot.logs import setup_logging
from bot.money import micros_to_usd, usd_to_micros

EXIT_FAILED = 1
EXIT_USAGE = 2


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="run one image job from the terminal")
    p.add_argument("--model", required=True, help="model id, e.g. black-forest-labs/flux-kontext-pro")
    p.add_argument("--prompt", required=True)
    p.add_argument("--image", action="append", default=[], metavar="PATH_OR_URL", help="input image (repeat)")
    p.add_argument("--aspect-ratio", dest="aspect_ratio")
    p.add_argument("--seed", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument("--guidance", type=float)
    p.add_argument("--negative-prompt", dest="negative_prompt")
    p.add_argument("--strength", type=float)
    p.add_argument("--size", help="WIDTHxHEIGHT (flux.1-dev)")
    p.add_argument("--n", type=int, help="how many images")
    p.add_argument("--provider", help="force one provider: modelverse, wavespeed, vtrix or sandbox")
    p.add_argument("--user", type=int, help="Discord user id to charge (default: the local operator)")
    p.add_argument("--guild", type=int, help="Discord guild id whose quotas and budgets apply")
    p.add_argument("--out", default="out", help="directory for the images (default: ./out)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _add_admin(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("admin", help="budgets, quotas, teams, caps, grants and refunds")
    admin = p.add_subparsers(dest="admin_command", required=True)
    periods = ("day", "week", "month")
    q = admin.add_parser("budget", help="set a guild's budget for paid images")
    q.add_argument("--guild", type=int, required=True)
    q.add_argument("--usd", required=True)
    q.add_argument("--period", choices=periods, default="month")
    q = admin.add_parser("free-quota", help="free images per member for a model (or 'all')")
    q.add_argument("--guild", type=int, required=True)
    q.add_argument("--model", required=True)
    q.add_argument("--images", type=int, required=True)
    q.add_argument("--period", choices=(*periods, "off"), default="month")
    q = admin.add_parser("team", help="map a role to a team with its own budget")
    q.add_argument("--guild", type=int, required=True)
    q.add_argument("--role", type=int, required=True)
    q.add_argument("--name", required=True)
    q.add_argument("--usd", required=True)
    q.add_argument("--period", choices=periods, default="month")
    q = admin.add_parser("cap", help="what one member may spend per period ('off' for no cap)")
    q.add_argument("--guild", type=int, required=True)
    q.add_argument("--usd", required=True)
    q.add_argument("--period", choices=periods, default="month")
    q = admin.add_parser("grant", help="extra free images for a member, this period")
    q.add_argument("--guild", type=int, required=True)
    q.add_argument("--user", type=int, required=True)
    q.add_argument("--model", required=True)
    q.add_argument("--images", type=int, required=True)
    q = admin.add_parser("refund", help="give a job's charge back")
    q.add_argument("job_id")
    q.add_argument("--reason", default="refunded by the operator")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kontext-bot", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_generate(sub)
    p = sub.add_parser("models", help="list the models, their routes, prices and free quotas")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("quota", help="a member's free images, spending and budgets left")
    p.add_argument("--user", type=int, required=True)
    p.add_argument("--guild", type=int)
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("usage", help="usage report by user, team, model or day")
    p.add_argument("--guild", type=int)
    p.add_argument("--since", metavar="YYYY-MM-DD")
    p.add_argument("--until", metavar="YYYY-MM-DD", help="inclusive")
    p.add_argument("--by", choices=("user", "team", "model", "day"), default="user")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    _add_admin(sub)
    p = sub.add_parser("db", help="database maintenance")
    dbsub = p.add_subparsers(dest="db_command", required=True)
    q = dbsub.add_parser("backup", help="consistent copy while the bot runs (SQLite online backup)")
    q.add_argument("path")
    dbsub.add_parser("check", help="prove the balances agree with the append-only ledger")
    dbsub.add_parser("migrate", help="apply pending migrations and print the schema version")
    sub.add_parser("run", help="start the Discord bot (needs DISCORD_TOKEN)")
    p = sub.add_parser("sync", help="register the slash commands with Discord")
    p.add_argument("--guild", type=int, help="register in one guild only (instant) instead of globally")
    return parser


def _need_token(settings: Settings) -> None:
    if not settings.discord_token:
        raise ConfigError(
            "DISCORD_TOKEN is not set: create a bot at https://discord.com/developers/applications "
            "and export its token."
        )


async def cmd_run(settings: Settings) -> int:
    import signal

    import aiohttp

    from bot.client import KontextBot, point_discord_at
    from bot.services import open_services

    _need_token(settings)
    point_discord_at(settings)
    if settings.sandbox_only:
        print(
            "Sandbox mode: no provider API key is set, so every model makes free local placeholder "
            "images. Set MODELVERSE_API_KEY, WAVESPEED_API_KEY or VTRIX_API_KEY for real ones.",
            file=sys.stderr,
        )
    async with open_services(settings) as svc, KontextBot(svc) as bot:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        runner = asyncio.create_task(bot.start(settings.discord_token))
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stopper in done:
            await bot.close()  # jobs in flight keep their state; the next start resumes them
        stopper.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        if runner.done() and not runner.cancelled() and runner.exception() is not None:
            exc = runner.exception()
            if isinstance(exc, (aiohttp.ClientError, OSError)):  # DNS, refused, TLS: not our bug
                api = settings.discord_api_base or "discord.com"
                raise UserError(f"Cannot reach Discord ({api}): {type(exc).__name__}.") from exc
            raise exc  # type: ignore[misc]
    return 0


async def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    import discord

    from bot.client import KontextBot, point_discord_at
    from bot.services import open_services

    _need_token(settings)
    point_discord_at(settings)
    async with open_services(settings) as svc, KontextBot(svc, recover=False) as bot:
        await bot.login(settings.discord_token)
        guild = discord.Object(id=args.guild) if args.guild else None
        if guild is not None:
            bot.tree.copy_global_to(guild=guild)
        try:
            synced = await bot.tree.sync(guild=guild)
        except discord.Forbidden:
            raise UserError(
                f"Discord would not register commands in guild {args.guild}: is the bot in that server, "
                "invited with the applications.commands scope?"
            ) from None
        except discord.HTTPException as exc:
            raise UserError(f"Discord refused the commands (HTTP {exc.status}): {exc.text}") from None
    where = f"guild {args.guild} (instant)" if guild else "globally (may take up to an hour to appear)"
    print(f"Registered {len(synced)} commands {where}: {', '.join(sorted(c.name for c in synced))}")
    return 0


async def cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    from bot import images
    from bot.jobs import JobRequest
    from bot.services import open_services

    if settings.sandbox_only or args.provider == SANDBOX:
        print("Sandbox mode: images are local placeholders and cost nothing.", file=sys.stderr)
    params = {
        name: getattr(args, name)
        for name in ("aspect_ratio", "seed", "steps", "guidance", "negative_prompt", "strength", "size", "n")
    }
    async with open_services(settings) as svc:
        request = JobRequest(
            model=args.model,
            prompt=args.prompt,
            params=params,
            provider=args.provider,
            user_id=args.user,
            guild_id=args.guild,
            source="cli",
        )
        svc.jobs.check(request, image_count=len(args.image))  # refuse before reading or downloading
        # Loaders: the job service reads each source inside its intake gate, like a Discord upload.
        inputs = [functools.partial(images.load_source, src, svc.http, settings.limits) for src in args.image]
        result = await svc.jobs.run(replace(request, images=inputs))
    paths = await asyncio.to_thread(_write_images, Path(args.out), result)
    if args.json:
        print(
            json.dumps(
                {
                    "job_id": result.job_id,
                    "status": result.status,
                    "model": result.model,
                    "provider": result.provider,
                    "images": paths,
                    "seed": result.seed,
                    "cost_usd": micros_to_usd(result.cost_micros).lstrip("$"),
                    "charged_to": result.charged_to,
                    "free_remaining": result.free_remaining,
                    "sandbox": result.sandbox,
                    "nsfw": result.nsfw,
                    "elapsed_s": round(result.elapsed, 3),
                }
            )
        )
    else:
        paid = f"{micros_to_usd(result.cost_micros)} charged to {result.charged_to}"
        if result.free_remaining is not None:
            paid += f", {result.free_remaining} free image(s) left"
        print(
            f"Job {result.job_id}: {len(paths)} image(s) from {result.model} via {result.provider}, "
            f"seed {result.seed}, {paid}, {result.elapsed:.1f}s."
        )
        for path in paths:
            print(f"  {path}")
    return 0


async def cmd_accounts(args: argparse.Namespace, settings: Settings) -> int:
    """quota, usage, admin and db: thin calls into AccountService."""
    from bot.services import open_services

    async with open_services(settings) as svc:
        acc = svc.accounts
        if args.command == "quota":
            report = await acc.quota(args.user, args.guild)
            print(json.dumps(report.to_json()) if args.json else report.to_text())
        elif args.command == "usage":
            usage = await acc.usage(args.guild, args.since, args.until, args.by)
            print({"table": usage.to_table, "csv": usage.to_csv, "json": usage.to_json}[args.format]())
        elif args.command == "db":
            if args.db_command == "backup":
                path = await acc.backup(args.path)
                print(f"Backed up {settings.db_path} to {path}")
            elif args.db_command == "check":
                problems = await acc.check()
                for problem in problems:
                    print(f"problem: {problem}")
                if problems:
                    return EXIT_FAILED
                print("The books balance: every balance agrees with the ledger.")
            else:
                print(f"Database {settings.db_path} is at schema version {await acc.schema_version()}.")
        else:
            print(await _admin(acc, args))
    return 0


async def _admin(acc: Any, args: argparse.Namespace) -> str:
    cmd = args.admin_command
    if cmd == "budget":
        await acc.set_budget(args.guild, args.usd, args.period)
        return f"Guild {args.guild}: budget {_usd(args.usd)} per {args.period}."
    if cmd == "free-quota":
        await acc.set_free_quota(args.guild, args.model, args.images, args.period)
        if args.period == "off":
            return f"Guild {args.guild}: no free images for {args.model}."
        return (
            f"Guild {args.guild}: {args.images} free image(s) per member per {args.period} for {args.model}."
        )
    if cmd == "team":
        team = await acc.set_team(args.guild, args.role, args.name, args.usd, args.period)
        return (
            f"Guild {args.guild}: team {team.name} (role {args.role}) has {_usd(args.usd)} per {args.period}."
        )
    if cmd == "cap":
        await acc.set_cap(args.guild, args.usd, args.period)
        cap = "no cap" if args.usd.lower() in ("off", "none") else f"cap {_usd(args.usd)}"
        return f"Guild {args.guild}: per-member {cap} per {args.period}."
    if cmd == "grant":
        period = await acc.grant(args.guild, args.user, args.model, args.images)
        until = f"{period.end:%Y-%m-%d %H:%M} UTC"
        return f"Granted {args.images} free image(s) of {args.model} to {args.user} until {until}."
    refund = await acc.refund(args.job_id, reason=args.reason)
    if refund.already:
        return f"Job {args.job_id} had nothing left to refund."
    return (
        f"Refunded job {args.job_id}: {micros_to_usd(refund.returned_micros)} "
        f"and {refund.returned_images} free image(s) given back."
    )


def _usd(text: str) -> str:
    return micros_to_usd(usd_to_micros(text))


def _write_images(out: Path, result: Any) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(result.images, 1):
        ext = {"image/jpeg": "jpg", "image/webp": "webp"}.get(img.mime, "png")
        path = out / f"{result.job_id}-{i}.{ext}"
        path.write_bytes(img.data)
        paths.append(str(path))
    return paths


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    enabled = set(settings.enabled_providers)
    models: list[dict[str, Any]] = []
    for m in settings.catalog.models:
        models.append(
            {
                "id": m.id,
                "label": m.label,
                "kind": str(m.kind),
                "input_images": {"min": m.min_images, "max": m.max_images},
                "free_quota": m.free_quota,
                "parameters": {
                    p.name: {"default": p.default, "allowed": p.describe()} for p in m.params.values()
                },
                "routes": [
                    {
                        "provider": r.provider,
                        "provider_model": r.provider_model,
                        "price_usd": micros_to_usd(r.price_micros).lstrip("$"),
                        "enabled": r.provider in enabled or r.provider == SANDBOX,
                    }
                    for r in m.routes
                ],
            }
        )
    if args.json:
        print(json.dumps({"sandbox_only": settings.sandbox_only, "models": models}))
        return 0
    if settings.sandbox_only:
        print("No provider key is set: every model runs on the free local sandbox.\n")
    for m in models:
        print(f"{m['id']}  [{m['kind']}]  free {m['free_quota']}/user/month")
        params = ", ".join(f"{k} ({v['allowed']})" for k, v in m["parameters"].items())
        print(f"    inputs {m['input_images']['min']}-{m['input_images']['max']}; {params}")
        for r in m["routes"]:
            state = "enabled" if r["enabled"] else "disabled"
            print(f"    {r['provider']:<11} {r['provider_model']:<48} ${r['price_usd']:<10} {state}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"kontext-bot: {exc.user_message}", file=sys.stderr)
        return EXIT_USAGE
    setup_logging(args.verbose, settings.secrets())
    try:
        if args.command == "generate":
            return asyncio.run(cmd_generate(args, settings))
        if args.command == "models":
            return cmd_models(args, settings)
        if args.command in ("quota", "usage", "admin", "db"):
            return asyncio.run(cmd_accounts(args, settings))
        if args.command == "run":
            return asyncio.run(cmd_run(settings))
        if args.command == "sync":
            return asyncio.run(cmd_sync(args, settings))
    except ConfigError as exc:
        print(f"kontext-bot: {exc.user_message}", file=sys.stderr)
        return EXIT_USAGE
    except UserError as exc:
        print(f"kontext-bot: {exc.user_message}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        if type(exc).__name__ == "LoginFailure":  # discord.LoginFailure, without importing discord here
            print(
                "kontext-bot: Discord refused DISCORD_TOKEN (login failed); check the token.", file=sys.stderr
            )
            return EXIT_USAGE
        raise
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
