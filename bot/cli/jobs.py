"""``generate`` (one image job from the terminal) and ``models`` (the catalog).

``generate`` drives the same JobService as a slash command. What is left to this face is the
terminal's own business: where the images are written, and saying what happened.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.catalog import SANDBOX
from bot.cli.common import EXIT_OK, UsageError, print_json, services_for_reading
from bot.errors import UserError
from bot.money import micros_to_usd, price

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.jobs import JobResult

PARAMS = ("aspect_ratio", "seed", "steps", "guidance", "negative_prompt", "strength", "size", "n")
EXTENSIONS = {"image/jpeg": "jpg", "image/webp": "webp"}


class OutputFailed(UserError):
    """The job ran but its images could not be written; it was refunded (exit 1)."""

    code = "output_failed"

    def __init__(self, message: str, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id


def check_output_dir(out: Path) -> None:
    """Refuse an --out that cannot be written before anything is recorded or sent: make the folder
    if needed and write (and remove) a probe file in it. Raises UsageError."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder.", code="output_unwritable")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".kontext-probe-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UsageError(
            f"--out {out} cannot be written ({reason}); choose a folder you can write to.",
            code="output_unwritable",
        ) from None


def write_images(out: Path, result: JobResult) -> list[str]:
    """Write every image or none: a failure removes what was already written, then raises OSError."""
    paths: list[Path] = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(result.images, 1):
            path = out / f"{result.job_id}-{i}.{EXTENSIONS.get(img.mime, 'png')}"
            paths.append(path)
            path.write_bytes(img.data)
    except OSError:
        for path in paths:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        raise
    return [str(p) for p in paths]


async def generate(args: argparse.Namespace, settings: Settings) -> int:
    from bot import images
    from bot.jobs import JobRequest
    from bot.services import open_services

    if args.role and args.user is None:
        raise UsageError("--role needs --user: the local operator holds no roles and is never limited.")
    out = Path(args.out)
    await asyncio.to_thread(check_output_dir, out)
    if settings.sandbox_only or args.provider == SANDBOX:
        print("Sandbox mode: images are local placeholders and cost nothing.", file=sys.stderr)
    async with open_services(settings) as svc:
        request = JobRequest(
            model=args.model,
            prompt=args.prompt,
            params={name: getattr(args, name) for name in PARAMS},
            provider=args.provider,
            user_id=args.user,
            guild_id=args.guild,
            role_ids=tuple(args.role),
            source="cli",
        )
        svc.jobs.check(request, image_count=len(args.image))  # refuse before reading or downloading
        # Loaders: the job service reads each source inside its intake gate, like a Discord upload.
        inputs = [functools.partial(images.load_source, src, svc.http, settings.limits) for src in args.image]
        result = await svc.jobs.run(replace(request, images=inputs))
        try:
            paths = await asyncio.to_thread(write_images, out, result)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            await svc.jobs.refund_undelivered(
                result.job_id, f"the CLI could not write the images to {out} ({reason})"
            )
            raise OutputFailed(
                f"The images could not be written to {out} ({reason}); job {result.job_id} was "
                "refunded, so nothing was charged.",
                result.job_id,
            ) from None
    if args.json:
        print_json(summary(result, paths))
        return EXIT_OK
    paid = f"{price(result.cost_micros)} charged to {result.charged_to}"
    if result.free_remaining is not None:
        paid += f", {result.free_remaining} free image(s) left"
    print(
        f"Job {result.job_id}: {len(paths)} image(s) from {result.model} via {result.provider}, "
        f"seed {result.seed}, {paid}, {result.elapsed:.1f}s."
    )
    for path in paths:
        print(f"  {path}")
    return EXIT_OK


def summary(result: JobResult, paths: list[str]) -> dict[str, Any]:
    """``generate --json``: a contract (README)."""
    return {
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


async def models(args: argparse.Namespace, settings: Settings) -> int:
    """The catalog as configured, and what each provider runs at once now (read from the database
    when it exists; never created by this command)."""
    enabled = set(settings.enabled_providers)
    listed: list[dict[str, Any]] = []
    for m in settings.catalog.models:
        listed.append(
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
    async with services_for_reading(settings) as (svc, _missing):
        providers = await svc.jobs.providers()
    if args.json:
        print_json(
            {
                "sandbox_only": settings.sandbox_only,
                "models": listed,
                "providers": [
                    {
                        "provider": p.provider,
                        "limit": p.limit,
                        "max_concurrency": p.ceiling,
                        "learned": p.learned,
                        "paused_until": p.paused_until.isoformat() if p.paused_until else None,
                        "busy_answers": p.busy_total,
                    }
                    for p in providers
                ],
            }
        )
        return EXIT_OK
    if settings.sandbox_only:
        print("No provider key is set: every model runs on the free local sandbox.\n")
    for p in providers:
        print(p.describe())
    if providers:
        print()
    for m in listed:
        print(f"{m['id']}  [{m['kind']}]  free {m['free_quota']}/user/month")
        params = ", ".join(f"{k} ({v['allowed']})" for k, v in m["parameters"].items())
        print(f"    inputs {m['input_images']['min']}-{m['input_images']['max']}; {params}")
        for r in m["routes"]:
            state = "enabled" if r["enabled"] else "disabled"
            print(f"    {r['provider']:<11} {r['provider_model']:<48} ${r['price_usd']:<10} {state}")
    return EXIT_OK
