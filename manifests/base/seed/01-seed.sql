-- Seed for the dev cluster's PostgreSQL (manifests/base/postgres.yaml mounts it, through the
-- postgres-seed ConfigMap, into /docker-entrypoint-initdb.d; it runs once, on an empty volume).
-- The same as db/init/01-seed.sql for docker compose except for the sample server's address,
-- which is fully qualified here so workers in any namespace resolve it.
--
-- The table is the seed's `images` table exactly as the first migration
-- (imagebatch/core/migrations/0001_initial.sql) creates it; both use CREATE TABLE IF NOT EXISTS,
-- so the api's and the worker's migrations at start-up adopt it and only add what is missing.
CREATE TABLE IF NOT EXISTS images (
    id         BIGSERIAL PRIMARY KEY,
    url        TEXT        NOT NULL,
    processed  BOOLEAN     NOT NULL DEFAULT false
);

-- 300 photos from the cluster's `samples` service (imagebatch.devservers.samples), which
-- renders a deterministic 1024x768 JPEG for each name. `POST /enqueue?limit=N` on the api, or an
-- ImageBatch with `source.postgres`, turns unprocessed rows into jobs.
INSERT INTO images (url)
SELECT format('http://samples.imagebatch.svc.cluster.local:8765/samples/photo-%s.jpg', lpad(n::text, 4, '0'))
FROM generate_series(1, 300) AS n
ORDER BY n;
