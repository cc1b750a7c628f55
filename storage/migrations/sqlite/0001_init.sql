-- The first schema. Money is integer micro-dollars; times are ISO-8601 UTC text
-- ('2025-01-31T23:59:59.000000Z'), fixed width so that text order is time order.
-- Applied in one transaction together with PRAGMA user_version = 1 (see storage/db.py).

-- Guild-wide money settings. No row = the defaults: budget $0 a month, no per-user cap.
CREATE TABLE guild_config (
    guild_id      INTEGER PRIMARY KEY,
    budget_micros INTEGER NOT NULL DEFAULT 0 CHECK (budget_micros >= 0),
    budget_period TEXT    NOT NULL DEFAULT 'month' CHECK (budget_period IN ('day', 'week', 'month')),
    cap_micros    INTEGER CHECK (cap_micros >= 0),  -- NULL: no per-user spending cap
    cap_period    TEXT    NOT NULL DEFAULT 'month' CHECK (cap_period IN ('day', 'week', 'month')),
    updated_at    TEXT    NOT NULL,
    updated_by    INTEGER
);

-- Free images per user per period, overriding the catalog's Model.free_quota for one guild.
-- model '*' applies to every model of the guild that has no row of its own.
CREATE TABLE free_quota (
    guild_id   INTEGER NOT NULL,
    model      TEXT    NOT NULL,
    images     INTEGER NOT NULL CHECK (images >= 0),
    period     TEXT    NOT NULL CHECK (period IN ('day', 'week', 'month')),
    updated_at TEXT    NOT NULL,
    updated_by INTEGER,
    PRIMARY KEY (guild_id, model)
) WITHOUT ROWID;

-- A guild maps a Discord role to a team with its own budget.
CREATE TABLE teams (
    id            INTEGER PRIMARY KEY,
    guild_id      INTEGER NOT NULL,
    role_id       INTEGER NOT NULL,
    name          TEXT    NOT NULL,
    budget_micros INTEGER NOT NULL CHECK (budget_micros >= 0),
    period        TEXT    NOT NULL DEFAULT 'month' CHECK (period IN ('day', 'week', 'month')),
    updated_at    TEXT    NOT NULL,
    updated_by    INTEGER,
    UNIQUE (guild_id, role_id)
);

-- Every job, from the moment it is accepted (or refused).
CREATE TABLE jobs (
    id                TEXT    PRIMARY KEY,
    created_at        TEXT    NOT NULL,
    updated_at        TEXT    NOT NULL,
    user_id           INTEGER,                     -- NULL: an operator job (CLI without --user)
    guild_id          INTEGER NOT NULL DEFAULT 0,  -- 0: a DM or the CLI without --guild
    channel_id        INTEGER,
    model             TEXT    NOT NULL,
    kind              TEXT    NOT NULL DEFAULT '',
    prompt            TEXT    NOT NULL,
    params            TEXT    NOT NULL DEFAULT '{}',  -- JSON
    meta              TEXT    NOT NULL DEFAULT '{}',  -- JSON: whatever the job service needs to resume
    input_count       INTEGER NOT NULL DEFAULT 0,
    images_requested  INTEGER NOT NULL CHECK (images_requested >= 1),
    price_micros      INTEGER NOT NULL CHECK (price_micros >= 0),  -- per image, of the current route
    estimated_micros  INTEGER NOT NULL CHECK (estimated_micros >= 0),
    status            TEXT    NOT NULL
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'refused', 'cancelled')),
    reservation       TEXT    NOT NULL
        CHECK (reservation IN ('none', 'open', 'settled', 'refunded', 'reversed')),
    charged_to        TEXT,                        -- free | team:<name> | guild | operator; NULL if refused
    team_id           INTEGER REFERENCES teams (id),
    provider          TEXT,
    provider_model    TEXT,
    task_id           TEXT,
    attempts          INTEGER NOT NULL DEFAULT 0,
    started_at        TEXT,
    finished_at       TEXT,
    deadline_at       TEXT    NOT NULL,
    images_delivered  INTEGER NOT NULL DEFAULT 0,
    actual_micros     INTEGER,
    error             TEXT,
    result_urls       TEXT    NOT NULL DEFAULT '[]',  -- JSON
    posted_channel_id INTEGER,
    posted_message_id INTEGER
);
-- Few indexes on purpose: each one is another page written by every job's two transactions.
CREATE INDEX jobs_by_user ON jobs (user_id, created_at);
CREATE INDEX jobs_by_guild ON jobs (guild_id, created_at);
CREATE INDEX jobs_unfinished ON jobs (status) WHERE status IN ('queued', 'running');

