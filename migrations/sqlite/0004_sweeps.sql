-- Issue 14: a succeeded job's final training state (so that it can be continued for more
-- epochs exactly as a checkpoint resumes), a job's learning-rate range test
-- ("learning_rate": "auto"), and sweeps with their trials (each trial an ordinary job).
-- New tables only: rows of earlier releases read as before.

CREATE TABLE final_states (
    job_id        TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    epoch         INTEGER NOT NULL,
    state         BLOB NOT NULL
);

CREATE TABLE lr_range_tests (
    job_id        TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    result        TEXT NOT NULL       -- the curve, the suggestions and the rate chosen
);

CREATE TABLE sweeps (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    tenant        TEXT NOT NULL,
    dataset_id    TEXT NOT NULL,      -- a dataset an unfinished sweep uses is not deleted
    status        TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    spec          TEXT NOT NULL,      -- base spec, search space, method, seed, budget
    best          TEXT,
    created_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sweeps_tenant ON sweeps (tenant, seq);
CREATE INDEX sweeps_status ON sweeps (status);

CREATE TABLE sweep_trials (
    sweep_id      TEXT NOT NULL REFERENCES sweeps (id) ON DELETE CASCADE,
    trial         INTEGER NOT NULL,
    rung          INTEGER NOT NULL,   -- successive halving's round; a promoted trial continues its job
    job_id        TEXT NOT NULL,
    params        TEXT NOT NULL,
    PRIMARY KEY (sweep_id, trial, rung)
);
