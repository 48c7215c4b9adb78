-- Tenancy: every dataset, job and model belongs to a tenant (the API key's); rows from
-- before keys existed belong to 'default', the tenant of the open (keyless) mode.
-- Idempotency keys remember the first answer to a POST for a day.

ALTER TABLE datasets ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
ALTER TABLE jobs ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
ALTER TABLE models ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
CREATE INDEX datasets_tenant ON datasets (tenant, seq);
CREATE INDEX jobs_tenant ON jobs (tenant, status, seq);
CREATE INDEX models_tenant ON models (tenant, seq);

CREATE TABLE idempotency (
    tenant        TEXT NOT NULL,
    route         TEXT NOT NULL,
    key           TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,      -- hash of the request body: a reused key with another body is refused
    status        INTEGER NOT NULL,
    location      TEXT,
    body          TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant, route, key)
);
