-- PostgreSQL edition of migrations/sqlite/0006_overrun.sql: a provider's reported cost above the
-- reservation is not charged; the excess is recorded per job. Applied with its schema_version row.

ALTER TABLE jobs ADD COLUMN overrun_micros BIGINT NOT NULL DEFAULT 0 CHECK (overrun_micros >= 0);

-- The usage report sums the overrun too: the covering index of 0005 takes the column, so a guild's
-- report is still read from the index alone.
DROP INDEX jobs_guild_usage;
CREATE INDEX jobs_guild_usage ON jobs (guild_id, created_at)
    INCLUDE (status, user_id, charged_to, model, images_delivered, actual_micros, overrun_micros);

-- Budget alerts announce overruns (storage/alerts.py): they are read from the jobs now, not from
-- ledger rows (an overrun is no longer charged, so no ledger row records it).
DROP INDEX ledger_overruns;
CREATE INDEX jobs_overruns ON jobs (guild_id, finished_at) WHERE overrun_micros > 0;
