-- Issue 12: a dataset's stored bytes in parts of a few MiB (the PostgreSQL twin of
-- migrations/sqlite/0005_dataset_parts.sql). A dataset stored by an earlier release keeps its
-- bytes in `datasets.data`; new rows leave it empty.

CREATE TABLE dataset_parts (
    dataset_id    uuid NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    part          integer NOT NULL,
    data          bytea NOT NULL,
    PRIMARY KEY (dataset_id, part)
);
-- Float data does not compress: store it out of line without trying (pglz on every part
-- costs time and saves nothing).
ALTER TABLE dataset_parts ALTER COLUMN data SET STORAGE EXTERNAL;
