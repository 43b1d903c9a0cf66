-- The seed's table, kept compatible: producers and the docker-compose seed insert into it directly.
CREATE TABLE IF NOT EXISTS images (
    id         BIGSERIAL PRIMARY KEY,
    url        TEXT        NOT NULL,
    processed  BOOLEAN     NOT NULL DEFAULT false
);
ALTER TABLE images ADD COLUMN IF NOT EXISTS created_at TIMESTAMPTZ NOT NULL DEFAULT now();
CREATE INDEX IF NOT EXISTS images_unprocessed_idx ON images (id) WHERE NOT processed;

-- One row per unit of work, whoever asked for it: a seed row (/enqueue), a batch item, a single
-- task (POST /tasks) or an upload. Workers record every outcome here before they ack.
CREATE TABLE IF NOT EXISTS jobs (
    id               TEXT        PRIMARY KEY,
    kind             TEXT        NOT NULL CHECK (kind IN ('image', 'batch', 'task', 'upload')),
    url              TEXT        NOT NULL,
    ops              JSONB       NOT NULL DEFAULT '[]',
    batch            TEXT,
    image_id         BIGINT      REFERENCES images (id) ON DELETE SET NULL,
    status           TEXT        NOT NULL DEFAULT 'pending'
                                 CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    attempts         INTEGER     NOT NULL DEFAULT 0,
    outputs          JSONB       NOT NULL DEFAULT '[]',
    source_bytes     BIGINT,
    source_width     INTEGER,
    source_height    INTEGER,
    error            TEXT,
    idempotency_key  TEXT        UNIQUE,
    request_hash     TEXT,
    published_at     TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at       TIMESTAMPTZ,
    completed_at     TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS jobs_batch_status_idx ON jobs (batch, status) WHERE batch IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_created_idx ON jobs (created_at DESC);

-- Originals received by POST /uploads; the worker thumbnails them through a job of kind 'upload'.
CREATE TABLE IF NOT EXISTS uploads (
    id            TEXT        PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    filename      TEXT,
    content_type  TEXT        NOT NULL,
    bytes         BIGINT      NOT NULL,
    path          TEXT        NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
