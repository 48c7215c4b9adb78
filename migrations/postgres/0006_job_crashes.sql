-- Issue 23: a job that keeps killing its node is recognised. `crashes` counts the times the
-- job's node stopped while it ran (its lease was reaped, or the node restarted) with no
-- checkpoint saved since it was claimed; a checkpoint sets it back to 0. A job with a crash
-- to its name runs alone on its node; at 3 it fails. Rows written by earlier releases start
-- at 0.
ALTER TABLE jobs ADD COLUMN crashes bigint NOT NULL DEFAULT 0;
