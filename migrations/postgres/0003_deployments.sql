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
