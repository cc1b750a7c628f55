"""Budget alerts and period reports: where a guild wants them, the figures an alert states, and the
claims that make each alert and report go out once.

Each alert or report has a key: (guild, subject, period start, threshold). ``claim`` inserts its row
before anything is posted (the primary key refuses a second row, whichever process tries), the poster
marks it ``sent`` afterwards, or ``release``s it when posting failed for a reason that may pass. A
claim left unsent for ``stale_after`` seconds (its poster died between claim and send) may be taken
over, so an alert is lost only if Discord took the message and the poster died before it could say so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from storage import audit
from storage.conn import Conn
from storage.db import Database
from storage.guild_config import read_guild_config, read_teams
from storage.ledger import guild_bucket, read_balances, team_bucket
from storage.periods import from_db, period_at, to_db, utc

REPORTS = ("off", "weekly", "monthly")
REPORT_PERIODS = {"weekly": "week", "monthly": "month"}
TOP_SPENDERS = 3


@dataclass(frozen=True)
class AlertSettings:
    guild_id: int
    channel_id: int | None = None  # None: off
    thresholds: tuple[int, ...] = ()
    report: str = "off"
    alerts_since: datetime | None = None
    report_since: datetime | None = None

    @property
    def on(self) -> bool:
        return self.channel_id is not None and (bool(self.thresholds) or self.report != "off")


@dataclass(frozen=True)
class AlertKey:
    guild_id: int
    subject: str  # guild | team:<id> | overrun:<job id> | report:<weekly|monthly>
    period_start: str  # as the database stores times
    threshold: int = 0


@dataclass(frozen=True)
class Budget:
    """One budget's standing in its current period."""

    subject: str  # "guild" or "team:<id>"
    name: str  # "guild" or the team's name
    limit_micros: int
    spent_micros: int
    period: str
    start: datetime
    resets_at: datetime
    team_id: int | None = None


@dataclass(frozen=True)
class Overrun:
    """A job the provider billed beyond what was reserved for it."""

    job_id: str
    at: datetime
    payer: str  # the job's charged_to: guild | team:<name>
    user_id: int | None
    model: str
    provider: str | None
    reserved_micros: int
    cost_micros: int
    overrun_micros: int


@dataclass(frozen=True)
class AlertFacts:
    budgets: tuple[Budget, ...]
    overruns: tuple[Overrun, ...]
    sent: frozenset[tuple[str, str, int]]  # (subject, period_start, threshold) claimed or sent


def _settings(row: Any) -> AlertSettings:
    thresholds = tuple(int(t) for t in row["thresholds"].split(",") if t)
    return AlertSettings(
        row["guild_id"],
        row["channel_id"],
        thresholds,
        row["report"],
        from_db(row["alerts_since"]),
        from_db(row["report_since"]),
    )


async def _read_settings(conn: Conn, guild_id: int) -> AlertSettings | None:
    row = await conn.fetchone("SELECT * FROM alert_settings WHERE guild_id = ?", (guild_id,))
    return None if row is None else _settings(row)


async def _set(
    conn: Conn,
    guild_id: int,
    channel_id: int | None,
    thresholds: tuple[int, ...],
    report: str,
    actor_id: int | None,
    now: datetime,
) -> AlertSettings:
    await conn.lock(f"alerts:{guild_id}")
    old = await _read_settings(conn, guild_id) or AlertSettings(guild_id)
    on = channel_id is not None
    # "since" stays while a thing stays on: changing the thresholds does not re-announce old overruns.
    alerts_since = (
        (old.alerts_since if old.channel_id and old.thresholds else now) if on and thresholds else None
    )
    report_since = (
        (old.report_since if old.channel_id and old.report == report else now)
        if on and report != "off"
        else None
    )
    await conn.execute(
        "INSERT INTO alert_settings (guild_id, channel_id, thresholds, report, alerts_since, report_since, "
        "updated_at, updated_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (guild_id) DO UPDATE SET "
        "channel_id = excluded.channel_id, thresholds = excluded.thresholds, report = excluded.report, "
        "alerts_since = excluded.alerts_since, report_since = excluded.report_since, "
        "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        (
            guild_id,
            channel_id,
            ",".join(str(t) for t in thresholds),
            report,
            None if alerts_since is None else to_db(alerts_since),
            None if report_since is None else to_db(report_since),
            to_db(now),
            actor_id,
        ),
    )
    details = {"channel_id": channel_id, "thresholds": list(thresholds), "report": report}
    await audit.record(conn, now, actor_id, guild_id, "alerts", details)
    settings = await _read_settings(conn, guild_id)
    assert settings is not None
    return settings


