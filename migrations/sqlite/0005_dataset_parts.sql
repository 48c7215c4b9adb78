-- Issue 12: a dataset's stored bytes in parts of a few MiB, written one at a time, so that a
-- large upload is never held twice (the features and one whole blob, then SQLite's copy of it)
-- while it is stored. The bytes are the same stored format as before, cut into pieces; a
-- dataset stored by an earlier release keeps its bytes in `datasets.data` and is read from
-- there (new rows leave `datasets.data` empty).

CREATE TABLE dataset_parts (
    dataset_id    TEXT NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    part          INTEGER NOT NULL,
    data          BLOB NOT NULL,
    PRIMARY KEY (dataset_id, part)
);
