"""Budget alerts and period reports for a guild's admins: the settings (``kontext-bot admin alerts``
and ``/kontext-admin alerts``) and the checker that finds what is due.

``AlertService.due()`` looks at every guild whose alerts or reports are on and returns the notices
to post now, each already claimed in the database for this process (storage/alerts.py): a budget
(the server's or a team's) that crossed one of the guild's thresholds in its current period, once
per threshold per period; a job the provider billed beyond its reservation, once per job; the report
of a week or month that has ended, once per period. The poster (the Discord face, cogs/alerts.py)
calls ``sent`` after posting, or ``failed``. Nothing here knows Discord; the clock is injected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot import checks
from bot.accounts import AccountService
from bot.alert_text import budget_text, overrun_text, report_title
from bot.errors import ValidationError
from bot.reports import UsageReport
from bot.storage_errors import speaks_for_storage
from storage import Database, alerts
from storage.alerts import REPORT_PERIODS, REPORTS, AlertKey, AlertSettings
from storage.periods import period_at, to_db, utc

log = logging.getLogger(__name__)

DEFAULT_THRESHOLDS = (50, 80, 100)
MAX_THRESHOLD = 1000  # percent: an alert at 10x the budget still means something (overruns)
MAX_THRESHOLDS = 10
STALE_CLAIM = 600.0  # seconds after which an unsent claim (its poster died) may be taken over
OVERRUN_WINDOW = timedelta(days=7)  # overruns older than this are history, not news


def parse_thresholds(value: Any) -> tuple[int, ...]:
    """'50,80,100' (or a sequence of numbers) as rising whole percentages from 1 to 1000; 'off': none."""
    if isinstance(value, str) and value.strip().lower() in ("off", "none"):
        return ()
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        numbers = [int(str(p).strip()) for p in parts]
    except ValueError:
        numbers = []
    if (
        not numbers
        or len(numbers) > MAX_THRESHOLDS
        or any(not 1 <= n <= MAX_THRESHOLD for n in numbers)
        or numbers != sorted(set(numbers))
    ):
        raise ValidationError(
            f"must be up to {MAX_THRESHOLDS} whole percentages from 1 to {MAX_THRESHOLD} in rising "
            f"order, like 50,80,100, or 'off' (you gave {value!r}).",
            field="at",
        )
    return tuple(numbers)


@dataclass(frozen=True)
class PeriodReport:
    """The /usage report of one ended week or month."""

    report: str  # weekly | monthly
    start: datetime
    end: datetime
    by_user: UsageReport
    by_day: UsageReport

    @property
    def title(self) -> str:
        return report_title(self.report, self.start, self.end)


@dataclass(frozen=True)
class Notice:
    """One message to post in ``channel_id``; its keys are claimed by this process until ``sent``."""

    guild_id: int
    channel_id: int
    kind: str  # budget | overrun | report
    text: str
    keys: tuple[AlertKey, ...]
    report: PeriodReport | None = None


@speaks_for_storage
class AlertService:
    def __init__(
        self,
        db: Database,
        accounts: AccountService,
        *,
        owner: str,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.db = db
        self.accounts = accounts
        self.owner = owner  # this process, as its claims name it
        self.clock = clock or utc

    def now(self) -> datetime:
        return utc(self.clock())

    # --- settings -------------------------------------------------------------------------------

    async def settings(self, guild_id: int) -> AlertSettings:
        return await alerts.get_alert_settings(self.db, checks.discord_id(guild_id, "guild"))

    async def configure(
        self,
        guild_id: int,
        *,
        channel_id: int | None = None,
        at: Any = None,
        report: str | None = None,
        off: bool = False,
        actor_id: int | None = None,
    ) -> AlertSettings:
        """Turn alerts and reports on in a channel (thresholds and report kept as they were when
        not given; at first 50,80,100 and no report), or ``off``."""
        guild = checks.discord_id(guild_id, "guild")
        if off:
            if channel_id is not None or at is not None or report is not None:
                raise ValidationError("turns alerts and reports off; give it alone.", field="off")
            return await alerts.set_alert_settings(self.db, guild, None, actor_id=actor_id, now=self.now())
        if channel_id is None:
            raise ValidationError(
                "is required: the channel to post alerts and reports in.",
                field="channel",
            )
        channel = checks.discord_id(channel_id, "channel")
        thresholds = None if at is None else parse_thresholds(at)
        if report is not None and report not in REPORTS:
            raise ValidationError(
                f"must be one of {', '.join(REPORTS)} (you gave {report!r}).", field="report"
            )
        old = await alerts.get_alert_settings(self.db, guild)
        if thresholds is None:
            thresholds = old.thresholds if old.channel_id is not None else DEFAULT_THRESHOLDS
        if report is None:
            report = old.report if old.channel_id is not None else "off"
        return await alerts.set_alert_settings(
            self.db, guild, channel, thresholds, report, actor_id=actor_id, now=self.now()
        )

    # --- the checker ------------------------------------------------------------------------------

    async def due(self) -> list[Notice]:
        """Every notice due now, claimed for this process. A guild that fails is logged and skipped."""
        now = self.now()
        notices: list[Notice] = []
        for settings in await alerts.active_alert_settings(self.db):
            try:
                notices += await self._guild_due(settings, now)
            except Exception:
                log.exception("checking alerts of guild %s failed", settings.guild_id)
        return notices

    async def _guild_due(self, s: AlertSettings, now: datetime) -> list[Notice]:
        assert s.channel_id is not None
        since = None
        if s.thresholds and s.alerts_since is not None:
            since = max(s.alerts_since, now - OVERRUN_WINDOW)
        facts = await alerts.alert_facts(
            self.db, s.guild_id, overruns_since=since, stale_after=STALE_CLAIM, now=now
        )
        wanted: list[tuple[str, tuple[AlertKey, ...], Any]] = []
        for b in facts.budgets if s.thresholds else ():
            start = to_db(b.start)
            crossed = [t for t in s.thresholds if b.spent_micros * 100 >= t * b.limit_micros]
            new = [t for t in crossed if (b.subject, start, t) not in facts.sent]
            if new:
                wanted.append(("budget", tuple(AlertKey(s.guild_id, b.subject, start, t) for t in new), b))
        for o in facts.overruns:
            key = AlertKey(s.guild_id, f"overrun:{o.job_id}", to_db(o.at))
            if (key.subject, key.period_start, 0) not in facts.sent:
                wanted.append(("overrun", (key,), o))
        ended = self._ended_period(s, now)
        if ended is not None:
            key = AlertKey(s.guild_id, f"report:{s.report}", to_db(ended[0]))
            if (key.subject, key.period_start, 0) not in facts.sent:
                wanted.append(("report", (key,), ended))
        if not wanted:
            return []
        got = set(
            await alerts.claim(
                self.db,
                [k for _, keys, _ in wanted for k in keys],
                self.owner,
                stale_after=STALE_CLAIM,
                now=now,
            )
        )
        notices = []
        for kind, keys, fact in wanted:
            mine = tuple(k for k in keys if k in got)
            if not mine:
                continue
            try:
                notices.append(await self._notice(s, kind, mine, fact))
            except BaseException:
                await alerts.release(self.db, mine, self.owner)
                raise
        return notices

    @staticmethod
    def _ended_period(s: AlertSettings, now: datetime) -> tuple[datetime, datetime] | None:
        """The last week or month that ended, if reports were on before it ended."""
        if s.report == "off" or s.report_since is None:
            return None
        current = period_at(REPORT_PERIODS[s.report], now)
        last = period_at(REPORT_PERIODS[s.report], current.start - timedelta(microseconds=1))
        return (last.start, last.end) if s.report_since < last.end else None

    async def _notice(self, s: AlertSettings, kind: str, keys: tuple[AlertKey, ...], fact: Any) -> Notice:
        assert s.channel_id is not None
        if kind == "budget":
            payer = "guild" if fact.subject == "guild" else f"team:{fact.name}"
            top = await alerts.top_spenders(self.db, s.guild_id, payer, fact.start, fact.resets_at)
            text = budget_text(fact, [k.threshold for k in keys], top)
            return Notice(s.guild_id, s.channel_id, kind, text, keys)
        if kind == "overrun":
            return Notice(s.guild_id, s.channel_id, kind, overrun_text(fact), keys)
        start, end = fact
        by_user = await self.accounts.usage(s.guild_id, start, end, "user")
        by_day = await self.accounts.usage(s.guild_id, start, end, "day")
        report = PeriodReport(s.report, start, end, by_user, by_day)
        return Notice(s.guild_id, s.channel_id, kind, report.title, keys, report)

    async def sent(self, notice: Notice, message_id: int | None) -> None:
        """Posted (``message_id`` None: Discord refused the channel for good; not tried again)."""
        await alerts.mark_sent(
            self.db, notice.keys, self.owner, notice.channel_id, message_id, now=self.now()
        )

    async def failed(self, notice: Notice) -> None:
        """Posting failed for a reason that may pass: a later check tries again."""
        await alerts.release(self.db, notice.keys, self.owner)

    async def history(self, guild_id: int) -> Sequence[alerts.SentAlert]:
        return await alerts.sent_alerts(self.db, checks.discord_id(guild_id, "guild"))
