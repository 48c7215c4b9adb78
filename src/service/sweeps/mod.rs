//! Sweeps: many trials of one base spec over a search space (`space`), or the automatic
//! mode that picks the loss from the target and searches architecture, learning rate, batch
//! size and L2 itself. Every trial is an ordinary job in the shared queue, so the workers of
//! every node train them; successive halving stops the worse trials early: all trials train
//! `min_epochs`, the best 1/η are continued (as new jobs resuming their training state) to
//! η·`min_epochs`, and so on up to the base spec's epochs. The decisions are a function of
//! the finished trials' validation metrics alone, so the same sweep and seed pick the same
//! best trial however many nodes run it.
//!
//! [`Service::advance_sweep`] is the sweep's only writer after creation: it looks at the
//! trials' jobs and creates, promotes, cancels and finishes. Any node may run it at any time
//! (`drive_sweeps` does, every half second and whenever a job ends): the jobs it creates
//! have ids derived from (sweep, trial, rung), so two nodes creating the same trial create
//! it once.
//!
//! Here the spec and the running of sweeps; `request` reads a request, `automatic` is the
//! automatic mode's choices for a dataset.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::jobs::read_request;
use super::read::{UniqueValue, from_value, parse_json_seed};
use super::space::{Method, draw, read_space, set_pointer};
use super::{Error, Result, Service};
use crate::clock::now_ms;
use crate::nn::run::spec::TargetShape;
use crate::store::{
    JobRecord, JobSpec, JobStatus, Page, StoreError, SweepLink, SweepRecord, SweepRole, TrialRecord,
};

mod automatic;
mod create;
mod events;
mod judge;
mod links;
mod progress;
mod request;
mod score;

pub use automatic::{Automatic, Task, automatic_spec, task_of};
pub use create::SweepEstimate;
pub use events::{MetricCache, SETTLE_MS, SweepEvent};
pub use progress::Progress;
pub use request::read_sweep_request;
use request::{in_base, normalize_base, stored_spec};
pub use score::{CurveCache, TrialScore};

/// The most trials one sweep may have.
pub const MAX_TRIALS: usize = 200;
/// Trials of a random search (and of the automatic mode) unless `max_trials` says otherwise.
pub const DEFAULT_TRIALS: usize = 10;
pub const AUTOMATIC_TRIALS: usize = 20;
/// The automatic mode's time budget when the request sets none (`max_seconds`): 15 minutes.
/// Its 20 trials on the tabular suite's tables (500 to 54,000 rows) take 3 s to 2 minutes
/// on two cores, so the budget only binds on larger data or a busy node.
pub const AUTOMATIC_SECONDS: f64 = 900.0;
/// Jobs of one sweep that wait in the queue at once (at least one trial's folds): its other
/// trials are queued as these are claimed.
pub const SWEEP_QUEUED_JOBS: i64 = 4;
/// The largest sweep request body.
pub const MAX_SWEEP_BODY: usize = 1 << 20;

/// Successive halving: every trial trains `min_epochs`, the best 1/`eta` go on to
/// `eta`·`min_epochs`, and so on up to the base spec's epochs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Halving {
    pub min_epochs: u32,
    #[serde(default = "default_eta")]
    pub eta: u32,
}

fn default_eta() -> u32 {
    3
}

/// A sweep as stored: the request normalised (the automatic mode's choices written out).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub dataset_id: Uuid,
    pub automatic: bool,
    /// The job submission every trial starts from (without `dataset_id`).
    pub base: Value,
    /// Pointer → distribution, as written (read with `space::read_space`).
    pub space: Value,
    pub method: Method,
    pub seed: u64,
    pub max_trials: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_seconds: Option<f64>,
    /// The validation metric trials are compared on (`val_loss`, `val_accuracy`, `val_mae`).
    pub metric: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halving: Option<Halving>,
    /// The base spec's epochs: the last rung's budget.
    pub epochs: u32,
    /// Once the best trial is chosen, train its spec once more on all the training rows
    /// (no validation split) for the epochs its validation found best; that model is the
    /// sweep's. The automatic mode's default.
    #[serde(default)]
    pub refit: bool,
    /// Cross-validation: each trial trains on `folds` disjoint validation folds of its
    /// split (`validation_fold` 0…folds-1, one job each) and scores the mean of their
    /// metrics. 0 or 1: the one split.
    #[serde(default)]
    pub folds: u32,
    /// Cross-validated trials are scored at one epoch shared by their folds (`score`): set
    /// on every sweep created since; earlier sweeps scored each fold at its own best epoch
    /// and keep the scores they were given.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared_epoch: bool,
}

