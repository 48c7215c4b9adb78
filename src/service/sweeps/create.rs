//! Creating a sweep: reading the request, writing the automatic mode's choices out, checking
//! every trial's spec against the dataset, and storing it (or, for a dry run, saying what it
//! would run).

use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    AUTOMATIC_SECONDS, AUTOMATIC_TRIALS, DEFAULT_TRIALS, MAX_TRIALS, SweepSpec, Task,
    automatic_spec, in_base, normalize_base, read_sweep_request,
};
use crate::clock::now_ms;
use crate::service::jobs::{DatasetSource, plan_job_on, read_request};
use crate::service::space::{Method, grid_size, read_space};
use crate::service::{Error, IdempotencyKey, Result, Service};
use crate::store::{JobStatus, StoreError, SweepRecord};

/// One trial of a sweep request as checked: its spec at the last rung's epochs, and its plan.
struct PlannedTrial {
    spec: crate::nn::run::spec::TrainSpec,
    plan: crate::nn::run::spec::Plan,
    validation: Option<crate::data::Summary>,
}

/// What a sweep would run: `POST /v1/sweeps?dry_run=true`.
pub struct SweepEstimate {
    /// The normalised request (the automatic mode's choices written out).
    pub spec: SweepSpec,
    /// At most this many jobs: every rung's trials on every fold, and the refit.
    pub jobs: usize,
    /// At most this many epochs over all of them ([`SweepSpec::epochs_planned`]).
    pub epochs: u64,
    /// The largest trial's training memory (each job needs its own).
    pub memory_bytes: usize,
    /// The trials' mean estimated seconds per epoch on this node.
    pub seconds_per_epoch: f64,
    /// `epochs` at that pace, and [`JOB_OVERHEAD_SECONDS`] for each job, on one node:
    /// early stopping shortens it, more nodes divide it.
    pub seconds: f64,
}

/// What a sweep's job costs besides its epochs: being queued and claimed, its dataset read
/// and split, its model evaluated and stored, the sweep driver's turn. Measured on two cores
/// with SQLite and two jobs at a time: automatic sweeps of 151 jobs on iris, diabetes and
/// breast cancer (120–455 rows) took 3.6–6.9 s, of which their epochs at the estimated pace
/// explain 0.3–1.2 s, leaving 25–30 ms a job whatever the columns.
pub const JOB_OVERHEAD_SECONDS: f64 = 0.03;

