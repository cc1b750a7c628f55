"""Quotas, usage and admin settings: the one service both faces call (CLI and Discord cogs).

It checks what people type (model in the catalog, amounts, periods) and turns it into storage
calls; it writes no SQL. Every refusal is a ValidationError whose message says what is allowed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import storage
from bot import checks
from bot.catalog import ASPECT_RATIOS, Catalog
from bot.checks import MAX_FREE_QUOTA_IMAGES, MAX_GRANT_IMAGES, MAX_RATE_JOBS, PERIODS
from bot.errors import NotFound, UserError, ValidationError
from bot.reports import QuotaReport, UsageReport
from bot.storage_errors import speaks_for_storage
from storage import Database
from storage.periods import utc

log = logging.getLogger(__name__)

FREE_QUOTA_PERIODS = (*PERIODS, "off")
USAGE_GROUPS = ("user", "team", "model", "day")
# Report windows a person picks from a list (Discord); the CLI takes --since/--until instead.
USAGE_WINDOWS = ("today", "week", "month", "last-30-days", "all")
ALL_MODELS = ("*", "all")
MAX_TEAM_NAME = 100


def usage_window(window: str, now: datetime | None = None) -> tuple[datetime | None, datetime | None]:
    """[since, until) in UTC for a named window: today, this ISO week (from Monday), this calendar
    month, the last 30 days (to the minute), or all time (None, None)."""
    now = utc(now)
    if window == "all":
        return None, None
    if window == "last-30-days":
        return now - timedelta(days=30), None
    kinds = {"today": "day", "week": "week", "month": "month"}
    if window not in kinds:
        raise ValidationError(
            f"must be one of {', '.join(USAGE_WINDOWS)} (you gave {window!r}).", field="period"
        )
    return storage.period_at(kinds[window], now).start, None


@dataclass(frozen=True)
class GuildSettings:
    """Everything an admin has set for a guild, for one overview."""

    config: storage.GuildConfig
    free_quotas: dict[str, storage.FreePolicy]  # the guild's own rows; "*" is every other model
    teams: tuple[storage.Team, ...]
    channels: frozenset[int]  # empty: every channel
    rate_limits: tuple[storage.RateLimit, ...] = ()  # the guild-wide one first
    role_free_quotas: dict[int, dict[str, storage.FreePolicy]] = field(default_factory=dict)  # role -> model
    # Reported by providers beyond what jobs reserved, this budget period: recorded, not charged.
    overrun_micros: int = 0


@dataclass(frozen=True)
class Viewer:
    """Who asks for a usage report, as the face knows them."""

    user_id: int
    roles: tuple[int, ...] = ()
    manages: bool = False  # Manage Server (or Administrator, or the owner)


@dataclass(frozen=True)
class UsageScope:
    """What one viewer may see of a server's usage: all of it, or their teams' jobs and their own."""

    whole: bool
    user_id: int | None = None
    teams: tuple[storage.Team, ...] = ()


class NotAllowed(UserError):
    code = "forbidden"


@speaks_for_storage  # storage's facts leave every public method as UserErrors
class AccountService:
    """Quota, usage and admin operations over the database, checked against the catalog."""

    def __init__(self, db: Database, catalog: Catalog) -> None:
        self.db = db
        self.catalog = catalog

    def _model(self, model: str) -> str:
        return self.catalog.get(model).id  # ValidationError lists the models when unknown

    # --- what users ask ---------------------------------------------------------------------------

    async def quota(
        self,
        user_id: int,
        guild_id: int | None = None,
        roles: Sequence[int] = (),
        *,
        now: datetime | None = None,
    ) -> QuotaReport:
        """Per model: free limit, used, remaining; spent and cap; budgets; when each resets."""
        models = {m.id: m.free_quota for m in self.catalog.models}
        guild = None if guild_id is None else checks.discord_id(guild_id, "guild", zero_ok=True)
        status = await storage.quota_status(
            self.db, checks.discord_id(user_id, "user"), guild, models, roles, now=now
        )
        return QuotaReport(status)

    async def usage_scope(self, guild_id: int, viewer: Viewer) -> UsageScope:
        """What ``viewer`` may see of a server's usage. With Manage Server: everything. A member who
        holds the role of a team (with a budget): the jobs charged to those teams (and so the members
        who made them) and their own jobs, nothing of other teams. Anyone else: NotAllowed.
        @everyone (whose id is the guild's) may fund a server-wide team, but it makes nobody a lead."""
        if viewer.manages:
            return UsageScope(whole=True)
        guild = checks.discord_id(guild_id, "guild")
        roles = set(viewer.roles) - {guild}
        teams = tuple(
            t for t in await storage.list_teams(self.db, guild) if t.role_id in roles and t.budget_micros > 0
        )
        if not teams:
            raise NotAllowed("Only members with Manage Server or a team role can see the usage report.")
        return UsageScope(whole=False, user_id=checks.discord_id(viewer.user_id, "user"), teams=teams)

    async def usage(
        self,
        guild_id: int | None = None,
        since: date | datetime | str | None = None,
        until: date | datetime | str | None = None,
        by: str = "user",
        scope: UsageScope | None = None,
    ) -> UsageReport:
        """Jobs by user, team (who paid), model or day. ``until`` includes the day it names.
        ``scope`` (from ``usage_scope``) narrows it to what one viewer may see; None: everything."""
        if by not in USAGE_GROUPS:
            raise ValidationError(f"must be one of {', '.join(USAGE_GROUPS)} (you gave {by!r}).", field="by")
        start = checks.day_start(since, "since")
        end = checks.day_start(until, "until", next_day=True)
        if start and end and end <= start:
            raise ValidationError("must not be before the start of the report (since).", field="until")
        guild = None if guild_id is None else checks.discord_id(guild_id, "guild", zero_ok=True)
        narrow = scope is not None and not scope.whole
        rows = await storage.usage(
            self.db,
            guild_id=guild,
            since=start,
            until=end,
            by=by,
            only_user=scope.user_id if narrow and scope else None,
            only_teams=[t.id for t in scope.teams] if narrow and scope else None,
        )
        return UsageReport(by, tuple(rows))

    # --- admin ----------------------------------------------------------------------------------

    async def set_budget(
        self, guild_id: int, usd: Any, period: str = "month", *, actor_id: int | None = None
    ) -> storage.GuildConfig:
        """admin budget --guild ID --usd AMOUNT [--period day|week|month]"""
        return await storage.set_guild_budget(
            self.db,
            checks.discord_id(guild_id, "guild", zero_ok=True),
            checks.usd_micros(usd),
            checks.period(period),
            actor_id=actor_id,
        )

    async def set_free_quota(
        self,
        guild_id: int,
        model: str,
        images: Any,
        period: str = "month",
        *,
        role_id: int | None = None,
        actor_id: int | None = None,
    ) -> None:
        """admin free-quota --guild ID --model MODEL|all --images N [--period day|week|month|off]
        [--role ROLE_ID]. With a role: its members' own allowance, in place of the server's (the most
        generous of a member's roles wins); "off" removes the role's allowance."""
        model_id = storage.ALL_MODELS if model in ALL_MODELS else self._model(model)
        count: int | None = checks.count(images, "images", maximum=MAX_FREE_QUOTA_IMAGES)
        guild = checks.discord_id(guild_id, "guild", zero_ok=True)
        off = checks.period(period, FREE_QUOTA_PERIODS) == "off"
        if off:
            count, period = (None if role_id is not None else 0), "month"
        if role_id is not None:
            role = checks.discord_id(role_id, "role")
            await storage.set_role_free_quota(
                self.db, guild, role, model_id, count, period, actor_id=actor_id
            )
            return
        await storage.set_free_quota(self.db, guild, model_id, count, period, actor_id=actor_id)

    async def set_rate(
        self,
        guild_id: int,
        jobs: Any,
        per: str = "1h",
        *,
        role_id: int | None = None,
        actor_id: int | None = None,
    ) -> list[storage.RateLimit]:
        """admin rate --guild ID --jobs N --per 10m|1h|1d [--role ROLE_ID]: at most N jobs per member
        in any rolling window, for the role's members (without a role: everyone without a limited
        role). jobs 0 (or --off) removes that limit. Returns the server's limits now."""
        count = checks.count(jobs, "jobs", maximum=MAX_RATE_JOBS)
        window = checks.window_s(per) if count else 3600
        return await storage.set_rate_limit(
            self.db,
            checks.discord_id(guild_id, "guild", zero_ok=True),
            count or None,
            window,
            role_id=None if role_id is None else checks.discord_id(role_id, "role"),
            actor_id=actor_id,
        )

    async def rate_limits(self, guild_id: int) -> list[storage.RateLimit]:
        return await storage.list_rate_limits(self.db, checks.discord_id(guild_id, "guild", zero_ok=True))

    async def set_team(
        self,
        guild_id: int,
        role_id: int,
        name: str,
        usd: Any,
        period: str = "month",
        *,
        actor_id: int | None = None,
    ) -> storage.Team:
        """admin team --guild ID --role ROLE_ID --name NAME --usd AMOUNT [--period ...]"""
        name = (name or "").strip()
        if not name or len(name) > MAX_TEAM_NAME:
            raise ValidationError(f"must be 1 to {MAX_TEAM_NAME} characters.", field="name")
        return await storage.set_team(
            self.db,
            checks.discord_id(guild_id, "guild", zero_ok=True),
            checks.discord_id(role_id, "role"),
            name,
            checks.usd_micros(usd),
            checks.period(period),
            actor_id=actor_id,
        )

    async def set_cap(
        self, guild_id: int, usd: Any, period: str = "month", *, actor_id: int | None = None
    ) -> storage.GuildConfig:
        """admin cap --guild ID --usd AMOUNT: what one user may spend per period ("off" or None: no cap)."""
        micros = None if usd is None or str(usd).lower() in ("off", "none") else checks.usd_micros(usd)
        return await storage.set_user_cap(
            self.db,
            checks.discord_id(guild_id, "guild", zero_ok=True),
            micros,
            checks.period(period),
            actor_id=actor_id,
        )

    async def grant(
        self,
        guild_id: int,
        user_id: int,
        model: str,
        images: Any,
        *,
        actor_id: int | None = None,
        note: str | None = None,
    ) -> storage.Period:
        """admin grant --guild ID --user ID --model MODEL --images N (for the current period)."""
        return await storage.grant_free_images(
            self.db,
            checks.discord_id(guild_id, "guild", zero_ok=True),
            checks.discord_id(user_id, "user"),
            self._model(model),
            checks.count(images, "images", minimum=1, maximum=MAX_GRANT_IMAGES),
            actor_id=actor_id,
            note=note,
        )

    async def refund(
        self, job_id: str, *, actor_id: int | None = None, reason: str = "", guild_id: int | None = None
    ) -> storage.Refund:
        """admin refund JOB_ID. Raises NotFound for an unknown job, and for a job of another guild
        when ``guild_id`` is given (a server's admins refund their own server's jobs)."""
        job_id = (job_id or "").strip()
        if not job_id:
            raise ValidationError("Give the id of the job to refund.")
        if guild_id is not None:
            job = await storage.get_job(self.db, job_id)
            if job is None or job.guild_id != guild_id:
                raise NotFound(f"No job {job_id!r} in this server.")
        return await storage.refund_job(self.db, job_id, actor_id=actor_id, reason=reason)

    async def set_channel(
        self, guild_id: int, channel_id: int, allowed: bool = True, *, actor_id: int | None = None
    ) -> frozenset[int]:
        """Allow (or stop allowing) the bot in a channel; returns the allow-list (empty: everywhere)."""
        guild = checks.discord_id(guild_id, "guild")
        await storage.set_channel_allowed(
            self.db, guild, checks.discord_id(channel_id, "channel"), allowed, actor_id=actor_id
        )
        return await storage.allowed_channels(self.db, guild)

    async def allowed_channels(self, guild_id: int) -> frozenset[int]:
        """The guild's allow-list (empty: every channel)."""
        return await storage.allowed_channels(self.db, checks.discord_id(guild_id, "guild"))

    async def teams(self, guild_id: int) -> list[storage.Team]:
        """The guild's teams, in creation order (budget 0: retired)."""
        return await storage.list_teams(self.db, checks.discord_id(guild_id, "guild", zero_ok=True))

    async def guild_settings(self, guild_id: int, *, now: datetime | None = None) -> GuildSettings:
        guild = checks.discord_id(guild_id, "guild", zero_ok=True)
        config = await storage.get_guild_config(self.db, guild)
        since = storage.period_at(config.budget_period, utc(now)).start
        return GuildSettings(
            config,
            await storage.list_free_quotas(self.db, guild),
            tuple(await storage.list_teams(self.db, guild)),
            await storage.allowed_channels(self.db, guild),
            tuple(await storage.list_rate_limits(self.db, guild)),
            await storage.list_role_free_quotas(self.db, guild),
            await storage.overrun_total(self.db, guild, since),
        )

    async def channel_allowed(self, guild_id: int, channel_id: int | None) -> bool:
        """True when the guild has no allow-list or the channel is on it."""
        return channel_id is not None and await storage.channel_allowed(self.db, guild_id, channel_id)

    async def settings(self, user_id: int) -> storage.UserSettings:
        return await storage.get_user_settings(self.db, checks.discord_id(user_id, "user"))

    async def update_settings(
        self,
        user_id: int,
        *,
        default_model: str | None = None,
        aspect_ratio: str | None = None,
        private_results: bool | None = None,
    ) -> storage.UserSettings:
        """Change the settings given (those left None stay as they are)."""
        changes: dict[str, Any] = {}
        if default_model is not None:
            changes["default_model"] = self._model(default_model)
        if aspect_ratio is not None:
            if aspect_ratio not in ASPECT_RATIOS:
                raise ValidationError(f"must be one of {', '.join(ASPECT_RATIOS)}.", field="aspect_ratio")
            changes["aspect_ratio"] = aspect_ratio
        if private_results is not None:
            changes["private_results"] = bool(private_results)
        return await storage.set_user_settings(self.db, checks.discord_id(user_id, "user"), **changes)

    # --- the database itself ---------------------------------------------------------------------

    async def check(self) -> list[str]:
        """kontext-bot db check: problems found (empty: the books balance)."""
        return await storage.check(self.db)

    async def schema_version(self) -> int:
        return await storage.schema_version(self.db)

    async def backup(self, path: str | Path, *, now: datetime | None = None) -> Path:
        """kontext-bot db backup PATH, safe while the bot runs. PATH is the file to write, or a folder
        to write ``kontext-<UTC timestamp>.db`` into. Returns the file written. A path that cannot be
        written is a ValidationError (field "path"), found before the copy starts."""
        target = await asyncio.to_thread(checks.backup_target, path, utc(now))
        try:
            return await storage.backup(self.db, target)
        except OSError as exc:
            raise ValidationError(
                f"{str(target)!r} cannot be written ({exc.strerror or type(exc).__name__}).", field="path"
            ) from None

    @staticmethod
    async def copy_database(source: str | Path, target: str | Path) -> storage.CopyReport:
        """kontext-bot db copy SOURCE TARGET: each a SQLite path or a postgresql:// URL. Copies
        everything from one consistent snapshot of SOURCE (safe while a bot writes it) into an empty
        TARGET, and checks row counts and ``db check`` there before it reports success. Static: it
        opens the two databases it is given, not the service's own."""
        given = []
        for name, value in (("source", source), ("target", target)):
            text = str(value).strip()
            try:
                if not text:
                    raise storage.UnsupportedTarget("")
                storage.parse_target(text)
            except storage.UnsupportedTarget as exc:
                not_this = f", not a {exc.scheme}:// URL" if exc.scheme else ""
                raise ValidationError(
                    f"must be a SQLite path or a postgresql:// URL{not_this}.", field=name
                ) from None
            given.append(text)
        return await storage.copy_database(*given)
