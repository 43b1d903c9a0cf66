-- Each time a batch ends (Succeeded or Failed; a retried batch ends again), what the operator
-- still owes it: the manifest, and the notification of spec.notify. Kept here so that an
-- operator restarted at any moment neither forgets an ending nor takes it for a new one: the
-- row's id is the CloudEvent's id, the same on every attempt to deliver it.
CREATE TABLE IF NOT EXISTS batch_endings (
    id               TEXT        PRIMARY KEY,          -- the ending's id (the CloudEvent id)
    batch            TEXT        NOT NULL,             -- '<namespace>/<name>'
    uid              TEXT        NOT NULL,             -- metadata.uid of the resource
    ending           TEXT        NOT NULL,             -- completionTime and the last retry request
    phase            TEXT        NOT NULL,             -- Succeeded | Failed
    manifest         TEXT,                             -- where it was written, once it was
    manifest_error   TEXT,
    notified_at      TIMESTAMPTZ,                      -- the receiver accepted the event
    notify_attempts  INTEGER     NOT NULL DEFAULT 0,
    notify_error     TEXT,                             -- the last attempt's failure
    notify_gave_up   BOOLEAN     NOT NULL DEFAULT false,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (batch, uid, ending)
);
