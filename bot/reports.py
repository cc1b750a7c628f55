"""What the account service reports, and the forms the faces show it in: text for people, CSV and
JSON for scripts. The JSON field names are a contract (``kontext-bot quota --json``,
``kontext-bot usage --format json``); the service that fills these is ``bot.accounts``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.money import MICROS_PER_USD, total
from bot.refusals import rate_words
from storage import QuotaStatus, UsageRow


def _usd_number(micros: int | None) -> float | None:
    """USD for JSON: a number, exact to the micro-dollar for any sum a bot will see."""
    return None if micros is None else micros / MICROS_PER_USD


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class QuotaReport:
    """What a user has left. ``to_json`` is the contract of ``kontext-bot quota --json``."""

    status: QuotaStatus

    @property
    def resets_at(self) -> datetime:
        return self.status.resets_at

    def to_json(self) -> dict[str, Any]:
        s = self.status
        return {
            "user_id": s.user_id,
            "guild_id": s.guild_id,
            "models": {
                f.model: {
                    "free_limit": f.limit,
                    "free_used": f.used,
                    "free_remaining": f.remaining,
                    "period": f.period,
                    "resets_at": _iso(f.resets_at),
                }
                for f in s.free
            },
            "spent_usd": _usd_number(s.spent_micros),
            "cap_usd": _usd_number(s.cap_micros),
            "resets_at": _iso(s.resets_at),
            "guild_budget": {
                "budget_usd": _usd_number(s.guild.budget_micros),
                "spent_usd": _usd_number(s.guild.spent_micros),
                "remaining_usd": _usd_number(s.guild.remaining_micros),
                "period": s.guild.period,
                "resets_at": _iso(s.guild.resets_at),
            },
            "teams": [
                {
                    "name": t.name.removeprefix("team:"),
                    "budget_usd": _usd_number(t.budget_micros),
                    "spent_usd": _usd_number(t.spent_micros),
                    "remaining_usd": _usd_number(t.remaining_micros),
                    "period": t.period,
                    "resets_at": _iso(t.resets_at),
                }
                for t in s.teams
            ],
            "rate_limits": [
                {
                    "role_id": r.limit.role_id,
                    "jobs": r.limit.jobs,
                    "per_s": r.limit.window_s,
                    "used": r.used,
                    "next_allowed_at": None if r.next_at is None else _iso(r.next_at),
                }
                for r in s.rates
            ],
        }

    def to_text(self) -> str:
        s = self.status
        lines = ["Free images:"]
        for f in s.free:
            lines.append(
                f"  {f.model}: {f.remaining} of {f.limit} left ({f.used} used; resets {_iso(f.resets_at)})"
            )
        cap = "no cap" if s.cap_micros is None else f"cap {total(s.cap_micros)}"
        lines.append(f"Spent this period: {total(s.spent_micros)} ({cap}; resets {_iso(s.cap_resets_at)})")
        for t in s.teams:
            lines.append(
                f"Team {t.name.removeprefix('team:')}: {total(t.remaining_micros)} left of "
                f"{total(t.budget_micros)} (resets {_iso(t.resets_at)})"
            )
        g = s.guild
        lines.append(
            f"Server budget: {total(g.remaining_micros)} left of {total(g.budget_micros)} "
            f"(resets {_iso(g.resets_at)})"
        )
        for r in s.rates:
            then = "" if r.next_at is None else f"; next job allowed at {_iso(r.next_at)}"
            lines.append(f"Rate limit: {r.used} used of {rate_words(r.limit)}{then}")
        return "\n".join(lines)


# /usage by team groups jobs by who paid; the table says it in words (CSV and JSON keep the keys).
_PAYERS = {
    "free": "free images",
    "guild": "server budget",
    "operator": "operator (CLI)",
    "sandbox": "sandbox (free)",
    "-": "nobody (refused)",
}


def payer_label(key: str) -> str:
    if key.startswith("team:"):
        return f"team {key[5:]}"
    return _PAYERS.get(key, key)


_USAGE_COLUMNS = ("jobs", "succeeded", "images", "cost_usd", "refused", "failed", "cancelled")


@dataclass(frozen=True)
class UsageReport:
    by: str
    rows: tuple[UsageRow, ...]

    def records(self) -> list[dict[str, Any]]:
        return [
            {
                self.by: r.key,
                "jobs": r.jobs,
                "succeeded": r.succeeded,
                "images": r.images,
                "cost_usd": _usd_number(r.cost_micros),
                "refused": r.refused,
                "failed": r.failed,
                "cancelled": r.cancelled,
                "overrun_micros": r.overrun_micros,
            }
            for r in self.rows
        ]

    def to_json(self) -> str:
        return json.dumps(self.records(), indent=2)

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow((self.by, *_USAGE_COLUMNS, "overrun_micros"))
        for r in self.rows:
            writer.writerow(
                (
                    r.key,
                    r.jobs,
                    r.succeeded,
                    r.images,
                    f"{r.cost_micros / MICROS_PER_USD:.6f}",
                    r.refused,
                    r.failed,
                    r.cancelled,
                    r.overrun_micros,
                )
            )
        return out.getvalue()

    @property
    def overrun_micros(self) -> int:
        """What providers reported beyond the reservations, over the report: not charged to anyone."""
        return sum(r.overrun_micros for r in self.rows)

    def overrun_note(self) -> str:
        """A line for people when providers reported more than the jobs reserved; else ""."""
        if not self.overrun_micros:
            return ""
        return (
            f"⚠️ Providers reported {total(self.overrun_micros)} more than these jobs reserved; that "
            "overrun was not charged to any budget (column overrun_micros in the CSV)."
        )

    def to_table(self) -> str:
        # The overrun column only when there is one: most reports have none.
        extra = ("overrun",) if self.overrun_micros else ()
        header = ("paid by" if self.by == "team" else self.by, *_USAGE_COLUMNS, *extra)
        body = [
            (
                payer_label(r.key) if self.by == "team" else r.key,
                r.jobs,
                r.succeeded,
                r.images,
                total(r.cost_micros),
                r.refused,
                r.failed,
                r.cancelled,
                *((total(r.overrun_micros),) if extra else ()),
            )
            for r in self.rows
        ]
        cells = [tuple(str(c) for c in row) for row in (header, *body)]
        widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

        def line(row: tuple[str, ...]) -> str:
            # The key column reads left to right; numbers line up on the right.
            return "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )

        if not body:
            return line(cells[0]) + "\n(no jobs in this period)"
        return "\n".join(line(row) for row in cells)
