-- Why items failed, for programs: the code dead-lettering puts in the message headers
-- (`x-imagebatch-code`: http_404, not_an_image, retries_exhausted...), kept beside the free-text
-- `error`. Rows failed before this migration have none and count as 'unknown'.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS error_code TEXT;

-- A batch's failed items per reason code, kept by the same statement triggers as batch_counts
-- (migration 0002), so that `status.failureReasons` is a read of a few rows per refresh, not a
-- count over the batch's failed items.
CREATE TABLE IF NOT EXISTS batch_failures (
    batch  TEXT   NOT NULL,
    code   TEXT   NOT NULL,
    count  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (batch, code)
);

-- The last `imagejobs.io/retry-failed` value acted on, written in the transaction that sends the
-- failed items back to work: a value is acted on once, across operator restarts.
ALTER TABLE batches ADD COLUMN IF NOT EXISTS retry_request TEXT;
ALTER TABLE batches ADD COLUMN IF NOT EXISTS retry_items BIGINT;
ALTER TABLE batches ADD COLUMN IF NOT EXISTS retried_at TIMESTAMPTZ;

CREATE OR REPLACE FUNCTION batch_failures_apply(deltas jsonb) RETURNS void LANGUAGE sql AS $$
    INSERT INTO batch_failures AS f (batch, code, count)
    SELECT d.batch, d.code, d.count
      FROM jsonb_to_recordset(deltas) AS d(batch text, code text, count bigint)
     ORDER BY d.batch, d.code  -- one lock order for every writer
    ON CONFLICT (batch, code) DO UPDATE SET count = f.count + EXCLUDED.count
$$;

CREATE OR REPLACE FUNCTION batch_counts_track() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    deltas jsonb;
    failures jsonb;
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
        SELECT jsonb_agg(row_to_json(s)) INTO failures FROM (
            SELECT batch, coalesce(error_code, 'unknown') AS code, count(*) AS count
              FROM new_rows WHERE batch IS NOT NULL AND status = 'failed' GROUP BY 1, 2) s;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT jsonb_agg(row_to_json(s)) INTO deltas FROM (
            SELECT batch, -count(*) AS total, -count(published_at) AS published,
                   -count(*) FILTER (WHERE status = 'pending') AS pending,
                   -count(*) FILTER (WHERE status = 'processing') AS processing,
                   -count(*) FILTER (WHERE status = 'completed') AS completed,
                   -count(*) FILTER (WHERE status = 'failed') AS failed,
                   -sum(greatest(attempts - 1, 0)) AS retried
              FROM old_rows WHERE batch IS NOT NULL GROUP BY batch) s;
        SELECT jsonb_agg(row_to_json(s)) INTO failures FROM (
            SELECT batch, coalesce(error_code, 'unknown') AS code, -count(*) AS count
              FROM old_rows WHERE batch IS NOT NULL AND status = 'failed' GROUP BY 1, 2) s;
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
        SELECT jsonb_agg(row_to_json(s)) INTO failures FROM (
            SELECT batch, code, sum(sign) AS count
              FROM (SELECT 1 AS sign, batch, coalesce(error_code, 'unknown') AS code
                      FROM new_rows WHERE batch IS NOT NULL AND status = 'failed'
                    UNION ALL
                    SELECT -1, batch, coalesce(error_code, 'unknown')
                      FROM old_rows WHERE batch IS NOT NULL AND status = 'failed') changed
             GROUP BY batch, code HAVING sum(sign) <> 0) s;
    END IF;
    IF deltas IS NOT NULL THEN
        PERFORM batch_counts_apply(deltas);
    END IF;
    IF failures IS NOT NULL THEN
        PERFORM batch_failures_apply(failures);
    END IF;
    RETURN NULL;
END $$;

-- Count the failures that exist now, with writers waiting, as 0002 counted the rest.
LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE;
INSERT INTO batch_failures (batch, code, count)
SELECT batch, coalesce(error_code, 'unknown'), count(*)
  FROM jobs WHERE batch IS NOT NULL AND status = 'failed' GROUP BY 1, 2
ON CONFLICT (batch, code) DO NOTHING;
