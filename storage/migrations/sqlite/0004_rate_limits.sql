-- Rate limits and per-role free allowances (storage/rates.py). Applied in one transaction together
-- with PRAGMA user_version = 4.

-- At most ``jobs`` accepted jobs per member in any rolling ``window_s`` seconds. role_id 0 is the
-- guild-wide limit: it applies to members none of whose roles has a limit of its own.
CREATE TABLE rate_limits (
    guild_id   INTEGER NOT NULL,
    role_id    INTEGER NOT NULL,
    jobs       INTEGER NOT NULL CHECK (jobs >= 1),
    window_s   INTEGER NOT NULL CHECK (window_s >= 60),
    updated_at TEXT    NOT NULL,
    updated_by INTEGER,
    PRIMARY KEY (guild_id, role_id)
) WITHOUT ROWID;

-- Free images per member per period for members holding a role, in place of the guild's free_quota
-- (the most generous of a member's roles wins). model '*': every model without a row of its own.
CREATE TABLE role_free_quota (
    guild_id   INTEGER NOT NULL,
    role_id    INTEGER NOT NULL,
    model      TEXT    NOT NULL,
    images     INTEGER NOT NULL CHECK (images >= 0),
    period     TEXT    NOT NULL CHECK (period IN ('day', 'week', 'month')),
    updated_at TEXT    NOT NULL,
    updated_by INTEGER,
    PRIMARY KEY (guild_id, role_id, model)
) WITHOUT ROWID;

-- A member's recent jobs in one guild, counted without reading the rows (the rate check).
CREATE INDEX jobs_member_recent ON jobs (user_id, guild_id, created_at, status);
