-- Tenancy: every dataset, job and model belongs to a tenant (the API key's); rows from
-- before keys existed belong to 'default', the tenant of the open (keyless) mode.
-- Idempotency keys remember the first answer to a POST for a day.

ALTER TABLE datasets ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE jobs ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE models ADD COLUMN tenant text NOT NULL DEFAULT 'default';
CREATE INDEX datasets_tenant ON datasets (tenant, seq);
CREATE INDEX jobs_tenant ON jobs (tenant, status, seq);
CREATE INDEX models_tenant ON models (tenant, seq);

CREATE TABLE idempotency (
    tenant        text NOT NULL,
    route         text NOT NULL,
    key           text NOT NULL,
    fingerprint   text NOT NULL,      -- hash of the request body: a reused key with another body is refused
    status        integer NOT NULL,
    location      text,
    body          jsonb NOT NULL,
    created_at    bigint NOT NULL,
    PRIMARY KEY (tenant, route, key)
);
