"""The words for a refused job: storage says what was short (storage.Refusal) or which rate limit
was reached (storage.RateLimited); this says it to a member, the same sentence on Discord and in the
terminal (only the moment of a rate limit is shown each face's way)."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.errors import RateLimited
from bot.money import price, total
from storage import RateLimit, Refusal
from storage import RateLimited as RateFact


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


def window_words(seconds: int) -> str:
    """A rate limit's window: "hour", "day", "10 minutes", "2 hours"."""
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds % size == 0:
            n = seconds // size
            return unit if n == 1 else f"{n} {unit}s"
    return f"{seconds} seconds"


def rate_words(limit: RateLimit) -> str:
    """ "3 jobs per hour", "1 job per 10 minutes" """
    return f"{limit.jobs} job{'s' if limit.jobs != 1 else ''} per {window_words(limit.window_s)}"


def rate_limited(fact: RateFact, now: datetime | None = None) -> RateLimited:
    """The member's refusal: which limit they reached and when their next job is allowed."""
    whose = " for members of your role" if fact.limit.role_id is not None else ""
    lead = f"You have reached this server's limit of {rate_words(fact.limit)}{whose}."
    return RateLimited(lead, fact.retry_at, now or datetime.now(UTC))
