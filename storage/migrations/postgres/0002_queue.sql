-- PostgreSQL edition of migrations/sqlite/0002_queue.sql: the durable job queue (storage/queue.py) and
-- the provider capacity every process shares. Applied with its schema_version row, under the lock.

ALTER TABLE jobs ADD COLUMN routes TEXT NOT NULL DEFAULT '[]';
ALTER TABLE jobs ADD COLUMN tried TEXT NOT NULL DEFAULT '[]';
ALTER TABLE jobs ADD COLUMN not_before TEXT;
ALTER TABLE jobs ADD COLUMN waiting_reason TEXT;
ALTER TABLE jobs ADD COLUMN pinned_to TEXT;
ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_expires_at TEXT;
ALTER TABLE jobs ADD COLUMN run_started_at TEXT;
ALTER TABLE jobs ADD COLUMN delivery TEXT;
ALTER TABLE jobs ADD COLUMN delivered_at TEXT;
ALTER TABLE jobs ADD COLUMN result_refs TEXT NOT NULL DEFAULT '[]';

CREATE INDEX jobs_leased ON jobs (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE INDEX jobs_untold ON jobs (created_at) WHERE delivered_at IS NULL AND delivery IS NOT NULL;

CREATE TABLE provider_state (
    provider     TEXT    PRIMARY KEY,
    lim          INTEGER NOT NULL CHECK (lim >= 1),
    ceiling      INTEGER NOT NULL CHECK (ceiling >= 1),
    paused_until TEXT,
    probe_after  TEXT,
    busy_total   INTEGER NOT NULL DEFAULT 0,
    updated_at   TEXT    NOT NULL
);

CREATE TABLE roles (
    name       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
