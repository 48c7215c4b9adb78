-- Issue 14: a succeeded job's final training state (so that it can be continued for more
-- epochs exactly as a checkpoint resumes), a job's learning-rate range test
-- ("learning_rate": "auto"), and sweeps with their trials (each trial an ordinary job).
-- The PostgreSQL twin of migrations/sqlite/0004_sweeps.sql. New tables only: rows of
-- earlier releases read as before.

CREATE TABLE final_states (
    job_id        uuid PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    epoch         bigint NOT NULL,
    state         bytea NOT NULL
);

CREATE TABLE lr_range_tests (
    job_id        uuid PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    result        jsonb NOT NULL      -- the curve, the suggestions and the rate chosen
);

CREATE TABLE sweeps (
    seq           bigserial PRIMARY KEY,
    id            uuid NOT NULL UNIQUE,
    tenant        text NOT NULL,
    dataset_id    uuid NOT NULL,      -- a dataset an unfinished sweep uses is not deleted
    status        text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    spec          jsonb NOT NULL,     -- base spec, search space, method, seed, budget
    best          jsonb,
    created_at    bigint NOT NULL,
    finished_at   bigint,
    cancel_requested boolean NOT NULL DEFAULT false
);
CREATE INDEX sweeps_tenant ON sweeps (tenant, seq);
CREATE INDEX sweeps_status ON sweeps (status);

CREATE TABLE sweep_trials (
    sweep_id      uuid NOT NULL REFERENCES sweeps (id) ON DELETE CASCADE,
    trial         bigint NOT NULL,
    rung          bigint NOT NULL,    -- successive halving's round; a promoted trial continues its job
    job_id        uuid NOT NULL,
    params        jsonb NOT NULL,
    PRIMARY KEY (sweep_id, trial, rung)
);