async def set_alert_settings(
    db: Database,
    guild_id: int,
    channel_id: int | None,
    thresholds: Sequence[int] = (),
    report: str = "off",
    *,
    actor_id: int | None = None,
    now: datetime | None = None,
) -> AlertSettings:
    """Where the guild's alerts and reports go; ``channel_id`` None turns both off. Audited."""
    if report not in REPORTS:
        raise ValueError(f"report must be one of {', '.join(REPORTS)}, not {report!r}")
    if list(thresholds) != sorted(set(thresholds)) or any(t <= 0 for t in thresholds):
        raise ValueError(f"thresholds must be positive and rising, not {thresholds!r}")
    if channel_id is None:
        thresholds, report = (), "off"
    return await db.write(_set, guild_id, channel_id, tuple(thresholds), report, actor_id, utc(now))


async def get_alert_settings(db: Database, guild_id: int) -> AlertSettings:
    return await db.read(_read_settings, guild_id) or AlertSettings(guild_id)


async def _active(conn: Conn) -> list[AlertSettings]:
    rows = await conn.fetchall(
        "SELECT * FROM alert_settings WHERE channel_id IS NOT NULL ORDER BY guild_id", ()
    )
    return [_settings(r) for r in rows]


async def active_alert_settings(db: Database) -> list[AlertSettings]:
    """Every guild whose alerts or reports are on."""
    return [s for s in await db.read(_active) if s.on]


# --- the figures ---------------------------------------------------------------------------------


async def _facts(
    conn: Conn, guild_id: int, overruns_since: datetime | None, claims_since: datetime, now: datetime
) -> AlertFacts:
    config = await read_guild_config(conn, guild_id)
    teams = [t for t in await read_teams(conn, guild_id) if t.budget_micros > 0]
    wanted = []
    if config.budget_micros > 0:
        wanted.append(
            ("guild", "guild", config.budget_micros, config.budget_period, guild_bucket(guild_id), None)
        )
    for t in teams:
        wanted.append((f"team:{t.id}", t.name, t.budget_micros, t.period, team_bucket(t.id), t.id))
    periods = {w[0]: period_at(w[3], now) for w in wanted}
    balances = await read_balances(conn, [(w[4], periods[w[0]]) for w in wanted])
    budgets = tuple(
        Budget(
            subject,
            name,
            limit,
            balances[(bucket, periods[subject])].micros,
            kind,
            periods[subject].start,
            periods[subject].end,
            team_id,
        )
        for subject, name, limit, kind, bucket, team_id in wanted
    )
    overruns: list[Overrun] = []
    if overruns_since is not None:
        # Recorded on the job (never charged: see storage.settle); jobs_overruns reads only those.
        rows = await conn.fetchall(
            "SELECT id, finished_at, overrun_micros, charged_to, user_id, model, provider, "
            "estimated_micros, actual_micros FROM jobs "
            "WHERE guild_id = ? AND overrun_micros > 0 AND finished_at >= ? "
            "AND (charged_to = 'guild' OR charged_to LIKE 'team:%') ORDER BY finished_at, id",
            (guild_id, to_db(overruns_since)),
        )
        overruns = [
            Overrun(r[0], from_db(r[1]) or now, r[3] or "", r[4], r[5], r[6], r[7], r[8] or 0, r[2])
            for r in rows
        ]
    starts = [b.start for b in budgets] + [o.at for o in overruns] + [now - timedelta(days=62)]
    sent = await conn.fetchall(
        "SELECT subject, period_start, threshold FROM alerts_sent WHERE guild_id = ? AND period_start >= ? "
        "AND (sent_at IS NOT NULL OR claimed_at >= ?)",
        (guild_id, to_db(min(starts)), to_db(claims_since)),
    )
    return AlertFacts(budgets, tuple(overruns), frozenset((r[0], r[1], r[2]) for r in sent))


async def alert_facts(
    db: Database,
    guild_id: int,
    *,
    overruns_since: datetime | None,
    stale_after: float,
    now: datetime | None = None,
) -> AlertFacts:
    """The guild's budgets (those above $0) in their current periods, the overruns recorded since
    ``overruns_since`` (None: none), and the alert keys of the last two months that are sent or
    claimed less than ``stale_after`` seconds ago (the others may be claimed again)."""
    moment = utc(now)
    return await db.read(_facts, guild_id, overruns_since, moment - timedelta(seconds=stale_after), moment)


