-- Budget alerts and period reports (storage/alerts.py): where a guild wants them, and every alert or
-- report claimed for posting, once per key, so that no restart and no second process posts it twice.
-- Applied in one transaction together with PRAGMA user_version = 3.

CREATE TABLE alert_settings (
    guild_id     INTEGER PRIMARY KEY,
    channel_id   INTEGER,                       -- NULL: alerts and reports are off
    thresholds   TEXT    NOT NULL DEFAULT '',   -- percentages of a budget, rising: '50,80,100' ('' none)
    report       TEXT    NOT NULL DEFAULT 'off' CHECK (report IN ('off', 'weekly', 'monthly')),
    alerts_since TEXT,                          -- alerts were turned on then (older overruns are history)
    report_since TEXT,                          -- reports were turned on then: periods ending later are reported
    updated_at   TEXT    NOT NULL,
    updated_by   INTEGER
);

-- One row per alert or report: claimed (sent_at NULL) by one process, then marked sent. A claim whose
-- poster died is taken over after a while; the key itself can never be claimed twice at once.
CREATE TABLE alerts_sent (
    guild_id     INTEGER NOT NULL,
    subject      TEXT    NOT NULL,  -- 'guild', 'team:<id>', 'overrun:<job id>', 'report:weekly|monthly'
    period_start TEXT    NOT NULL,  -- the budget's or report's period; the overrun's time
    threshold    INTEGER NOT NULL,  -- percent of the budget; 0 for overruns and reports
    claimed_by   TEXT    NOT NULL,
    claimed_at   TEXT    NOT NULL,
    sent_at      TEXT,
    channel_id   INTEGER,
    message_id   INTEGER,           -- NULL once sent: Discord refused the channel (logged)
    PRIMARY KEY (guild_id, subject, period_start, threshold)
);

-- The alert checker's look for new overruns: a few rows, never a scan of the ledger.
CREATE INDEX ledger_overruns ON ledger (guild_id, at) WHERE entry = 'overrun';
