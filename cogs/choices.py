"""Autocomplete for the model options: the models that fit, with what they cost the member."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.catalog import SANDBOX, Model, Route
from bot.jobs import fits
from bot.money import price as price_text
from cogs.replies import model_short, role_ids

if TYPE_CHECKING:
    from bot.client import KontextBot

log = logging.getLogger(__name__)


def _bot(interaction: discord.Interaction) -> KontextBot:
    return interaction.client  # type: ignore[return-value]


async def model_choices(
    bot: KontextBot, interaction: discord.Interaction, current: str, purpose: str
) -> list[app_commands.Choice[str]]:
    """Models fit for the command, labelled with price and the member's free images left."""
    svc = bot.services
    left: dict[str, int] = {}
    try:
        quota = await svc.accounts.quota(
            interaction.user.id, interaction.guild_id, role_ids(interaction.user)
        )
        left = {f.model: f.remaining for f in quota.status.free if f.limit > 0}  # no quota: no count
    except Exception:  # autocomplete must answer within 3 s, with or without the numbers
        log.exception("autocomplete quota lookup failed")
    enabled = set(svc.jobs.enabled)
    needle = current.lower()
    choices = []
    for m in svc.settings.catalog.models:
        if not fits(m, purpose) or (needle and needle not in m.id.lower() and needle not in m.label.lower()):
            continue
        routes = [r for r in m.routes if r.provider in enabled]
        if not routes:
            continue
        # The first enabled route is the one a job takes, so its price is the one to show.
        first = routes[0]
        cost = "free (sandbox)" if first.provider == SANDBOX else f"{price_text(first.price_micros)}/image"
        label = f"{m.label} — {cost}"
        if m.id in left and first.provider != SANDBOX:
            label += f" · {left[m.id]} free left"
        choices.append(app_commands.Choice(name=label[:100], value=m.id))
    return choices[:25]


def catalog_choices(
    interaction: discord.Interaction, current: str, *, include_all: bool = False
) -> list[app_commands.Choice[str]]:
    """Models of the catalog matching what was typed, those with an enabled route first."""
    svc = _bot(interaction).services
    enabled = set(svc.jobs.enabled)
    needle = current.strip().lower()
    choices: list[app_commands.Choice[str]] = []
    if include_all and (not needle or needle in "all models"):
        choices.append(
            app_commands.Choice(name="all models (every model without its own setting)", value="all")
        )
    ranked = sorted(svc.settings.catalog.models, key=lambda m: not _routes(m, enabled))
    for m in ranked:
        if needle and needle not in m.id.lower() and needle not in m.label.lower():
            continue
        choices.append(app_commands.Choice(name=f"{m.label} ({model_short(m.id)})"[:100], value=m.id))
    return choices[:25]


def _routes(model: Model, enabled: set[str]) -> list[Route]:
    return [r for r in model.routes if r.provider in enabled]
