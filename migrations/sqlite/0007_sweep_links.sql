-- Issue 26: a job or model that a sweep made says so, so that listings leave trials out
-- (`?include=trials` brings them back, `?sweep_id=` shows one sweep's) and each shows its
-- trial, rung and fold. `sweep_role` is 'trial' or 'refit'; rows of earlier releases made by
-- no sweep stay NULL.
ALTER TABLE jobs ADD COLUMN sweep_id TEXT;
ALTER TABLE jobs ADD COLUMN sweep_role TEXT;
ALTER TABLE jobs ADD COLUMN sweep_trial INTEGER;
ALTER TABLE jobs ADD COLUMN sweep_rung INTEGER;
ALTER TABLE jobs ADD COLUMN sweep_fold INTEGER;
ALTER TABLE models ADD COLUMN sweep_id TEXT;
ALTER TABLE models ADD COLUMN sweep_role TEXT;
ALTER TABLE models ADD COLUMN sweep_trial INTEGER;
ALTER TABLE models ADD COLUMN sweep_rung INTEGER;
ALTER TABLE models ADD COLUMN sweep_fold INTEGER;
CREATE INDEX jobs_sweep ON jobs (sweep_id);
CREATE INDEX models_sweep ON models (sweep_id);

-- Earlier releases' sweeps: the first fold's job of each trial and rung is in sweep_trials;
-- the other folds' jobs and the refit have ids derived from the sweep's, which only the code
-- can compute, so the task `sweep_links` links them at the next start (and copies every
-- link to the job's model).
UPDATE jobs SET
    sweep_id = (SELECT t.sweep_id FROM sweep_trials t WHERE t.job_id = jobs.id),
    sweep_role = 'trial',
    sweep_trial = (SELECT t.trial FROM sweep_trials t WHERE t.job_id = jobs.id),
    sweep_rung = (SELECT t.rung FROM sweep_trials t WHERE t.job_id = jobs.id),
    sweep_fold = 0
WHERE id IN (SELECT job_id FROM sweep_trials);

CREATE TABLE upgrade_tasks (
    name          TEXT PRIMARY KEY
);
INSERT INTO upgrade_tasks (name) VALUES ('sweep_links');
