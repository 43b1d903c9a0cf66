-- GET /images with an authenticating AUTH_MODE lists the caller's own jobs, newest first, and
-- counts them by state: an index over the rows that have a caller (tasks and uploads; never the
-- seed's rows or batch items, so it stays small however large the batches are).
CREATE INDEX IF NOT EXISTS jobs_caller_recent_idx
    ON jobs (caller, created_at DESC, id DESC) WHERE caller IS NOT NULL;
