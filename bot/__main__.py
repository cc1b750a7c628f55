"""The ``kontext-bot`` command. A thin face over bot/services: parse, call, print.

Exit status: 0 success, 1 the job or operation failed (one clear line on stderr), 2 bad usage or
configuration. Output for people goes to stdout; ``--json`` prints exactly one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bot.catalog import SANDBOX, micros_to_usd
from bot.config import Settings, load_settings
from bot.errors import ConfigError, UserError
from bot.logs import setup_logging

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kontext-bot", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_generate(sub)
    p = sub.add_parser("models", help="list the models, their routes, prices and free quotas")
    p.add_argument("--json", action="store_true")
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

    from bot.client import KontextBot, point_discord_at
    from bot.services import open_services

    _need_token(settings)
    point_discord_at(settings)
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
            raise runner.exception()  # type: ignore[misc]
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
        synced = await bot.tree.sync(guild=guild)
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
        inputs = [await images.load_source(src, svc.http, settings.limits) for src in args.image]
        request = JobRequest(
            model=args.model,
            prompt=args.prompt,
            images=inputs,
            params=params,
            provider=args.provider,
            user_id=args.user,
            guild_id=args.guild,
            source="cli",
        )
        result = await svc.jobs.run(request)
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


def _login_failure() -> type[Exception]:
    from discord import LoginFailure

    return LoginFailure


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
        if args.command == "run":
            return asyncio.run(cmd_run(settings))
        if args.command == "sync":
            return asyncio.run(cmd_sync(args, settings))
    except ConfigError as exc:
        print(f"kontext-bot: {exc.user_message}", file=sys.stderr)
        return EXIT_USAGE
    except _login_failure():
        print("kontext-bot: Discord refused DISCORD_TOKEN (login failed); check the token.", file=sys.stderr)
        return EXIT_USAGE
    except UserError as exc:
        print(f"kontext-bot: {exc.user_message}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