impl SweepSpec {
    /// The epochs each rung trains to, ending at `epochs`.
    pub fn rungs(&self) -> Vec<u32> {
        let mut r = vec![];
        if let Some(h) = self.halving {
            let mut e = h.min_epochs.max(1);
            while e < self.epochs {
                r.push(e);
                e = e.saturating_mul(self.eta());
            }
        }
        r.push(self.epochs);
        r
    }

    fn maximise(&self) -> bool {
        self.metric.ends_with("accuracy")
    }

    /// Successive halving's η: each rung continues the best 1/η of the one below.
    fn eta(&self) -> u32 {
        self.halving.map_or(3, |h| h.eta.max(2))
    }

    /// The jobs each trial trains at each rung: one per fold.
    pub fn fold_count(&self) -> u32 {
        self.folds.max(1)
    }

    /// Trial `t`'s job submission for validation fold `fold`.
    pub fn fold_body(&self, t: usize, fold: u32) -> Result<(Value, BTreeMap<String, Value>)> {
        let (mut body, params) = self.trial_body(t)?;
        if fold > 0 {
            body["validation_fold"] = json!(fold);
            if let Some(n) = body["name"].as_str() {
                body["name"] = json!(format!("{n} fold {fold}"));
            }
        }
        Ok((body, params))
    }

    /// The refit's job submission: the chosen trial's spec on every training row for
    /// `epochs`, without validation data or early stopping (there is nothing to watch).
    pub fn refit_body(&self, t: usize, epochs: u32) -> Result<Value> {
        let (mut body, _) = self.trial_body(t)?;
        body["epochs"] = json!(epochs.max(1));
        body["validation_split"] = json!(0.0);
        if let Some(o) = body.as_object_mut() {
            o.remove("early_stopping");
            o.remove("validation_dataset_id");
            o.remove("validation_fold");
        }
        // Without a validation split nothing restores a best epoch, so the last one is the
        // model: a constant rate is annealed (cosine) so that it is not one noisy step of many.
        if body.get("lr_schedule").is_none_or(|l| {
            l.is_null() || l.get("type").and_then(Value::as_str) == Some("constant")
        }) {
            body["lr_schedule"] = json!({"type": "cosine_decay", "alpha": 0.05});
        }
        body["name"] = json!(format!(
            "{} refit of trial {t}",
            self.name.as_deref().unwrap_or("sweep")
        ));
        Ok(body)
    }

    /// Trial `t`'s searched values.
    pub fn params(&self, t: usize) -> Result<BTreeMap<String, Value>> {
        let space = read_space(&self.space)?;
        Ok(draw(&space, self.method, self.seed, t))
    }

    /// Trial `t`'s job submission (for rung 0's epochs) and its searched values.
    pub fn trial_body(&self, t: usize) -> Result<(Value, BTreeMap<String, Value>)> {
        let params = self.params(t)?;
        let mut body = self.base.clone();
        for (p, v) in &params {
            set_pointer(&mut body, p, v.clone()).map_err(|m| {
                Error::invalid(
                    format!("/space/{}", crate::nn::portable::tabular::pointer_token(p)),
                    m,
                )
            })?;
        }
        body["dataset_id"] = json!(self.dataset_id);
        body["epochs"] = json!(self.rungs()[0]);
        if body.get("name").is_none_or(Value::is_null) {
            body["name"] = json!(format!(
                "{} trial {t}",
                self.name.as_deref().unwrap_or("sweep")
            ));
        }
        Ok((body, params))
    }
}

