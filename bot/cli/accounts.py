"""``quota``, ``usage`` and ``admin ...``: thin calls into AccountService, the service /quota, /usage
and /kontext-admin use. ``quota`` and ``usage`` only read: they never create the database."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bot.cli.common import EXIT_OK, Handler, print_json, services_for_reading
from bot.money import price, total

if TYPE_CHECKING:
    from bot.accounts import AccountService
    from bot.config import Settings


def _no_database(settings: Settings, what: str, *, to_stderr: bool) -> None:
    print(f"No database at {settings.db_label} yet: {what}.", file=sys.stderr if to_stderr else sys.stdout)


async def quota(args: argparse.Namespace, settings: Settings) -> int:
    async with services_for_reading(settings) as (svc, missing):
        report = await svc.accounts.quota(args.user, args.guild, tuple(args.role))
    if missing:
        _no_database(settings, "nothing used yet", to_stderr=args.json)
        if not args.json:
            return EXIT_OK
    if args.json:
        print_json(report.to_json())
    else:
        print(report.to_text())
    return EXIT_OK


async def usage(args: argparse.Namespace, settings: Settings) -> int:
    async with services_for_reading(settings) as (svc, missing):
        report = await svc.accounts.usage(args.guild, args.since, args.until, args.by)
    table = args.format == "table"
    if missing:
        _no_database(settings, "no jobs", to_stderr=not table)
        if table:
            return EXIT_OK
    print({"table": report.to_table, "csv": report.to_csv, "json": report.to_json}[args.format]())
    return EXIT_OK


def admin_command(fn: Callable[[AccountService, argparse.Namespace], Awaitable[str]]) -> Handler:
    """An ``admin`` subcommand: ``fn`` changes a setting through AccountService and returns the one
    line that says what is now set; this opens the services around it and prints that line."""

    @functools.wraps(fn)
    async def handler(args: argparse.Namespace, settings: Settings) -> int:
        from bot.services import open_services

        async with open_services(settings) as svc:
            print(await fn(svc.accounts, args))
        return EXIT_OK

    return handler


@admin_command
async def budget(acc: AccountService, args: argparse.Namespace) -> str:
    config = await acc.set_budget(args.guild, args.usd, args.period)
    return f"Guild {args.guild}: budget {total(config.budget_micros)} per {args.period}."


@admin_command
async def free_quota(acc: AccountService, args: argparse.Namespace) -> str:
    await acc.set_free_quota(args.guild, args.model, args.images, args.period, role_id=args.role)
    holding = f" holding role {args.role}" if args.role else ""
    if args.period == "off" and args.role:
        return f"Guild {args.guild}: role {args.role} has no free allowance of its own for {args.model}."
    if args.period == "off":
        return f"Guild {args.guild}: no free images for {args.model}."
    return (
        f"Guild {args.guild}: {args.images} free image(s) per member{holding} per {args.period} "
        f"for {args.model}."
    )


@admin_command
async def team(acc: AccountService, args: argparse.Namespace) -> str:
    made = await acc.set_team(args.guild, args.role, args.name, args.usd, args.period)
    return (
        f"Guild {args.guild}: team {made.name} (role {args.role}) has "
        f"{total(made.budget_micros)} per {args.period}."
    )


@admin_command
async def cap(acc: AccountService, args: argparse.Namespace) -> str:
    config = await acc.set_cap(args.guild, args.usd, args.period)
    limit = "no cap" if config.cap_micros is None else f"cap {total(config.cap_micros)}"
    return f"Guild {args.guild}: per-member {limit} per {args.period}."


@admin_command
async def grant(acc: AccountService, args: argparse.Namespace) -> str:
    period = await acc.grant(args.guild, args.user, args.model, args.images)
    until = f"{period.end:%Y-%m-%d %H:%M} UTC"
    return f"Granted {args.images} free image(s) of {args.model} to {args.user} until {until}."


@admin_command
async def refund(acc: AccountService, args: argparse.Namespace) -> str:
    done = await acc.refund(args.job_id, reason=args.reason)
    if done.already:
        return f"Job {args.job_id} had nothing left to refund."
    stopped = (
        " It had not finished: it was cancelled, and nothing will be delivered." if done.cancelled else ""
    )
    return (
        f"Refunded job {args.job_id}: {price(done.returned_micros)} "
        f"and {done.returned_images} free image(s) given back.{stopped}"
    )
