"""The words for a refused reservation: storage says what was short (storage.Refusal), this says it
to a member, the same sentence on Discord and in the terminal."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.money import price, total
from storage import Refusal


def when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def refusal_text(refusal: Refusal) -> str:
    """What is left, what the job would cost, and when things reset; e.g. "Not enough quota for
    this job: 2 image(s) with m would cost $0.08. Free images left: 1 of 1 (resets ...). ..." """
    parts = [
        f"Not enough quota for this job: {refusal.images} image(s) with {refusal.model} would cost "
        f"{price(refusal.estimate_micros)}."
    ]
    for short in refusal.shortfalls:
        left, limit, resets = total(short.left), total(short.limit), when(short.resets_at)
        if short.kind == "free":
            if short.limit > 0:
                parts.append(f"Free images left: {short.left} of {short.limit} (resets {resets}).")
            else:
                parts.append(f"{refusal.model} has no free images here.")
        elif short.kind == "cap":
            parts.append(f"Your spending cap: {left} left of {limit} (resets {resets}).")
        elif short.kind == "team":
            parts.append(f"Team {short.name}: {left} left (resets {resets}).")
        elif short.limit == 0:
            parts.append("This server has no budget for paid images; an admin can set one.")
        else:
            parts.append(f"Server budget: {left} left of {limit} (resets {resets}).")
    return " ".join(parts)
