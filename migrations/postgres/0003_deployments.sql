-- Named deployments: a stable name per tenant that points at one model at a time. The head
-- row is what predictions read (one row per name); `deployment_versions` keeps every version
-- the name has had, for history, `/versions/{n}` and rollback. The head's model must exist:
-- the foreign key makes deleting a deployed model fail even when the check before it raced.

CREATE TABLE deployments (
    seq           bigserial PRIMARY KEY,
    tenant        text NOT NULL,
    name          text NOT NULL,
    version       bigint NOT NULL,
    model_id      uuid NOT NULL REFERENCES models (id),
    created_at    bigint NOT NULL,
    updated_at    bigint NOT NULL,
    UNIQUE (tenant, name)
);
CREATE INDEX deployments_model ON deployments (model_id);

CREATE TABLE deployment_versions (
    tenant        text NOT NULL,
    name          text NOT NULL,
    version       bigint NOT NULL,
    model_id      uuid NOT NULL,
    created_at    bigint NOT NULL,
    PRIMARY KEY (tenant, name, version)
);

-- Batch predictions of a stored dataset: the run (status, progress, heartbeat) and its CSV
-- result in chunks, written as they are computed and read back one at a time.
CREATE TABLE batch_predictions (
    id            uuid PRIMARY KEY,
    tenant        text NOT NULL,
    model_id      uuid NOT NULL,
    dataset_id    uuid NOT NULL,
    status        text NOT NULL,
    rows_total    bigint NOT NULL,
    rows_done     bigint NOT NULL,
    error         text,
    created_at    bigint NOT NULL,
    updated_at    bigint NOT NULL,
    finished_at   bigint
);

CREATE TABLE batch_prediction_chunks (
    batch_id      uuid NOT NULL,
    seq           bigint NOT NULL,
    csv           text NOT NULL,
    PRIMARY KEY (batch_id, seq)
);