impl Service {
    /// Creates a sweep for `tenant`: reads the request, writes the automatic mode's choices
    /// out, checks every trial's spec against the dataset (so a bad space is a 422 now, not a
    /// failed trial later), and stores it queued; the sweepers create its trials.
    pub async fn create_sweep(
        &self,
        tenant: &str,
        key: &IdempotencyKey,
        body: &[u8],
    ) -> Result<SweepRecord> {
        let id = match self.store.get_sweep(key.record_id(tenant, "sweep")).await? {
            Some(s) if s.tenant == tenant && key.is_retry_of(s.created_at) => return Ok(s),
            Some(_) => Uuid::new_v4(),
            None => key.record_id(tenant, "sweep"),
        };
        let (spec, _, _) = self.plan_sweep(tenant, body).await?;
        // Its trials are jobs: a tenant whose queue is full, or a full queue, refuses it.
        self.check_queue(tenant).await?;
        let rec = SweepRecord {
            id,
            tenant: tenant.to_string(),
            seq: 0,
            dataset_id: spec.dataset_id,
            status: JobStatus::Queued,
            spec: crate::store::to_json(&spec),
            best: None,
            created_at: now_ms(),
            finished_at: None,
            cancel_requested: false,
        };
        match self.store.insert_sweep(&rec).await {
            Ok(()) => {}
            Err(StoreError::Duplicate(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let rec = self.store.get_sweep(id).await?.unwrap_or(rec);
        self.advance_sweep(&rec).await?;
        Ok(self.store.get_sweep(id).await?.unwrap_or(rec))
    }

    /// What a sweep request would run (`POST /v1/sweeps?dry_run=true`), checked as a real
    /// one is; nothing is stored.
    pub async fn sweep_dry_run(&self, tenant: &str, body: &[u8]) -> Result<SweepEstimate> {
        let (spec, dataset, trials) = self.plan_sweep(tenant, body).await?;
        let cost = self.jobs.cost_model().await;
        let (mut per_epoch, mut memory) = (0.0, 0usize);
        for t in &trials {
            let e = crate::service::jobs::estimate(
                t.spec.clone(),
                &dataset,
                t.validation.as_ref(),
                &t.plan,
                &cost,
            );
            per_epoch += e.seconds_per_epoch;
            memory = memory.max(e.memory_bytes);
        }
        let per_epoch = per_epoch / trials.len().max(1) as f64;
        let epochs = spec.epochs_planned();
        let folds = spec.fold_count() as usize;
        let jobs = spec.trials_per_rung().iter().sum::<usize>() * folds + usize::from(spec.refit);
        Ok(SweepEstimate {
            jobs,
            epochs,
            memory_bytes: memory,
            seconds_per_epoch: per_epoch,
            seconds: per_epoch * epochs as f64 + jobs as f64 * JOB_OVERHEAD_SECONDS,
            spec,
        })
    }

    /// Reads a sweep request and checks it against the tenant's dataset: the automatic
    /// mode's choices written out, and every trial's spec checked (so a bad space is a 422
    /// now, not a failed trial later). Returns the spec to store and each trial's plan.
    async fn plan_sweep(
        &self,
        tenant: &str,
        body: &[u8],
    ) -> Result<(SweepSpec, crate::data::Summary, Vec<PlannedTrial>)> {
        let req = read_sweep_request(body)?;
        let dataset = match self.store.get_dataset(req.dataset_id).await? {
            Some(d) if d.tenant == tenant => d,
            _ => {
                return Err(Error::invalid(
                    "/dataset_id",
                    format!("no dataset {}", req.dataset_id),
                ));
            }
        };
        let summary = self.dataset_summary(&dataset).await?;
        crate::service::datasets::require_target(&summary.target, "/dataset_id")?;
        let automatic = req.base.is_none();
        if !automatic && req.task.is_some() {
            return Err(Error::invalid(
                "/task",
                "goes with the automatic mode (no base): a base spec's loss says its task",
            ));
        }
        let auto = automatic
            .then(|| {
                let rows = dataset.rows.max(0) as usize;
                // The request's task, else the one the upload said.
                let task = req.task.or_else(|| {
                    dataset
                        .meta
                        .get("task")
                        .and_then(|t| serde_json::from_value::<Task>(t.clone()).ok())
                });
                automatic_spec(&summary.target, rows, req.seed, task)
            })
            .transpose()?;
        let (base, space) = match (req.base, req.space, &auto) {
            (Some(b), Some(s), _) => (b, s),
            (_, _, Some(a)) => (a.base.clone(), a.space.clone()),
            _ => return Err(Error::invalid("/base", "is required with a space")),
        };
        let base = normalize_base(base, dataset.id, req.seed, &self.limits.data)?;
        let space_read = read_space(&space)?;
        let max_trials = match (req.method, req.max_trials) {
            (Method::Grid, t) => {
                let n = grid_size(&space_read).map_err(|m| Error::invalid("/method", m))?;
                t.map_or(n, |t| t.min(n)).min(MAX_TRIALS)
            }
            (Method::Random, Some(t)) => t,
            (Method::Random, None) if automatic => AUTOMATIC_TRIALS,
            (Method::Random, None) => DEFAULT_TRIALS,
        };
        let base_epochs = base
            .get("epochs")
            .and_then(Value::as_u64)
            .map_or(10, |e| e.min(u64::from(u32::MAX)) as u32);
        let halving = match (req.halving, &auto) {
            (Some(h), _) => h,
            (None, Some(a)) => Some(a.halving),
            (None, None) => None,
        };
        let metric = match (req.metric, &auto) {
            (Some(m), _) => m,
            (None, Some(a)) => a.metric.to_string(),
            (None, None) => "val_loss".to_string(),
        };
        let spec = SweepSpec {
            name: req.name,
            dataset_id: dataset.id,
            automatic,
            base,
            space,
            method: req.method,
            seed: req.seed,
            max_trials,
            max_seconds: req.max_seconds.or(automatic.then_some(AUTOMATIC_SECONDS)),
            metric,
            halving,
            epochs: base_epochs,
            refit: req.refit.unwrap_or(automatic),
            folds: req.folds.or(auto.as_ref().map(|a| a.folds)).unwrap_or(1),
            shared_epoch: true,
        };
        // Every trial must be a job this server would take, with validation data to
        // compare on.
        let mut planned = Vec::with_capacity(max_trials);
        for t in 0..max_trials {
            let (mut body, _) = spec.trial_body(t)?;
            body["epochs"] = json!(spec.epochs);
            let bytes = serde_json::to_vec(&body).map_err(|e| Error::Internal(e.to_string()))?;
            let req = read_request(&bytes, &self.limits.data).map_err(|e| in_base(e, t))?;
            if req.init_model.is_some() || !matches!(req.dataset, DatasetSource::Stored(_)) {
                return Err(Error::invalid(
                    "/base",
                    "a sweep's trials train on its dataset from fresh weights",
                ));
            }
            let validation = match req.validation_dataset {
                Some(v) => match self.store.get_dataset(v).await? {
                    Some(d) if d.tenant == tenant => {
                        let v = self.dataset_summary(&d).await?;
                        crate::service::datasets::require_target(
                            &v.target,
                            "/base/validation_dataset_id",
                        )?;
                        Some(v)
                    }
                    _ => {
                        return Err(Error::invalid(
                            "/base/validation_dataset_id",
                            format!("no dataset {v}"),
                        ));
                    }
                },
                None => None,
            };
            if validation.is_none() && req.spec.validation_split <= 0.0 {
                return Err(Error::invalid(
                    "/base/validation_split",
                    "trials are compared on validation data: set validation_split (or validation_dataset_id)",
                ));
            }
            if spec.fold_count() > 1
                && (validation.is_some()
                    || crate::nn::run::spec::folds(req.spec.validation_split) < spec.fold_count())
            {
                return Err(Error::invalid(
                    "/folds",
                    format!(
                        "{} folds need a validation_split of at most 1/{} (and no validation_dataset_id)",
                        spec.fold_count(),
                        spec.fold_count()
                    ),
                ));
            }
            let classifier = req.spec.loss.is_classification();
            if ["val_accuracy", "val_log_loss"].contains(&spec.metric.as_str()) && !classifier
                || ["val_mae", "val_rmse"].contains(&spec.metric.as_str()) && classifier
            {
                return Err(Error::invalid(
                    "/metric",
                    format!(
                        "{} is not reported for {}",
                        spec.metric,
                        req.spec.loss.name()
                    ),
                ));
            }
            let plan = plan_job_on(&req.spec, &summary, validation.as_ref(), &self.limits)
                .map_err(|e| in_base(e, t))?;
            planned.push(PlannedTrial {
                spec: req.spec,
                plan,
                validation,
            });
        }
        Ok((spec, summary, planned))
    }
}
