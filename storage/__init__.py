"""Storage: jobs, the quota and cost ledger, guild settings and reports, in SQLite or PostgreSQL.

All SQL of the project lives in this package, parameterised. Decisions, for whoever reads the books:

- Money is integer micro-dollars; times are UTC, stored as fixed-width ISO text. Every call that
  depends on the clock takes ``now`` (tests move time; nothing sleeps).
- Who pays, in order: the user's free quota for the model (Model.free_quota, per calendar month by
  default; a guild may override per model or for "*", with period day|week|month, 0 = off), then
  the first team (in creation order) of the user's roles with budget left, then the guild budget
  ($0 by default). Every paid job also counts against the guild's per-user cap (none by default).
- A job is free as a whole or paid as a whole: n images all from the free quota, else paid.
- Operator jobs (user None) are recorded and costed, charged_to "operator", never limited.
  guild None is stored as guild 0 (DMs, CLI): free quota only, unless guild 0 is configured.
- A job that costs nothing (the local sandbox) is charged_to "sandbox": one free-bucket row that
  reserves and keeps no image, so the free quota is untouched.
- Free images are counted per guild: a user's quota in one server is not spent in another.
- Periods are calendar days, ISO weeks (from Monday) and months in UTC. The ledger files every
  change under a UTC day and a period's figure is the sum of its days, so changing a period
  setting (month -> week) keeps what was already spent in the new window. Settle, refund and
  reversal rows use the day of the reservation they close: a job straddling a boundary is counted
  once, in the period it was accepted in.
- Admin grants are filed under today: extra free images for the current period only.
- Settle charges the provider's reported cost, else price x images delivered (never for more images
  than were asked), and never more than the reservation: a reported cost above it is charged up to
  the reservation and the excess recorded as the job's ``overrun_micros`` (budgets and caps never
  pass their limits). A failover route with another price is recorded by
  mark_running(price_micros=...), and settle uses it.
- An admin refund of a finished job writes 'reversal' rows that net its charge to zero; of an
  unfinished job, it cancels and refunds it.
- Balances are sums of the append-only ledger (triggers forbid UPDATE and DELETE on it); the
  ``balances`` table caches them via a trigger in the same transaction, and ``check`` recomputes it.
- Two backends, one API (storage/db.py): SQLite, embedded, the default; PostgreSQL, shared by many
  processes, when the target is a postgresql:// URL. Every operation is one ``async def op(conn,
  ...)`` written once against storage/conn.py's Conn and run whole in one transaction. On SQLite it
  runs on the connection's thread without ever suspending (BEGIN IMMEDIATE for writes, which are
  group-committed: one thread hop and one COMMIT per batch, each write in its own SAVEPOINT; see
  storage/sqlite.py). On PostgreSQL a write is one READ COMMITTED transaction that first takes its
  guild's advisory lock, a read one REPEATABLE READ snapshot (storage/postgres.py). SQLite uses
  aiosqlite's Connection._execute, the one reach past its public API (guarded by
  tests/storage/test_sqlite.py).
- Errors are facts (storage/errors.py): a refusal carries its figures, a missing job its id; the
  words for people are bot/'s. Storage imports nothing from bot/.
- complete_job / fail_job on a finished job change nothing and return the earlier outcome; a
  job refused by the provider after dispatch is fail_job(status="refused") and is refunded.
- Job ids are 12 characters, time-ordered (base-36 milliseconds + 4 random), so they are short to
  type and inserts stay at the end of the indexes.
"""

from storage.audit import AuditEntry, audit_log
from storage.check import check
from storage.conn import Conn
from storage.copy import CopyReport, backup, copy_database
from storage.db import Database, Listening, schema_version
from storage.errors import (
    CopyMismatch,
    DatabaseBusy,
    DatabaseFull,
    DatabaseMissing,
    DatabaseUnavailable,
    IntegrityViolation,
    JobNotFound,
    MigrationFailed,
    NotADatabase,
    QuotaRefused,
    RateLimited,
    SameDatabase,
    SchemaTooNew,
    StorageError,
    TargetNotEmpty,
    UnsupportedTarget,
)
from storage.guild_config import (
    ALL_MODELS,
    FreePolicy,
    GuildConfig,
    Team,
    allowed_channels,
    channel_allowed,
    get_guild_config,
    list_free_quotas,
    list_teams,
    set_channel_allowed,
    set_free_quota,
    set_guild_budget,
    set_team,
    set_user_cap,
)
from storage.jobs import (
    Job,
    NewJob,
    get_job,
    list_jobs,
    mark_running,
    set_posted,
    set_task_id,
    unfinished_jobs,
)
from storage.ledger import Refusal, Shortfall, grant_free_images
from storage.opening import open_database
from storage.periods import PERIODS, Period, period_at
from storage.rates import (
    RateLimit,
    RateStanding,
    ensure_allowed,
    list_rate_limits,
    list_role_free_quotas,
    set_rate_limit,
    set_role_free_quota,
)
from storage.reports import (
    BudgetStatus,
    FreeStatus,
    QuotaStatus,
    UsageRow,
    overrun_total,
    quota_status,
    usage,
)
from storage.settle import (
    ADMIN_REFUND,
    Refund,
    Reservation,
    Settlement,
    accept_job,
    complete_job,
    fail_job,
    refund_job,
)
from storage.targets import Target, parse_target, redact
from storage.user_settings import UserSettings, get_user_settings, set_user_settings

__all__ = [
    "ADMIN_REFUND",
    "ALL_MODELS",
    "PERIODS",
    "AuditEntry",
    "BudgetStatus",
    "Conn",
    "CopyMismatch",
    "CopyReport",
    "Database",
    "DatabaseBusy",
    "DatabaseFull",
    "DatabaseMissing",
    "DatabaseUnavailable",
    "FreePolicy",
    "FreeStatus",
    "GuildConfig",
    "IntegrityViolation",
    "Job",
    "JobNotFound",
    "Listening",
    "MigrationFailed",
    "NewJob",
    "NotADatabase",
    "Period",
    "QuotaRefused",
    "QuotaStatus",
    "RateLimit",
    "RateLimited",
    "RateStanding",
    "Refund",
    "Refusal",
    "Reservation",
    "SameDatabase",
    "SchemaTooNew",
    "Settlement",
    "Shortfall",
    "StorageError",
    "Target",
    "TargetNotEmpty",
    "Team",
    "UnsupportedTarget",
    "UsageRow",
    "UserSettings",
    "accept_job",
    "allowed_channels",
    "audit_log",
    "backup",
    "channel_allowed",
    "check",
    "complete_job",
    "copy_database",
    "ensure_allowed",
    "fail_job",
    "get_guild_config",
    "get_job",
    "get_user_settings",
    "grant_free_images",
    "list_free_quotas",
    "list_jobs",
    "list_rate_limits",
    "list_role_free_quotas",
    "list_teams",
    "mark_running",
    "open_database",
    "overrun_total",
    "parse_target",
    "period_at",
    "quota_status",
    "redact",
    "refund_job",
    "schema_version",
    "set_channel_allowed",
    "set_free_quota",
    "set_guild_budget",
    "set_posted",
    "set_rate_limit",
    "set_role_free_quota",
    "set_task_id",
    "set_team",
    "set_user_cap",
    "set_user_settings",
    "unfinished_jobs",
    "usage",
]
