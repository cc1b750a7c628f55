-- A provider's reported cost above the job's reservation: the job is charged at most what was
-- reserved (which the budget and the member's cap allowed), and the excess is recorded here, for the
-- admin to see, instead of being charged. actual_micros keeps the provider's whole figure, so
-- a settled job's money buckets hold actual_micros - overrun_micros (`db check`).
-- Applied in one transaction together with PRAGMA user_version = 6.

ALTER TABLE jobs ADD COLUMN overrun_micros INTEGER NOT NULL DEFAULT 0 CHECK (overrun_micros >= 0);

-- The usage report sums the overrun too: the covering index of 0005 takes the column, so a guild's
-- report is still read from the index alone.
DROP INDEX jobs_guild_usage;
CREATE INDEX jobs_guild_usage ON jobs
    (guild_id, created_at, status, user_id, charged_to, model, images_delivered, actual_micros, overrun_micros);

-- Budget alerts announce overruns (storage/alerts.py): they are read from the jobs now, not from
-- ledger rows (an overrun is no longer charged, so no ledger row records it).
DROP INDEX ledger_overruns;
CREATE INDEX jobs_overruns ON jobs (guild_id, finished_at) WHERE overrun_micros > 0;
