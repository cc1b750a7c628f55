-- PostgreSQL edition of migrations/sqlite/0003_overrun.sql: a provider's reported cost above the
-- reservation is not charged; the excess is recorded per job. Applied with its schema_version row.

ALTER TABLE jobs ADD COLUMN overrun_micros BIGINT NOT NULL DEFAULT 0 CHECK (overrun_micros >= 0);
