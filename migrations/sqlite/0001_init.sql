-- Datasets, jobs, their epoch history and checkpoints, and models.
-- Times are Unix milliseconds; JSON columns hold documents the API returns as they are.

CREATE TABLE datasets (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    rows          INTEGER NOT NULL,
    inputs        INTEGER NOT NULL,
    outputs       INTEGER NOT NULL,
    meta          TEXT NOT NULL,      -- feature names, target names, classes, target kind
    size_bytes    INTEGER NOT NULL,
    data          BLOB NOT NULL
);

CREATE TABLE jobs (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    status        TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    priority      INTEGER NOT NULL DEFAULT 0,
    dataset_id    TEXT,               -- not a foreign key: deleting a dataset keeps its jobs' records
    spec          TEXT NOT NULL,
    epochs        INTEGER NOT NULL,
    epoch         INTEGER NOT NULL DEFAULT 0,
    latest        TEXT,               -- the last epoch record
    created_at    INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER,
    model_id      TEXT,
    error         TEXT,               -- a problem document
    stop_reason   TEXT,
    attempt       INTEGER NOT NULL DEFAULT 0,
    worker        TEXT,
    lease_expires_at INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    stop_requested   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_queue ON jobs (status, priority DESC, seq);

CREATE TABLE epochs (
    job_id        TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    epoch         INTEGER NOT NULL,
    record        TEXT NOT NULL,
    PRIMARY KEY (job_id, epoch)
);

CREATE TABLE checkpoints (
    job_id        TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    epoch         INTEGER NOT NULL,
    state         BLOB NOT NULL,
    saved_at      INTEGER NOT NULL
);

CREATE TABLE models (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    name          TEXT,
    created_at    INTEGER NOT NULL,
    job_id        TEXT,
    dataset_id    TEXT,
    input_dim     INTEGER NOT NULL,
    output_dim    INTEGER NOT NULL,
    parameter_count INTEGER NOT NULL,
    metrics       TEXT NOT NULL,
    document      TEXT NOT NULL
);
