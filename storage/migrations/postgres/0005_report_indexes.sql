-- Reports at scale (issue 14): indexes that the report and history queries of storage/reports.py
-- and storage/jobs.py use whole, so a guild's month and a member's history read only their rows.

-- A guild's usage over a time range, grouped by user, team, model or day: an index-only scan (the
-- summed columns are INCLUDEd). It replaces jobs_by_guild, a prefix of it.
DROP INDEX jobs_by_guild;
CREATE INDEX jobs_guild_usage ON jobs (guild_id, created_at)
    INCLUDE (status, user_id, charged_to, model, images_delivered, actual_micros);

-- A member's history in one guild, newest first (ties on created_at broken by id), and a user's
-- across guilds: both orders come straight off the index, LIMIT stops the scan at once.
DROP INDEX jobs_by_user;
CREATE INDEX jobs_by_user ON jobs (user_id, created_at, id);
CREATE INDEX jobs_by_member ON jobs (guild_id, user_id, created_at, id);
