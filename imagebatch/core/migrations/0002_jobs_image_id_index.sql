-- Jobs by the seed row they process: /enqueue skips rows that any pending or processing job
-- (its own, or a batch item of the operator's) already covers, without scanning all jobs.
CREATE INDEX IF NOT EXISTS jobs_image_id_idx ON jobs (image_id) WHERE image_id IS NOT NULL;
