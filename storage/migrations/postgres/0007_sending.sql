-- PostgreSQL edition of migrations/sqlite/0007_sending.sql.
-- When a worker began sending a job to its provider (this attempt). A worker that dies before it
-- sends leaves a job no provider has seen: recovery puts it back in line instead of refunding it.
-- Set just before the submit, cleared when a worker claims the job again (storage/queue.py).
ALTER TABLE jobs ADD COLUMN sending_at TEXT;

-- Jobs running under an older release when this one starts: nothing says whether they were sent,
-- so they count as sent (refunded if their worker died, as the older release did; never sent twice).
UPDATE jobs SET sending_at = updated_at WHERE status = 'running' AND task_id IS NULL;