-- Append-only: every change to a balance. A row touches one bucket on one UTC day:
--   free:<guild>:<user>:<model>  images used (grant rows add to the limit instead)
--   team:<team id>               micro-dollars spent from the team budget
--   guild:<guild>                micro-dollars spent from the guild budget
--   user:<guild>:<user>          micro-dollars the user spent (the per-user cap)
--   operator                     micro-dollars spent by operator jobs (never limited)
-- A period's figure is the sum of its days, so day, week and month settings all read the same rows
-- (and changing a period setting neither loses nor repeats anything). Settle, refund and reversal
-- rows use the day of the reservation they close: a job accepted before a period boundary and
-- finished after it is counted once, in the period it was accepted in.
CREATE TABLE ledger (
    id           INTEGER PRIMARY KEY,
    at           TEXT    NOT NULL,
    entry        TEXT    NOT NULL
        CHECK (entry IN ('reserve', 'settle', 'overrun', 'refund', 'reversal', 'grant')),
    account      TEXT    NOT NULL CHECK (account IN ('free', 'team', 'guild', 'user', 'operator')),
    bucket       TEXT    NOT NULL,
    day          TEXT    NOT NULL,  -- YYYY-MM-DD, UTC
    guild_id     INTEGER NOT NULL,
    user_id      INTEGER,
    team_id      INTEGER REFERENCES teams (id),
    model        TEXT,
    job_id       TEXT    REFERENCES jobs (id),
    images       INTEGER NOT NULL DEFAULT 0,
    micros       INTEGER NOT NULL DEFAULT 0,
    actor_id     INTEGER,
    note         TEXT
);
CREATE INDEX ledger_by_job ON ledger (job_id);
-- A reservation is closed at most once per bucket: the database itself refuses a second settle.
CREATE UNIQUE INDEX ledger_one_close ON ledger (job_id, bucket) WHERE entry IN ('settle', 'refund');
CREATE UNIQUE INDEX ledger_one_reversal ON ledger (job_id, bucket) WHERE entry = 'reversal';

CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

-- A cache of the ledger's sums per bucket and day, kept by the trigger below in the same
-- transaction, so a reservation reads at most a month of rows instead of all history.
-- `db check` recomputes it from the ledger.
CREATE TABLE balances (
    bucket       TEXT    NOT NULL,
    day          TEXT    NOT NULL,
    images       INTEGER NOT NULL DEFAULT 0,
    micros       INTEGER NOT NULL DEFAULT 0,
    granted      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, day)
) WITHOUT ROWID;

CREATE TRIGGER ledger_to_balances AFTER INSERT ON ledger
BEGIN
    INSERT INTO balances (bucket, day, images, micros, granted)
    VALUES (
        NEW.bucket,
        NEW.day,
        CASE WHEN NEW.entry = 'grant' THEN 0 ELSE NEW.images END,
        NEW.micros,
        CASE WHEN NEW.entry = 'grant' THEN NEW.images ELSE 0 END
    )
    ON CONFLICT (bucket, day) DO UPDATE SET
        images = images + excluded.images,
        micros = micros + excluded.micros,
        granted = granted + excluded.granted;
END;

-- Who changed which setting, and when.
CREATE TABLE audit (
    id       INTEGER PRIMARY KEY,
    at       TEXT    NOT NULL,
    actor_id INTEGER,
    guild_id INTEGER,
    action   TEXT    NOT NULL,
    details  TEXT    NOT NULL DEFAULT '{}'  -- JSON
);

-- Channels where the bot may be used. No row for a guild: every channel.
CREATE TABLE guild_channels (
    guild_id   INTEGER NOT NULL,
    channel_id INTEGER NOT NULL,
    added_at   TEXT    NOT NULL,
    added_by   INTEGER,
    PRIMARY KEY (guild_id, channel_id)
) WITHOUT ROWID;

CREATE TABLE user_settings (
    user_id         INTEGER PRIMARY KEY,
    default_model   TEXT,
    aspect_ratio    TEXT,
    private_results INTEGER NOT NULL DEFAULT 0 CHECK (private_results IN (0, 1)),
    updated_at      TEXT    NOT NULL
);
