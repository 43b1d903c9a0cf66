-- Our own dependencies that workers found unavailable while working on a batch (the output
-- store, a full disk): the operator shows them as the batch's Degraded condition. A row is
-- refreshed while the outage lasts and removed by the first success after it; a row nobody
-- refreshed for a while (its worker died) is ignored by readers.
CREATE TABLE IF NOT EXISTS batch_outages (
    batch TEXT NOT NULL,
    dependency TEXT NOT NULL,
    reason TEXT NOT NULL,
    since TIMESTAMPTZ NOT NULL DEFAULT now(),
    seen TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (batch, dependency)
);
