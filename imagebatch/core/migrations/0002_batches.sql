-- What the operator keeps about each ImageBatch it runs, so that a restart at any moment resumes
-- from here: which incarnation of the name the items belong to, and how far the source table has
-- been read (keyset pagination: the last source key turned into an item).
CREATE TABLE IF NOT EXISTS batches (
    batch            TEXT        PRIMARY KEY,          -- '<namespace>/<name>'
    uid              TEXT        NOT NULL,             -- metadata.uid of the resource
    source_cursor    BIGINT,                           -- last source key materialized
    materialized     BIGINT      NOT NULL DEFAULT 0,   -- source rows taken so far
    materialized_at  TIMESTAMPTZ,                      -- set once every item exists
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Items per batch and state, kept by the triggers below so that a status refresh reads one row
-- instead of counting a batch's (up to 10,000,000) rows. The triggers are per statement, with
-- transition tables: a worker's batched claim or completion statement adds one delta per batch,
-- not one per row.
CREATE TABLE IF NOT EXISTS batch_counts (
    batch       TEXT   PRIMARY KEY,
    total       BIGINT NOT NULL DEFAULT 0,
    published   BIGINT NOT NULL DEFAULT 0,
    pending     BIGINT NOT NULL DEFAULT 0,
    processing  BIGINT NOT NULL DEFAULT 0,
    completed   BIGINT NOT NULL DEFAULT 0,
    failed      BIGINT NOT NULL DEFAULT 0,
    retried     BIGINT NOT NULL DEFAULT 0   -- deliveries beyond the first: sum(attempts - 1)
);

CREATE OR REPLACE FUNCTION batch_counts_apply(deltas jsonb) RETURNS void LANGUAGE sql AS $$
    INSERT INTO batch_counts AS c
        (batch, total, published, pending, processing, completed, failed, retried)
    SELECT d.batch, d.total, d.published, d.pending, d.processing, d.completed, d.failed, d.retried
      FROM jsonb_to_recordset(deltas) AS d(batch text, total bigint, published bigint,
           pending bigint, processing bigint, completed bigint, failed bigint, retried bigint)
     ORDER BY d.batch  -- one lock order for every writer: no deadlocks between statements
    ON CONFLICT (batch) DO UPDATE SET
        total = c.total + EXCLUDED.total,
        published = c.published + EXCLUDED.published,
        pending = c.pending + EXCLUDED.pending,
        processing = c.processing + EXCLUDED.processing,
        completed = c.completed + EXCLUDED.completed,
        failed = c.failed + EXCLUDED.failed,
        retried = c.retried + EXCLUDED.retried
$$;

CREATE OR REPLACE FUNCTION batch_counts_track() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    deltas jsonb;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT jsonb_agg(row_to_json(s)) INTO deltas FROM (
            SELECT batch, count(*) AS total, count(published_at) AS published,
                   count(*) FILTER (WHERE status = 'pending') AS pending,
                   count(*) FILTER (WHERE status = 'processing') AS processing,
                   count(*) FILTER (WHERE status = 'completed') AS completed,
                   count(*) FILTER (WHERE status = 'failed') AS failed,
                   sum(greatest(attempts - 1, 0)) AS retried
              FROM new_rows WHERE batch IS NOT NULL GROUP BY batch) s;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT jsonb_agg(row_to_json(s)) INTO deltas FROM (
            SELECT batch, -count(*) AS total, -count(published_at) AS published,
                   -count(*) FILTER (WHERE status = 'pending') AS pending,
                   -count(*) FILTER (WHERE status = 'processing') AS processing,
                   -count(*) FILTER (WHERE status = 'completed') AS completed,
                   -count(*) FILTER (WHERE status = 'failed') AS failed,
                   -sum(greatest(attempts - 1, 0)) AS retried
              FROM old_rows WHERE batch IS NOT NULL GROUP BY batch) s;
    ELSE
        SELECT jsonb_agg(row_to_json(s)) INTO deltas FROM (
            SELECT batch, sum(sign) AS total,
                   sum(sign * (published_at IS NOT NULL)::int) AS published,
                   sum(sign * (status = 'pending')::int) AS pending,
                   sum(sign * (status = 'processing')::int) AS processing,
                   sum(sign * (status = 'completed')::int) AS completed,
                   sum(sign * (status = 'failed')::int) AS failed,
                   sum(sign * greatest(attempts - 1, 0)) AS retried
              FROM (SELECT 1 AS sign, batch, published_at, status, attempts FROM new_rows
                    UNION ALL
                    SELECT -1, batch, published_at, status, attempts FROM old_rows) changed
             WHERE batch IS NOT NULL GROUP BY batch) s;
    END IF;
    IF deltas IS NOT NULL THEN
        PERFORM batch_counts_apply(deltas);
    END IF;
    RETURN NULL;
END $$;

-- Count what exists now and install the triggers in one step: writers wait meanwhile, so no
-- change is counted twice or missed.
LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE;
INSERT INTO batch_counts (batch, total, published, pending, processing, completed, failed, retried)
SELECT batch, count(*), count(published_at),
       count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'processing'),
       count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'failed'),
       sum(greatest(attempts - 1, 0))
  FROM jobs WHERE batch IS NOT NULL GROUP BY batch
ON CONFLICT (batch) DO NOTHING;

DROP TRIGGER IF EXISTS jobs_batch_counts_insert ON jobs;
DROP TRIGGER IF EXISTS jobs_batch_counts_update ON jobs;
DROP TRIGGER IF EXISTS jobs_batch_counts_delete ON jobs;
CREATE TRIGGER jobs_batch_counts_insert AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION batch_counts_track();
CREATE TRIGGER jobs_batch_counts_update AFTER UPDATE ON jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION batch_counts_track();
CREATE TRIGGER jobs_batch_counts_delete AFTER DELETE ON jobs
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION batch_counts_track();

-- The operator publishes a batch's items in id order from those not yet published; this index
-- holds only those, so it shrinks as publishing goes on.
CREATE INDEX IF NOT EXISTS jobs_batch_unpublished_idx
    ON jobs (batch, id) WHERE published_at IS NULL AND batch IS NOT NULL;
