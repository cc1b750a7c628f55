-- PostgreSQL edition of migrations/sqlite/0004_rate_limits.sql: rate limits and per-role free
-- allowances (storage/rates.py). Applied with its schema_version row, under the lock.

CREATE TABLE rate_limits (
    guild_id   BIGINT  NOT NULL,
    role_id    BIGINT  NOT NULL,
    jobs       INTEGER NOT NULL CHECK (jobs >= 1),
    window_s   INTEGER NOT NULL CHECK (window_s >= 60),
    updated_at TEXT    NOT NULL,
    updated_by BIGINT,
    PRIMARY KEY (guild_id, role_id)
);

CREATE TABLE role_free_quota (
    guild_id   BIGINT  NOT NULL,
    role_id    BIGINT  NOT NULL,
    model      TEXT    NOT NULL,
    images     INTEGER NOT NULL CHECK (images >= 0),
    period     TEXT    NOT NULL CHECK (period IN ('day', 'week', 'month')),
    updated_at TEXT    NOT NULL,
    updated_by BIGINT,
    PRIMARY KEY (guild_id, role_id, model)
);

CREATE INDEX jobs_member_recent ON jobs (user_id, guild_id, created_at, status);
