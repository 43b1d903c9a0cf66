-- A batch's items in id order, for GET /batches/{name}/items (keyset pages, optionally of one
-- status) and for the manifest (every item through a cursor): each page reads `limit` index
-- entries wherever it starts. The ids are ordered bytewise (COLLATE "C"), which the primary key
-- cannot serve: otherwise PostgreSQL may walk the primary key and filter on `batch`, reading
-- every row of the batches whose ids sort first. (batch, status, id) also answers everything
-- the (batch, status) index of 0001 did, so that one goes.
CREATE INDEX IF NOT EXISTS jobs_batch_id_idx
    ON jobs (batch, id COLLATE "C") WHERE batch IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_batch_status_id_idx
    ON jobs (batch, status, id COLLATE "C") WHERE batch IS NOT NULL;
DROP INDEX IF EXISTS jobs_batch_status_idx;
