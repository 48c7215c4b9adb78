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
