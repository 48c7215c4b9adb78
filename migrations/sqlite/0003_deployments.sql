-- Named deployments: a stable name per tenant that points at one model at a time. The head
-- row is what predictions read (one row per name); `deployment_versions` keeps every version
-- the name has had, for history, `/versions/{n}` and rollback. The head's model must exist:
-- the foreign key makes deleting a deployed model fail even when the check before it raced.

CREATE TABLE deployments (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant        TEXT NOT NULL,
    name          TEXT NOT NULL,
    version       INTEGER NOT NULL,
    model_id      TEXT NOT NULL REFERENCES models (id),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    UNIQUE (tenant, name)
);
CREATE INDEX deployments_model ON deployments (model_id);

CREATE TABLE deployment_versions (
    tenant        TEXT NOT NULL,
    name          TEXT NOT NULL,
    version       INTEGER NOT NULL,
    model_id      TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant, name, version)
);

-- Batch predictions of a stored dataset: the run (status, progress, heartbeat) and its CSV
-- result in chunks, written as they are computed and read back one at a time.
CREATE TABLE batch_predictions (
    id            TEXT PRIMARY KEY,
    tenant        TEXT NOT NULL,
    model_id      TEXT NOT NULL,
    dataset_id    TEXT NOT NULL,
    status        TEXT NOT NULL,
    rows_total    INTEGER NOT NULL,
    rows_done     INTEGER NOT NULL,
    error         TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    finished_at   INTEGER
);

CREATE TABLE batch_prediction_chunks (
    batch_id      TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    csv           TEXT NOT NULL,
    PRIMARY KEY (batch_id, seq)
);
