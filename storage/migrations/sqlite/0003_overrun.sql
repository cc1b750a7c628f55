-- A provider's reported cost above the job's reservation: the job is charged at most what was
-- reserved (which the budget and the member's cap allowed), and the excess is recorded here, for the
-- admin to see, instead of being charged. actual_micros keeps the provider's whole figure, so
-- a settled job's money buckets hold actual_micros - overrun_micros (`db check`).
-- Applied in one transaction together with PRAGMA user_version = 3.

ALTER TABLE jobs ADD COLUMN overrun_micros INTEGER NOT NULL DEFAULT 0 CHECK (overrun_micros >= 0);