async def _top(conn: Conn, guild_id: int, payer: str, start: datetime, end: datetime) -> list:
    return await conn.fetchall(
        "SELECT user_id, CAST(sum(coalesce(actual_micros, estimated_micros)) AS BIGINT) AS spent "
        "FROM jobs WHERE guild_id = ? AND created_at >= ? AND created_at < ? AND charged_to = ? "
        "AND reservation IN ('open', 'settled') AND user_id IS NOT NULL "
        "GROUP BY user_id ORDER BY spent DESC, user_id LIMIT ?",
        (guild_id, to_db(start), to_db(end), payer, TOP_SPENDERS),
    )


async def top_spenders(
    db: Database, guild_id: int, payer: str, start: datetime, end: datetime
) -> list[tuple[int, int]]:
    """(user id, micro-dollars) of the biggest spenders from one payer (guild, team:<name>) over
    [start, end): jobs in flight at their estimate, finished ones at their cost."""
    return [(r[0], r[1]) for r in await db.read(_top, guild_id, payer, start, end)]


# --- claims ----------------------------------------------------------------------------------------


_KEY = "guild_id = ? AND subject = ? AND period_start = ? AND threshold = ?"


def _key(k: AlertKey) -> tuple:
    return (k.guild_id, k.subject, k.period_start, k.threshold)


async def _claim(
    conn: Conn, keys: list[AlertKey], owner: str, now: datetime, stale: datetime
) -> list[AlertKey]:
    got = []
    for k in keys:
        await conn.lock(f"alerts:{k.guild_id}")
        fresh = await conn.execute(
            "INSERT INTO alerts_sent (guild_id, subject, period_start, threshold, claimed_by, claimed_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (guild_id, subject, period_start, threshold) DO NOTHING",
            (*_key(k), owner, to_db(now)),
        )
        if not fresh:  # taken: over only when its poster left it unsent too long
            fresh = await conn.execute(
                f"UPDATE alerts_sent SET claimed_by = ?, claimed_at = ? WHERE {_KEY} "
                "AND sent_at IS NULL AND claimed_at < ?",
                (owner, to_db(now), *_key(k), to_db(stale)),
            )
        if fresh:
            got.append(k)
    return got


async def claim(
    db: Database, keys: Iterable[AlertKey], owner: str, *, stale_after: float, now: datetime | None = None
) -> list[AlertKey]:
    """Claim the keys for ``owner`` to post; returns those it got (none another process holds or sent)."""
    moment = utc(now)
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return []
    return await db.write(_claim, wanted, owner, moment, moment - timedelta(seconds=stale_after))


async def _sent(
    conn: Conn, keys: list[AlertKey], owner: str, channel_id: int, message_id: int | None, now: datetime
) -> None:
    for k in keys:
        await conn.execute(
            "UPDATE alerts_sent SET sent_at = ?, channel_id = ?, message_id = ? "
            f"WHERE {_KEY} AND claimed_by = ?",
            (to_db(now), channel_id, message_id, *_key(k), owner),
        )


async def mark_sent(
    db: Database,
    keys: Iterable[AlertKey],
    owner: str,
    channel_id: int,
    message_id: int | None,
    *,
    now: datetime | None = None,
) -> None:
    """The keys' message is posted (``message_id`` None: Discord refused the channel for good)."""
    await db.write(_sent, list(keys), owner, channel_id, message_id, utc(now))


async def _release(conn: Conn, keys: list[AlertKey], owner: str) -> None:
    for k in keys:
        await conn.execute(
            f"DELETE FROM alerts_sent WHERE {_KEY} AND claimed_by = ? AND sent_at IS NULL", (*_key(k), owner)
        )


async def release(db: Database, keys: Iterable[AlertKey], owner: str) -> None:
    """Posting failed for a reason that may pass: the next check may claim the keys again."""
    await db.write(_release, list(keys), owner)


@dataclass(frozen=True)
class SentAlert:
    key: AlertKey
    claimed_by: str
    sent_at: datetime | None
    channel_id: int | None
    message_id: int | None


async def _list(conn: Conn, guild_id: int) -> list[SentAlert]:
    rows = await conn.fetchall(
        "SELECT * FROM alerts_sent WHERE guild_id = ? ORDER BY claimed_at, subject, threshold", (guild_id,)
    )
    return [
        SentAlert(
            AlertKey(r["guild_id"], r["subject"], r["period_start"], r["threshold"]),
            r["claimed_by"],
            from_db(r["sent_at"]),
            r["channel_id"],
            r["message_id"],
        )
        for r in rows
    ]


async def sent_alerts(db: Database, guild_id: int) -> list[SentAlert]:
    """Every alert and report claimed for the guild, oldest first."""
    return await db.read(_list, guild_id)
