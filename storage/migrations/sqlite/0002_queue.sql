-- The durable job queue (storage/queue.py): a queued job waits here until a worker claims it under a
-- lease; the provider capacity learned from "too many tasks" answers is shared by every process.
-- Applied in one transaction together with PRAGMA user_version = 2.

ALTER TABLE jobs ADD COLUMN routes TEXT NOT NULL DEFAULT '[]';  -- JSON: [{provider, model, price}] in order
ALTER TABLE jobs ADD COLUMN tried TEXT NOT NULL DEFAULT '[]';   -- JSON: providers that failed it
ALTER TABLE jobs ADD COLUMN not_before TEXT;                     -- not claimed before (busy back-off)
ALTER TABLE jobs ADD COLUMN waiting_reason TEXT;                 -- e.g. provider_busy:wavespeed
ALTER TABLE jobs ADD COLUMN pinned_to TEXT;                      -- only this worker may run it
ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_expires_at TEXT;
ALTER TABLE jobs ADD COLUMN run_started_at TEXT;                 -- the current (or last) attempt began
ALTER TABLE jobs ADD COLUMN delivery TEXT;                       -- JSON: where the member sees it (Discord)
ALTER TABLE jobs ADD COLUMN delivered_at TEXT;                   -- the member was shown how it ended
ALTER TABLE jobs ADD COLUMN result_refs TEXT NOT NULL DEFAULT '[]';  -- JSON: stored images until delivered

CREATE INDEX jobs_leased ON jobs (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE INDEX jobs_untold ON jobs (created_at) WHERE delivered_at IS NULL AND delivery IS NOT NULL;

CREATE TABLE provider_state (
    provider     TEXT    PRIMARY KEY,
    lim          INTEGER NOT NULL CHECK (lim >= 1),     -- jobs sent at once (learned)
    ceiling      INTEGER NOT NULL CHECK (ceiling >= 1), -- the configured max_concurrency
    paused_until TEXT,                                  -- Retry-After: nothing sent before
    probe_after  TEXT,                                  -- no growth before
    busy_total   INTEGER NOT NULL DEFAULT 0,
    updated_at   TEXT    NOT NULL
);

-- Roles one process plays at a time (the waiting-room painter, the report poster).
CREATE TABLE roles (
    name       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
