-- Seed for docker compose: PostgreSQL's image runs this once, when it initialises an empty data
-- volume (files in /docker-entrypoint-initdb.d run in name order). `docker compose down -v`
-- removes the volume, so the next `up` seeds again.
--
-- The table is the seed's `images` table exactly as the first migration
-- (imagebatch/core/migrations/0001_initial.sql) creates it; both use CREATE TABLE IF NOT EXISTS,
-- so the api's and the worker's migrations at start-up adopt it and only add what is missing.
CREATE TABLE IF NOT EXISTS images (
    id         BIGSERIAL PRIMARY KEY,
    url        TEXT        NOT NULL,
    processed  BOOLEAN     NOT NULL DEFAULT false
);

-- 300 photos from the compose stack's `samples` service (imagebatch.devservers.samples), which
-- renders a deterministic 1024x768 JPEG for each name. `POST /enqueue?limit=N` on the api, or an
-- ImageBatch with `source.postgres`, turns unprocessed rows into jobs.
INSERT INTO images (url)
SELECT format('http://samples:8765/samples/photo-%s.jpg', lpad(n::text, 4, '0'))
FROM generate_series(1, 300) AS n
ORDER BY n;