/// A sweep request, read and checked as far as it can be without the store.
pub struct SweepRequest {
    pub name: Option<String>,
    pub dataset_id: Uuid,
    pub base: Option<Value>,
    pub space: Option<Value>,
    pub method: Method,
    pub seed: u64,
    pub max_trials: Option<usize>,
    pub max_seconds: Option<f64>,
    pub metric: Option<String>,
    pub halving: Option<Option<Halving>>,
    pub refit: Option<bool>,
    pub folds: Option<u32>,
    /// The automatic mode's task; `None` is taken from the target ([`task_of`]).
    pub task: Option<Task>,
}

/// The most validation folds a trial may be cross-validated on.
pub const MAX_FOLDS: u32 = 10;

/// The validation metrics trials may be compared on: the epoch history's, and the
/// unpenalised scores of the model's evaluation on the validation split.
pub const METRICS: [&str; 5] = [
    "val_loss",
    "val_accuracy",
    "val_mae",
    "val_log_loss",
    "val_rmse",
];

/// One trial as `GET /v1/sweeps/{id}` shows it.
pub struct TrialView {
    pub trial: i64,
    pub params: Value,
    /// Its jobs, one per rung it reached; the last is its current job.
    pub jobs: Vec<JobRecord>,
    pub metric: Option<f64>,
    /// With cross-validation, the epoch (shared by every fold) `metric` was read at.
    pub metric_epoch: Option<u32>,
    /// Cut by successive halving after a lower rung.
    pub stopped_early: bool,
    /// With cross-validation, the jobs of folds 1… at its current rung (fold 0's is the
    /// last of `jobs`); those not created yet are missing.
    pub fold_jobs: Vec<JobRecord>,
    /// Every fold's job at its rung ended by early stopping: training it longer is moot.
    pub converged: bool,
}

impl TrialView {
    /// Every fold's job at its current rung, fold 0 first (missing ones left out).
    pub fn current_jobs(&self) -> impl Iterator<Item = &JobRecord> {
        self.jobs.last().into_iter().chain(&self.fold_jobs)
    }

    /// All its folds' jobs at its current rung exist and have ended.
    fn ended(&self, folds: u32) -> bool {
        self.jobs.last().is_some()
            && self.fold_jobs.len() + 1 == folds as usize
            && self.current_jobs().all(|j| j.status.is_terminal())
    }
}

/// A sweep and its trials.
pub struct SweepView {
    pub sweep: SweepRecord,
    pub spec: SweepSpec,
    pub trials: Vec<TrialView>,
    /// The refit of the chosen trial, once queued.
    pub refit: Option<JobRecord>,
}

