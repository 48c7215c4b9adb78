-- Issue 26: a job or model that a sweep made says so. The PostgreSQL twin of
-- migrations/sqlite/0007_sweep_links.sql (which says why).
ALTER TABLE jobs ADD COLUMN sweep_id uuid;
ALTER TABLE jobs ADD COLUMN sweep_role text;
ALTER TABLE jobs ADD COLUMN sweep_trial bigint;
ALTER TABLE jobs ADD COLUMN sweep_rung bigint;
ALTER TABLE jobs ADD COLUMN sweep_fold bigint;
ALTER TABLE models ADD COLUMN sweep_id uuid;
ALTER TABLE models ADD COLUMN sweep_role text;
ALTER TABLE models ADD COLUMN sweep_trial bigint;
ALTER TABLE models ADD COLUMN sweep_rung bigint;
ALTER TABLE models ADD COLUMN sweep_fold bigint;
CREATE INDEX jobs_sweep ON jobs (sweep_id);
CREATE INDEX models_sweep ON models (sweep_id);

UPDATE jobs SET sweep_id = t.sweep_id, sweep_role = 'trial', sweep_trial = t.trial,
                sweep_rung = t.rung, sweep_fold = 0
FROM sweep_trials t WHERE t.job_id = jobs.id;

CREATE TABLE upgrade_tasks (
    name          text PRIMARY KEY
);
INSERT INTO upgrade_tasks (name) VALUES ('sweep_links');
