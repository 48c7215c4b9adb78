-- Datasets, jobs, their epoch history and checkpoints, and models: the PostgreSQL twin of
-- migrations/sqlite/0001_init.sql (same version, same columns, native types).
-- Times are Unix milliseconds (bigint), as in SQLite, so records read the same from both;
-- JSON columns are jsonb, blobs bytea, and `seq` orders listings and pages them.

CREATE TABLE datasets (
    seq           bigserial PRIMARY KEY,
    id            uuid NOT NULL UNIQUE,
    name          text NOT NULL,
    created_at    bigint NOT NULL,
    rows          bigint NOT NULL,
    inputs        bigint NOT NULL,
    outputs       bigint NOT NULL,
    meta          jsonb NOT NULL,     -- feature names, target names, classes, target kind
    size_bytes    bigint NOT NULL,
    data          bytea NOT NULL
);

CREATE TABLE jobs (
    seq           bigserial PRIMARY KEY,
    id            uuid NOT NULL UNIQUE,
    status        text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    priority      integer NOT NULL DEFAULT 0,
    dataset_id    uuid,               -- not a foreign key: deleting a dataset keeps its jobs' records
    spec          jsonb NOT NULL,
    epochs        bigint NOT NULL,
    epoch         bigint NOT NULL DEFAULT 0,
    latest        jsonb,              -- the last epoch record
    created_at    bigint NOT NULL,
    started_at    bigint,
    finished_at   bigint,
    model_id      uuid,
    error         jsonb,              -- a problem document
    stop_reason   text,
    attempt       bigint NOT NULL DEFAULT 0,
    worker        text,
    lease_expires_at bigint,          -- the database's clock, so nodes' clocks need not agree
    cancel_requested boolean NOT NULL DEFAULT false,
    stop_requested   boolean NOT NULL DEFAULT false
);
CREATE INDEX jobs_queue ON jobs (status, priority DESC, seq);

CREATE TABLE epochs (
    job_id        uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    epoch         bigint NOT NULL,
    record        jsonb NOT NULL,
    PRIMARY KEY (job_id, epoch)
);

CREATE TABLE checkpoints (
    job_id        uuid PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    epoch         bigint NOT NULL,
    state         bytea NOT NULL,
    saved_at      bigint NOT NULL
);

CREATE TABLE models (
    seq           bigserial PRIMARY KEY,
    id            uuid NOT NULL UNIQUE,
    name          text,
    created_at    bigint NOT NULL,
    job_id        uuid,
    dataset_id    uuid,
    input_dim     bigint NOT NULL,
    output_dim    bigint NOT NULL,
    parameter_count bigint NOT NULL,
    metrics       jsonb NOT NULL,
    document      jsonb NOT NULL
);