/// A stable id for the refit of a sweep's best trial.
fn refit_job_id(sweep: Uuid) -> Uuid {
    let h = crate::digest::hash(&format!("sweep {sweep} refit"));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&h[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// What trial `t`'s job at `rung` on validation fold `fold` is to sweep `sweep`.
fn trial_link(sweep: Uuid, t: i64, rung: i64, fold: u32) -> SweepLink {
    SweepLink {
        sweep_id: sweep,
        role: SweepRole::Trial,
        trial: t,
        rung: Some(rung),
        fold: Some(i64::from(fold)),
    }
}

/// A stable id for trial `t`'s job at `rung` on validation fold `fold`: every node derives
/// the same one.
fn trial_job_id(sweep: Uuid, t: i64, rung: i64, fold: u32) -> Uuid {
    let h = crate::digest::hash(&if fold == 0 {
        format!("sweep {sweep} trial {t} rung {rung}")
    } else {
        format!("sweep {sweep} trial {t} rung {rung} fold {fold}")
    });
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&h[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

impl Service {
    /// The tenant's sweep `id`; another tenant's is "not found" too.
    pub async fn sweep(&self, tenant: &str, id: Uuid) -> Result<SweepRecord> {
        match self.store.get_sweep(id).await? {
            Some(s) if s.tenant == tenant => Ok(s),
            _ => Err(Error::NotFound(format!("no sweep {id}"))),
        }
    }

    pub async fn list_sweeps(
        &self,
        tenant: &str,
        cursor: Option<crate::store::Cursor>,
        limit: i64,
    ) -> Result<Page<SweepRecord>> {
        Ok(self.store.list_sweeps(tenant, cursor, limit).await?)
    }

    /// The sweep with its trials: each trial's jobs, metric, and whether halving cut it.
    pub async fn sweep_view(&self, s: SweepRecord) -> Result<SweepView> {
        let spec = stored_spec(&s)?;
        let rows = self.store.sweep_trials(s.id).await?;
        let top = rows.iter().map(|r| r.rung).max().unwrap_or(0);
        let mut trials: BTreeMap<i64, TrialView> = BTreeMap::new();
        for r in rows {
            // A trial whose job was deleted under the sweep stays, without jobs: it ended.
            let job = self.store.get_job(r.job_id).await?;
            let t = trials.entry(r.trial).or_insert_with(|| TrialView {
                trial: r.trial,
                params: r.params.clone(),
                jobs: vec![],
                metric: None,
                metric_epoch: None,
                stopped_early: false,
                fold_jobs: vec![],
                converged: false,
            });
            t.jobs.extend(job);
        }
        let folds = spec.fold_count();
        for t in trials.values_mut() {
            if t.jobs.is_empty() {
                continue;
            }
            let rung = t.jobs.len() as i64 - 1;
            for f in 1..folds {
                let id = trial_job_id(s.id, t.trial, rung, f);
                t.fold_jobs.extend(self.store.get_job(id).await?);
            }
            // Over the folds, once every fold has scored (fixed order: 0, 1, …).
            let jobs: Vec<&JobRecord> = t.current_jobs().collect();
            if let Some(score) = self.trial_score(&spec, &jobs).await? {
                t.metric = Some(score.metric);
                t.metric_epoch = score.epoch;
            }
            let converged = t
                .current_jobs()
                .all(|j| j.stop_reason.as_deref() == Some("early_stopping"));
            let succeeded = t.current_jobs().all(|j| j.status == JobStatus::Succeeded);
            t.converged = converged;
            t.stopped_early = rung < top && succeeded && !converged;
        }
        let refit = if spec.refit {
            self.store.get_job(refit_job_id(s.id)).await?
        } else {
            None
        };
        Ok(SweepView {
            sweep: s,
            spec,
            trials: trials.into_values().collect(),
            refit,
        })
    }

    /// Asks a sweep to end: its queued trials are cancelled and its running ones stopped.
    pub async fn cancel_sweep(&self, s: SweepRecord) -> Result<SweepRecord> {
        if s.status.is_terminal() {
            return Err(Error::Conflict(format!(
                "sweep {} is already {}",
                s.id,
                s.status.as_str()
            )));
        }
        self.store.request_sweep_cancel(s.id).await?;
        let s = self.store.get_sweep(s.id).await?.unwrap_or(s);
        self.advance_sweep(&s).await?;
        Ok(self.store.get_sweep(s.id).await?.unwrap_or(s))
    }

    /// Deletes an ended sweep with its trial jobs and their models (the best trial's model
    /// stays: it is what the sweep was for), or only the sweep when `keep_trials`.
    pub async fn delete_sweep(&self, s: SweepRecord, keep_trials: bool) -> Result<()> {
        if !s.status.is_terminal() {
            return Err(Error::Conflict(format!(
                "sweep {} is {}; cancel it first",
                s.id,
                s.status.as_str()
            )));
        }
        if !keep_trials {
            let best_model = s
                .best
                .as_ref()
                .and_then(|b| b.get("model_id"))
                .and_then(Value::as_str)
                .and_then(|m| Uuid::parse_str(m).ok());
            let folds = stored_spec(&s).map_or(1, |spec| spec.fold_count());
            let mut ids = vec![];
            for r in self.store.sweep_trials(s.id).await? {
                ids.push(r.job_id);
                ids.extend((1..folds).map(|f| trial_job_id(s.id, r.trial, r.rung, f)));
            }
            for id in ids {
                if let Some(j) = self.store.get_job(id).await? {
                    if let Some(m) = j.model_id.filter(|m| Some(*m) != best_model) {
                        self.delete_trial_model(m).await?;
                    }
                    self.models.evict(j.id);
                    self.store.delete_job(j.id).await?;
                }
            }
            if let Some(j) = self.store.get_job(refit_job_id(s.id)).await? {
                if let Some(m) = j.model_id.filter(|m| Some(*m) != best_model) {
                    self.delete_trial_model(m).await?;
                }
                self.models.evict(j.id);
                self.store.delete_job(j.id).await?;
            }
        }
        self.store.delete_sweep(s.id).await?;
        Ok(())
    }

    /// Deletes a trial's model with its sweep, unless a deployment points at it: then it
    /// stays, as the best model does (deleting a sweep never breaks a name that other
    /// services call). A model a queued or running job starts from is kept by the store.
    async fn delete_trial_model(&self, m: Uuid) -> Result<()> {
        if !self.deployments_of_model(m).await?.is_empty() {
            return Ok(());
        }
        match self.store.delete_model(m).await {
            Ok(_) => {
                self.models.evict(m);
                Ok(())
            }
            // Deployed since the check: the deployment's foreign key refused the delete.
            Err(_) if !self.deployments_of_model(m).await?.is_empty() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Moves a sweep on: creates its first trials, promotes the best of a finished rung,
    /// cancels on request or past `max_seconds`, and records the best trial and the end.
    pub async fn advance_sweep(&self, s: &SweepRecord) -> Result<()> {
        if s.status.is_terminal() {
            return Ok(());
        }
        let spec = stored_spec(s)?;
        let rungs = spec.rungs();
        let view = self.sweep_view(s.clone()).await?;
        let past_deadline = spec
            .max_seconds
            .is_some_and(|m| (now_ms() - s.created_at) as f64 > m * 1000.0);
        if s.cancel_requested || past_deadline {
            let mut open = false;
            for j in view.trials.iter().flat_map(TrialView::current_jobs) {
                if j.status.is_terminal() {
                    continue;
                }
                open = true;
                // Past the deadline a running trial stops and keeps its model; a cancelled
                // sweep's trials are cancelled.
                let r = if past_deadline && !s.cancel_requested && j.status == JobStatus::Running {
                    if j.stop_requested {
                        continue;
                    }
                    self.stop_job(j.clone()).await
                } else if j.cancel_requested {
                    continue;
                } else {
                    self.cancel_job(j.clone()).await
                };
                if let Err(e) = r {
                    tracing::debug!(error = ?e, "ending a trial");
                }
            }
            if let Some(j) = self.store.get_job(refit_job_id(s.id)).await?
                && !j.status.is_terminal()
            {
                open = true;
                if !j.cancel_requested
                    && let Err(e) = self.cancel_job(j).await
                {
                    tracing::debug!(error = ?e, "ending a refit");
                }
            }
            if !open {
                let best = best_of(&view, &spec, true);
                let status = if s.cancel_requested {
                    JobStatus::Cancelled
                } else if best.is_some() {
                    JobStatus::Succeeded
                } else {
                    JobStatus::Failed
                };
                self.store.update_sweep(s.id, status, best.as_ref()).await?;
            }
            return Ok(());
        }
        if view.trials.is_empty() {
            return self.queue_more_trials(s, &spec, &view).await;
        }
        let top = view
            .trials
            .iter()
            .map(|t| t.jobs.len() as i64 - 1)
            .max()
            .unwrap_or(0);
        let at_top: Vec<&TrialView> = view
            .trials
            .iter()
            .filter(|t| t.jobs.len() as i64 - 1 == top)
            .collect();
        let started = view
            .trials
            .iter()
            .flat_map(|t| t.jobs.iter().chain(&t.fold_jobs))
            .any(|j| j.status != JobStatus::Queued);
        let best = best_of(&view, &spec, false);
        let folds = spec.fold_count();
        let pending = view.trials.len() < spec.max_trials
            || at_top.iter().any(|t| !t.jobs.is_empty() && !t.ended(folds));
        if pending {
            if view.trials.len() < spec.max_trials && top == 0 {
                // The first rung's trials are queued a few at a time, as room opens.
                self.queue_more_trials(s, &spec, &view).await?;
            }
            for t in &at_top {
                if !t.jobs.is_empty() && t.fold_jobs.len() + 1 < folds as usize {
                    // … or a trial's folds after its first.
                    self.create_trial(s, &spec, t.trial, top).await?;
                }
            }
            let status = if started {
                JobStatus::Running
            } else {
                JobStatus::Queued
            };
            if status != s.status || best != s.best {
                self.store.update_sweep(s.id, status, best.as_ref()).await?;
            }
            return Ok(());
        }
        // Every trial of the top rung has ended.
        let next = top as usize + 1;
        let mut ranked: Vec<(&TrialView, f64)> = at_top
            .iter()
            .filter(|t| !t.converged)
            .filter_map(|t| t.metric.map(|m| (*t, m)))
            .collect();
        if next < rungs.len() {
            ranked.sort_by(|a, b| {
                let ord = a.1.total_cmp(&b.1);
                (if spec.maximise() { ord.reverse() } else { ord }).then(a.0.trial.cmp(&b.0.trial))
            });
            let eta = spec.eta() as usize;
            let keep = at_top.len().div_ceil(eta).min(ranked.len());
            if keep > 0 {
                for (t, _) in ranked.into_iter().take(keep) {
                    self.create_trial(s, &spec, t.trial, next as i64).await?;
                }
                self.store
                    .update_sweep(s.id, JobStatus::Running, best.as_ref())
                    .await?;
                return Ok(());
            }
        }
        let mut best = best_of(&view, &spec, false);
        if spec.refit
            && let Some(b) = &best
        {
            match self.refit_best(s, &spec, &view, b).await? {
                Some(refitted) => best = Some(refitted),
                None => {
                    if s.status != JobStatus::Running || s.best.as_ref() != Some(b) {
                        self.store
                            .update_sweep(s.id, JobStatus::Running, Some(b))
                            .await?;
                    }
                    return Ok(());
                }
            }
        }
        let status = if best.is_some() {
            JobStatus::Succeeded
        } else {
            JobStatus::Failed
        };
        self.store.update_sweep(s.id, status, best.as_ref()).await?;
        Ok(())
    }

    /// The refit of the chosen trial `best`: queues it the first time (its epochs are the
    /// ones the trial's validation found best), `None` while it runs, and once it has ended
    /// `best` with the refit's job and model (the trial's own as `trial_job_id` and
    /// `trial_model_id`; the metric stays the trial's validation score). A refit that failed
    /// leaves the trial's model the sweep's.
    async fn refit_best(
        &self,
        s: &SweepRecord,
        spec: &SweepSpec,
        view: &SweepView,
        best: &Value,
    ) -> Result<Option<Value>> {
        let id = refit_job_id(s.id);
        let Some(job) = self.store.get_job(id).await? else {
            let t = best["trial"].as_i64().unwrap_or(0);
            let Some(chosen) = view.trials.iter().find(|v| v.trial == t) else {
                return Ok(Some(best.clone()));
            };
            // The epoch the folds share, else the epochs their validation found best
            // (restored), on average.
            let epochs = match chosen.metric_epoch {
                Some(e) => e,
                None => {
                    let (mut sum, mut n) = (0u64, 0u64);
                    for j in chosen.current_jobs() {
                        let best_epoch =
                            match j.model_id {
                                Some(m) => self.store.get_model(m).await?.and_then(|m| {
                                    m.metrics.get("best_epoch").and_then(Value::as_u64)
                                }),
                                None => None,
                            };
                        sum += best_epoch.unwrap_or(j.epoch.max(1) as u64);
                        n += 1;
                    }
                    (sum as f64 / n.max(1) as f64).round().max(1.0) as u32
                }
            };
            let body = spec.refit_body(t as usize, epochs)?;
            let link = SweepLink {
                sweep_id: s.id,
                role: SweepRole::Refit,
                trial: t,
                rung: None,
                fold: None,
            };
            let job = self.fresh_job(s, spec, id, &body, link)?;
            match self.store.insert_job_from(&job, None, None).await {
                Ok(()) | Err(StoreError::Duplicate(_)) => {}
                Err(e) => return Err(e.into()),
            }
            self.jobs.notify();
            return Ok(None);
        };
        if !job.status.is_terminal() {
            return Ok(None);
        }
        let t = best["trial"].as_i64().unwrap_or(0);
        if job.status == JobStatus::Succeeded
            && let Some(chosen) = view.trials.iter().find(|v| v.trial == t)
            && let Err(e) = self.judge_refit(s, chosen, &job).await
        {
            tracing::warn!(sweep = %s.id, error = ?e, "scoring the refit failed");
        }
        let mut b = best.clone();
        b["refit_job_id"] = json!(job.id);
        if job.status == JobStatus::Succeeded && job.model_id.is_some() {
            b["trial_job_id"] = b["job_id"].clone();
            b["trial_model_id"] = b["model_id"].clone();
            b["job_id"] = json!(job.id);
            b["model_id"] = json!(job.model_id);
        }
        Ok(Some(b))
    }

    /// A queued job `id` of the sweep's tenant and dataset for the submission `body`, with
    /// the sweep's seed unless the body gives one.
    fn fresh_job(
        &self,
        s: &SweepRecord,
        spec: &SweepSpec,
        id: Uuid,
        body: &Value,
        link: SweepLink,
    ) -> Result<JobRecord> {
        let bytes = serde_json::to_vec(body).map_err(|e| Error::Internal(e.to_string()))?;
        let req = read_request(&bytes, &self.limits.data)?;
        let seed = if req.seed_given {
            req.spec.seed
        } else {
            spec.seed
        };
        let mut train = req.spec;
        train.seed = seed;
        Ok(JobRecord {
            id,
            tenant: s.tenant.clone(),
            seq: 0,
            status: JobStatus::Queued,
            priority: req.priority,
            dataset_id: Some(spec.dataset_id),
            epochs: i64::from(train.epochs),
            spec: JobSpec {
                train,
                dataset_id: Some(spec.dataset_id),
                priority: req.priority,
                name: req.name,
                validation_dataset_id: req.validation_dataset,
                init_model_id: None,
                continues: None,
                auto_learning_rate: req.auto_learning_rate,
            },
            epoch: 0,
            latest: None,
            created_at: now_ms(),
            started_at: None,
            finished_at: None,
            model_id: None,
            error: None,
            stop_reason: None,
            attempt: 0,
            cancel_requested: false,
            stop_requested: false,
            crashes: 0,
            sweep: Some(link),
        })
    }

    /// Queues the first rung's next trials, as many as there is room for: a sweep keeps at
    /// most [`SWEEP_QUEUED_JOBS`] (or one trial's folds) of its jobs queued, and its trials
    /// count against the tenant's `--quota-queued-jobs` and the queue's `--max-queued-jobs`
    /// like any job, so a sweep of 200 trials neither walks around a quota nor fills the
    /// queue that other tenants share. The rest are queued as these are claimed.
    async fn queue_more_trials(
        &self,
        s: &SweepRecord,
        spec: &SweepSpec,
        view: &SweepView,
    ) -> Result<()> {
        let folds = spec.fold_count() as i64;
        let queued_here = view
            .trials
            .iter()
            .flat_map(|t| t.jobs.iter().chain(&t.fold_jobs))
            .filter(|j| j.status == JobStatus::Queued)
            .count() as i64;
        let mut room = SWEEP_QUEUED_JOBS.max(folds) - queued_here;
        let quota = self.limits.quota_queued_jobs;
        if quota > 0 {
            room = room.min(quota - self.store.usage(&s.tenant).await?.queued);
        }
        room =
            room.min(self.limits.max_queued_jobs - self.store.count_jobs(JobStatus::Queued).await?);
        let mut t = view.trials.len();
        while room >= folds && t < spec.max_trials {
            self.create_trial(s, spec, t as i64, 0).await?;
            room -= folds;
            t += 1;
        }
        Ok(())
    }

    /// Queues trial `t`'s jobs at `rung`, one per validation fold: fresh jobs for rung 0,
    /// else continuations of the fold's job at the rung below up to the rung's epochs.
    /// Created once, whichever node gets there first; fold 0's carries the trial's row.
    async fn create_trial(
        &self,
        s: &SweepRecord,
        spec: &SweepSpec,
        t: i64,
        rung: i64,
    ) -> Result<()> {
        for fold in 0..spec.fold_count() {
            let id = trial_job_id(s.id, t, rung, fold);
            if self.store.get_job(id).await?.is_some() {
                continue;
            }
            let (body, params) = spec.fold_body(t as usize, fold)?;
            let link = trial_link(s.id, t, rung, fold);
            let (job, cont) = if rung == 0 {
                (self.fresh_job(s, spec, id, &body, link)?, None)
            } else {
                let Some(prev) = self
                    .store
                    .get_job(trial_job_id(s.id, t, rung - 1, fold))
                    .await?
                else {
                    // Deleted under the sweep: nothing to continue.
                    continue;
                };
                let more = spec.rungs()[rung as usize]
                    .saturating_sub(prev.epoch as u32)
                    .max(1);
                let (mut job, c) = self.continuation(&prev, more, id).await?;
                job.sweep = Some(link);
                // Named apart from the rung below's job it continues.
                if let Some(n) = body["name"].as_str() {
                    job.spec.name = Some(format!("{n}, rung {}", rung + 1));
                }
                (job, Some(c))
            };
            let trial = (fold == 0).then(|| TrialRecord {
                sweep_id: s.id,
                trial: t,
                rung,
                job_id: id,
                params: json!(params),
            });
            match self
                .store
                .insert_job_from(&job, cont.as_ref(), trial.as_ref())
                .await
            {
                Ok(()) | Err(StoreError::Duplicate(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.jobs.notify();
        Ok(())
    }

    /// Advances every unfinished sweep, every half second and whenever a job ends here, for
    /// as long as the process runs. Any number of nodes may do this at once.
    pub async fn drive_sweeps(self) {
        let mut upgraded = false;
        loop {
            if !upgraded {
                match self.run_upgrade_tasks().await {
                    Ok(()) => upgraded = true,
                    Err(e) => tracing::warn!(error = ?e, "upgrade tasks failed; retrying"),
                }
            }
            match self.store.unfinished_sweeps().await {
                Ok(sweeps) => {
                    for s in sweeps {
                        if let Err(e) = self.advance_sweep(&s).await {
                            tracing::warn!(sweep = %s.id, error = ?e, "advancing a sweep failed");
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "listing sweeps failed"),
            }
            tokio::select! {
                () = self.jobs.job_ended() => {}
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
}

/// The best trial that ran its whole course (not cut by halving; with `any`, every
/// succeeded trial counts: a sweep ended by its deadline or cancelled), as `best` shows it.
fn best_of(view: &SweepView, spec: &SweepSpec, any: bool) -> Option<Value> {
    view.trials
        .iter()
        .filter(|t| any || !t.stopped_early)
        .filter_map(|t| {
            let j = t.jobs.last()?;
            Some((t, j, t.metric?))
        })
        .min_by(|a, b| {
            let ord = a.2.total_cmp(&b.2);
            (if spec.maximise() { ord.reverse() } else { ord }).then(a.0.trial.cmp(&b.0.trial))
        })
        .map(|(t, j, m)| {
            let mut b = json!({"trial": t.trial, "job_id": j.id, "model_id": j.model_id,
                               "params": t.params, "metric": m});
            if let Some(e) = t.metric_epoch {
                b["metric_epoch"] = json!(e);
            }
            b
        })
}
