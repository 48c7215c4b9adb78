//! Jobs: reading and validating a submission (shared with the fuzz target `job_spec`), the
//! dry-run estimate, quotas and the queue's bound, queueing; reading, listing, cancelling,
//! stopping and deleting a tenant's jobs; and the weights a job predicts with (its model, or
//! its newest checkpoint while it trains).

use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

use super::models::check_layers;
use super::read::{UniqueValue, from_value, parse_json_seed};
use super::{Error, IdempotencyKey, Limits, Result, Service};
use crate::clock::now_ms;
use crate::data::{Dataset, JsonDataset, Limits as DataLimits, Summary};
use crate::nn::run::cost::CostModel;
use crate::nn::run::spec::{Plan, PlannedLayer, TargetShape};
use crate::nn::{Model, TrainSpec};
use crate::store::{Cursor, JobRecord, JobSpec, JobStatus, Page, StoreError};

/// The most epochs one `GET /v1/jobs/{id}/history` answers (about 1.5 MB of JSON); the
/// answer's `next_since` pages on.
pub const MAX_HISTORY_PAGE: i64 = 10_000;

/// Where a job's data comes from.
pub enum DatasetSource {
    /// A stored dataset, by id; the use case checks it exists and belongs to the caller.
    Stored(Uuid),
    /// An inline dataset: the body as given (for its name) and the checked dataset.
    Inline(Box<(JsonDataset, Dataset)>),
}

/// A job submission, read and checked as far as it can be without the store.
pub struct JobRequest {
    /// The engine's spec (the service fields removed); its seed is 0 unless `seed_given`.
    pub spec: TrainSpec,
    pub seed_given: bool,
    pub priority: i32,
    pub name: Option<String>,
    pub dataset: DatasetSource,
    /// A stored dataset to validate on instead of a `validation_split`.
    pub validation_dataset: Option<Uuid>,
    /// A model whose weights training starts from.
    pub init_model: Option<Uuid>,
    /// `"learning_rate": "auto"`: find the rate with the range test first.
    pub auto_learning_rate: bool,
    /// Whether the body said `standardize_target` (otherwise a regression standardises).
    pub standardize_target_given: bool,
}

/// A job body's fields: every one but `dataset` as a JSON value (no key twice), and `dataset`
/// read straight into a [`JsonDataset`].
struct JobBody;

impl<'de> serde::de::DeserializeSeed<'de> for JobBody {
    type Value = (serde_json::Map<String, Value>, Option<JsonDataset>);

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for JobBody {
    type Value = (serde_json::Map<String, Value>, Option<JsonDataset>);

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a job spec (a JSON object)")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut fields = serde_json::Map::new();
        let mut dataset = None;
        while let Some(k) = map.next_key::<String>()? {
            if fields.contains_key(&k) || (k == "dataset" && dataset.is_some()) {
                return Err(serde::de::Error::custom(format!(
                    "duplicate field `{k}`; give each field once"
                )));
            }
            if k == "dataset" {
                dataset = Some(map.next_value::<JsonDataset>()?);
            } else {
                let v = map.next_value_seed(UniqueValue)?;
                fields.insert(k, v);
            }
        }
        Ok((fields, dataset))
    }
}

/// Reads a job submission: the spec, the service fields, and an inline dataset if there is
/// one. Pure (no store), so the fuzz target `job_spec` exercises exactly what the handler does.
pub fn read_request(body: &[u8], limits: &DataLimits) -> Result<JobRequest> {
    Ok(read_request_with(body, limits, &[])?.0)
}

/// [`read_request`] for a body that also takes the fields `extra` (a range test's
/// `range_test`): they are taken out before the submission is read, and returned.
pub fn read_request_with(
    body: &[u8],
    limits: &DataLimits,
    extra: &[&str],
) -> Result<(JobRequest, serde_json::Map<String, Value>)> {
    // The inline dataset is read straight into its packed form, never as a JSON value tree
    // (which took about fifty times the body's size, and was then copied twice).
    let (mut obj, inline) =
        crate::data::json::read_within(limits, || parse_json_seed(body, JobBody))
            .map_err(super::read::over_limit_as_too_large)?;
    let mut taken = serde_json::Map::new();
    for f in extra {
        if let Some(v) = obj.remove(*f) {
            taken.insert((*f).to_string(), v);
        }
    }
    let mut engine = obj.clone();
    for f in JobSpec::SERVICE_FIELDS {
        engine.remove(f);
    }
    if let Some(f) = JobSpec::STORED_FIELDS
        .iter()
        .find(|f| obj.contains_key(**f))
    {
        return Err(Error::invalid(
            format!("/{f}"),
            "is set by POST /v1/jobs/{id}/continue, not by a submission",
        ));
    }
    let auto_learning_rate = JobSpec::take_auto_learning_rate(&mut engine);
    let seed_given = engine.contains_key("seed");
    let standardize_target_given = engine.contains_key("standardize_target");
    let spec: TrainSpec = from_value(Value::Object(engine), "").map_err(|e| match e {
        // The engine's reader knows only its own fields; the submission also takes the
        // service's, and the list a user reads must say so.
        Error::Invalid(errs) => Error::Invalid(
            errs.into_iter()
                .map(|mut e| {
                    if e.message.starts_with("unknown field") && e.pointer.matches('/').count() == 1
                    {
                        let extra = [
                            "dataset_id",
                            "dataset",
                            "name",
                            "priority",
                            "validation_dataset_id",
                            "init_model_id",
                        ]
                        .map(|f| format!("`{f}`"))
                        .join(", ");
                        e.message = format!("{}, {extra}", e.message);
                    }
                    e
                })
                .collect(),
        ),
        other => other,
    })?;
    let priority = match obj.get("priority") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_i64()
            .filter(|p| (-1000..=1000).contains(p))
            .ok_or_else(|| {
                Error::invalid("/priority", "must be a whole number from -1000 to 1000")
            })? as i32,
    };
    let name = match obj.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) if !n.is_empty() && n.len() <= 200 => Some(n.clone()),
        Some(_) => {
            return Err(Error::invalid(
                "/name",
                "must be a string of 1 to 200 characters",
            ));
        }
    };
    let dataset = match (obj.get("dataset_id"), inline) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid(
                "/dataset",
                "give dataset_id or dataset, not both",
            ));
        }
        (None, None) => {
            return Err(Error::invalid(
                "/dataset_id",
                "is required (or an inline \"dataset\")",
            ));
        }
        (Some(id), None) => DatasetSource::Stored(
            id.as_str()
                .and_then(|i| Uuid::parse_str(i).ok())
                .ok_or_else(|| Error::invalid("/dataset_id", "must be a dataset id (a UUID)"))?,
        ),
        (None, Some(mut jd)) => {
            let ds = crate::data::from_json(&jd, limits).map_err(|mut e| {
                e.pointer = Some(format!("/dataset{}", e.pointer.unwrap_or_default()));
                e
            })?;
            super::datasets::check_min_rows(ds.rows(), ds.dropped_rows, "/dataset/rows")?;
            // Only the name is needed from here on; the rows live on in `ds`.
            jd.features = Default::default();
            jd.targets = None;
            DatasetSource::Inline(Box::new((jd, ds)))
        }
    };
    let validation_dataset = match obj.get("validation_dataset_id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_str()
                .and_then(|i| Uuid::parse_str(i).ok())
                .ok_or_else(|| {
                    Error::invalid("/validation_dataset_id", "must be a dataset id (a UUID)")
                })?,
        ),
    };
    let init_model = match obj.get("init_model_id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_str()
                .and_then(|i| Uuid::parse_str(i).ok())
                .ok_or_else(|| Error::invalid("/init_model_id", "must be a model id (a UUID)"))?,
        ),
    };
    if validation_dataset.is_some() && spec.validation_split > 0.0 {
        return Err(Error::invalid(
            "/validation_split",
            "give validation_split or validation_dataset_id, not both",
        ));
    }
    Ok((
        JobRequest {
            spec,
            seed_given,
            priority,
            name,
            dataset,
            validation_dataset,
            init_model,
            auto_learning_rate,
            standardize_target_given,
        },
        taken,
    ))
}

/// Validates `spec` against `dataset` and the server's limits (layers, epochs, parameters):
/// the whole check a job passes before it is queued. A job that passes it trains (or
/// diverges, at run time); the worker never refuses it for a reason visible here.
pub fn plan_job(spec: &TrainSpec, dataset: &Dataset, limits: &Limits) -> Result<Plan> {
    plan_job_on(spec, &Summary::of(dataset), None, limits)
}

/// [`plan_job`] from what a dataset's metadata says of it (no data decoded), with the summary
/// of a separate validation dataset when the job names one.
pub fn plan_job_on(
    spec: &TrainSpec,
    dataset: &Summary,
    validation: Option<&Summary>,
    limits: &Limits,
) -> Result<Plan> {
    check_layers(spec.layers.len(), limits)?;
    if spec.epochs > limits.max_epochs {
        return Err(Error::invalid(
            "/epochs",
            format!("at most {} epochs (--max-epochs)", limits.max_epochs),
        ));
    }
    let (width, _) = spec
        .input_width(&dataset.columns, dataset.rows)
        .map_err(Error::Invalid)?;
    if let Some(v) = validation {
        let names = |c: &[crate::nn::portable::tabular::ColumnSchema]| {
            c.iter().map(|c| c.name.clone()).collect::<Vec<_>>()
        };
        if names(&v.columns) != names(&dataset.columns) {
            return Err(Error::invalid(
                "/validation_dataset_id",
                format!(
                    "the validation dataset's columns {:?} differ from the training dataset's {:?}",
                    names(&v.columns),
                    names(&dataset.columns)
                ),
            ));
        }
        // A class the training split never shows cannot be scored: refused now, not when the
        // job has queued and started.
        if spec.loss.is_classification() {
            let classes = |t: &TargetShape| -> Option<Vec<String>> {
                match t {
                    TargetShape::Labels { classes } => {
                        Some(classes.iter().map(|c| c.to_string()).collect())
                    }
                    TargetShape::Values {
                        integer_classes: Some(c),
                        width: 1,
                        ..
                    } => Some(c.iter().map(|c| c.to_string()).collect()),
                    TargetShape::Values { .. } => None,
                }
            };
            if let (Some(train), Some(val)) = (classes(&dataset.target), classes(&v.target))
                && let Some(unseen) = val.iter().find(|c| !train.contains(c))
            {
                return Err(Error::invalid(
                    "/validation_dataset_id",
                    format!(
                        "the validation dataset has class {unseen:?}, which the training dataset does not (its classes: {})",
                        train.join(", ")
                    ),
                ));
            }
        }
    }
    let plan = match validation {
        Some(_) => spec.plan_with_validation_set(width, dataset.rows, &dataset.target),
        None => spec.plan(width, dataset.rows, &dataset.target),
    }
    .map_err(Error::Invalid)?;
    if plan.parameter_count > limits.max_parameters {
        return Err(Error::invalid(
            "/layers",
            format!(
                "{} parameters is more than this server's limit of {} (--max-parameters)",
                plan.parameter_count, limits.max_parameters
            ),
        ));
    }
    check_job_memory(spec, dataset, validation, limits.max_job_memory)?;
    Ok(plan)
}

/// Refuses a job whose training would need more memory than one job may use (`limit` bytes;
/// 0 = no limit), naming the columns that cost the most. The worker checks again when it
/// claims the job (the limit may have changed, or a node with less memory claims it).
pub fn check_job_memory(
    spec: &TrainSpec,
    dataset: &Summary,
    validation: Option<&Summary>,
    limit: u64,
) -> Result<()> {
    if limit == 0 {
        return Ok(());
    }
    let need = dataset
        .job_memory(spec, validation)
        .map_err(Error::Invalid)?;
    if need.bytes as u64 > limit {
        let pointer = if need.widest.is_empty() {
            "/dataset_id"
        } else {
            "/columns"
        };
        return Err(Error::invalid(pointer, need.refusal(limit)));
    }
    Ok(())
}

/// What a dry run answers: the job would be accepted, and roughly what it would cost.
pub struct Estimate {
    pub parameter_count: usize,
    pub train_rows: usize,
    pub validation_rows: usize,
    pub memory_bytes: usize,
    pub seconds_per_epoch: f64,
    /// The spec with every default filled in (and the seed drawn).
    pub spec: TrainSpec,
}

/// The cost model of a dry run: the engine's speed measured on this node's pool
/// ([`CostModel`]) applied to this job's batches and arithmetic.
pub(super) fn estimate(
    spec: TrainSpec,
    dataset: &Summary,
    validation: Option<&Summary>,
    plan: &Plan,
    cost: &CostModel,
) -> Estimate {
    let rows = dataset.rows;
    let train_rows = match validation {
        Some(_) => rows,
        None => rows - ((rows as f64) * spec.validation_split as f64).round() as usize,
    };
    let validation_rows = validation.map_or(rows - train_rows, |v| v.rows);
    let batch = spec.batch_size.min(train_rows.max(1));
    let batches = train_rows.div_ceil(batch.max(1));
    let flops = CostModel::epoch_flops(plan.compute_weights(), train_rows, validation_rows);
    let dense_layers = plan
        .layers
        .iter()
        .filter(|l| matches!(l, PlannedLayer::Dense { .. }))
        .count();
    let memory = dataset.job_memory(&spec, validation).map_or(0, |m| m.bytes);
    Estimate {
        parameter_count: plan.parameter_count,
        train_rows,
        validation_rows,
        memory_bytes: memory,
        // A quarter more than measured: the estimate errs on the slow side, as a busy node does.
        seconds_per_epoch: 1.25 * cost.seconds_per_epoch(batches, dense_layers, flops),
        spec: spec.with_defaults(plan),
    }
}

/// What a submission did.
pub enum Submitted {
    /// A dry run: valid, and what it would cost; nothing stored.
    DryRun(Box<Estimate>),
    /// Queued (or found queued by this key's first request).
    Queued(Box<JobRecord>),
}

/// The weights a job predicts with, and where they come from.
pub struct JobWeights {
    pub model: Arc<Model>,
    /// The epoch they are from.
    pub epoch: i64,
    /// The job's model, or `None` for its newest checkpoint.
    pub model_id: Option<Uuid>,
}

impl Service {
    /// Refuses a new job when the tenant's queued-jobs quota or the queue's bound is reached.
    pub async fn check_queue(&self, tenant: &str) -> Result<()> {
        let quota = self.limits.quota_queued_jobs;
        if quota > 0 {
            let queued = self.store.usage(tenant).await?.queued;
            if queued >= quota {
                return Err(Error::OverQuota {
                    detail: format!(
                        "tenant {tenant} has {queued} queued jobs, its quota; retry when some have run"
                    ),
                    retry_after: 30,
                });
            }
        }
        if self.store.count_jobs(JobStatus::Queued).await? >= self.limits.max_queued_jobs {
            return Err(Error::OverQuota {
                detail: format!(
                    "the queue holds {} jobs, its limit; retry later",
                    self.limits.max_queued_jobs
                ),
                retry_after: 30,
            });
        }
        Ok(())
    }

    /// Submits a job for `tenant`: reads and validates `body` against its dataset and the
    /// limits, and (unless `dry_run`) checks quotas and the queue's bound, stores an inline
    /// dataset, and queues the job.
    pub async fn submit_job(
        &self,
        tenant: &str,
        key: &IdempotencyKey,
        body: &[u8],
        dry_run: bool,
    ) -> Result<Submitted> {
        let job_id = match self.store.get_job(key.record_id(tenant, "job")).await? {
            // Queued by this key's first request, which died before answering.
            Some(j) if key.is_retry_of(j.created_at) => return Ok(Submitted::Queued(Box::new(j))),
            Some(_) => Uuid::new_v4(),
            None => key.record_id(tenant, "job"),
        };
        // A spec of a million layers is refused before any per-layer work.
        if let Some(n) = super::read::count_layers(body) {
            check_layers(n, &self.limits)?;
        }
        let JobRequest {
            mut spec,
            seed_given,
            priority,
            name,
            dataset: source,
            validation_dataset,
            init_model,
            auto_learning_rate,
            standardize_target_given,
        } = if body.len() > 64 * 1024 {
            // An inline dataset: reading it is CPU work, off the async threads.
            let (body, limits) = (body.to_vec(), self.limits.data);
            tokio::task::spawn_blocking(move || read_request(&body, &limits)).await??
        } else {
            read_request(body, &self.limits.data)?
        };
        // Before the dataset is read: a spec this large is refused cheaply (plan_job checks
        // it again, for the fuzz target).
        check_layers(spec.layers.len(), &self.limits)?;
        if !seed_given {
            spec.seed =
                u64::from_le_bytes(Uuid::new_v4().as_bytes()[..8].try_into().unwrap_or([0; 8]))
                    >> 11;
        }

        // The dataset: by id (checked against the schema in its metadata, without decoding
        // it), or inline (stored as a dataset of its own).
        type Inline = std::result::Result<(JsonDataset, Dataset), Uuid>;
        let (summary, inline): (Summary, Inline) = match source {
            DatasetSource::Stored(id) => match self.store.get_dataset(id).await? {
                Some(d) if d.tenant == tenant => (self.dataset_summary(&d).await?, Err(id)),
                _ => return Err(Error::invalid("/dataset_id", format!("no dataset {id}"))),
            },
            DatasetSource::Inline(inline) => {
                let (jd, ds) = *inline;
                (Summary::of(&ds), Ok((jd, ds)))
            }
        };
        super::datasets::require_target(&summary.target, "/dataset_id")?;
        let validation = match validation_dataset {
            Some(id) => match self.store.get_dataset(id).await? {
                Some(d) if d.tenant == tenant => {
                    let v = self.dataset_summary(&d).await?;
                    super::datasets::require_target(&v.target, "/validation_dataset_id")?;
                    Some(v)
                }
                _ => {
                    return Err(Error::invalid(
                        "/validation_dataset_id",
                        format!("no dataset {id}"),
                    ));
                }
            },
            None => None,
        };
        // A regression learns its targets standardised unless the body says otherwise (the
        // model answers in the targets' units either way): a target in the millions trained
        // as it is diverges or crawls. Written into the stored spec, so a job keeps what it
        // was submitted with (not where the output layer is not linear: the scale cannot be
        // folded into it).
        let defaulted = !standardize_target_given
            && !spec.loss.is_classification()
            && matches!(
                summary.target,
                crate::nn::run::spec::TargetShape::Values { .. }
            );
        spec.standardize_target |= defaulted;
        let plan = match plan_job_on(&spec, &summary, validation.as_ref(), &self.limits) {
            Ok(plan) => plan,
            Err(_) if defaulted => {
                spec.standardize_target = false;
                plan_job_on(&spec, &summary, validation.as_ref(), &self.limits)?
            }
            Err(e) => return Err(e),
        };
        if let Some(id) = init_model {
            let model = match self.model(tenant, id).await {
                Err(Error::NotFound(_)) => {
                    return Err(Error::invalid("/init_model_id", format!("no model {id}")));
                }
                other => other?,
            };
            super::warm::check_warm_start(&model, &summary, &plan)
                .map_err(|m| Error::invalid("/init_model_id", m))?;
        }
        if dry_run {
            let cost = self.jobs.cost_model().await;
            return Ok(Submitted::DryRun(Box::new(estimate(
                spec,
                &summary,
                validation.as_ref(),
                &plan,
                &cost,
            ))));
        }

        self.check_queue(tenant).await?;
        let dataset_id = match inline {
            Ok((jd, dataset)) => {
                let name = jd.name.clone().unwrap_or_else(|| "inline".into());
                let id = key.record_id(tenant, "dataset");
                match self.store.get_dataset(id).await? {
                    // Stored by this key's first request, which died before queueing the job.
                    Some(d) if key.is_retry_of(d.created_at) => d.id,
                    existing => {
                        let id = if existing.is_some() {
                            Uuid::new_v4()
                        } else {
                            id
                        };
                        let columns = crate::data::Columns::from(dataset);
                        self.store_dataset(tenant, id, name, columns).await?.id
                    }
                }
            }
            Err(id) => id,
        };
        let epochs = spec.epochs as i64;
        let job = JobRecord {
            id: job_id,
            tenant: tenant.to_string(),
            seq: 0,
            status: JobStatus::Queued,
            priority,
            dataset_id: Some(dataset_id),
            spec: JobSpec {
                train: spec,
                dataset_id: Some(dataset_id),
                priority,
                name,
                validation_dataset_id: validation_dataset,
                init_model_id: init_model,
                continues: None,
                auto_learning_rate,
            },
            epochs,
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
            sweep: None,
        };
        match self.store.insert_job(&job).await {
            Ok(()) => {}
            // The same request under the same Idempotency-Key queued it a moment earlier.
            Err(StoreError::Duplicate(_)) => {
                if let Some(j) = self.store.get_job(job.id).await?
                    && j.tenant == tenant
                {
                    return Ok(Submitted::Queued(Box::new(j)));
                }
                return Err(StoreError::Duplicate(String::new()).into());
            }
            Err(e) => return Err(e.into()),
        }
        crate::crash::point("job_ack");
        self.jobs.notify();
        Ok(Submitted::Queued(Box::new(
            self.store.get_job(job.id).await?.unwrap_or(job),
        )))
    }

    /// The tenant's job `id`; another tenant's is "not found" too.
    pub async fn job(&self, tenant: &str, id: Uuid) -> Result<JobRecord> {
        match self.store.get_job(id).await? {
            Some(j) if j.tenant == tenant => Ok(j),
            _ => Err(Error::NotFound(format!("no job {id}"))),
        }
    }

    /// The tenant's queued jobs ahead of `j` (for a queued job). A job read as queued that a
    /// worker claims before its position is counted was at the front: 0, never null.
    pub async fn queue_position(&self, j: &JobRecord) -> Result<Option<i64>> {
        if j.status == JobStatus::Queued {
            Ok(Some(self.store.queue_position(j.id).await?.unwrap_or(0)))
        } else {
            Ok(None)
        }
    }

    /// The tenant's jobs: sweeps' trial jobs only when `filter` asks for them.
    pub async fn list_jobs(
        &self,
        tenant: &str,
        filter: &crate::store::ListFilter,
        cursor: Option<Cursor>,
        limit: i64,
    ) -> Result<Page<JobRecord>> {
        Ok(self.store.list_jobs(tenant, filter, cursor, limit).await?)
    }

    /// The job's epoch records after epoch `since`.
    /// At most `limit` (up to [`MAX_HISTORY_PAGE`]) epochs of `j` after epoch `since`.
    pub async fn history(&self, j: &JobRecord, since: i64, limit: i64) -> Result<Vec<Value>> {
        Ok(self
            .store
            .history(j.id, since, limit.clamp(1, MAX_HISTORY_PAGE))
            .await?)
    }

    /// Cancels a queued job at once, flags a running one (here and through the store, for
    /// whichever node runs it); a finished job is a conflict. Returns the job after.
    pub async fn cancel_job(&self, j: JobRecord) -> Result<JobRecord> {
        if j.status.is_terminal() {
            return Err(Error::Conflict(format!(
                "job {} is already {}",
                j.id,
                j.status.as_str()
            )));
        }
        let after = self.store.request_cancel(j.id).await?.unwrap_or(j);
        self.jobs.cancel_local(after.id);
        if after.status == JobStatus::Cancelled {
            self.jobs.finished_elsewhere(after.id);
        }
        Ok(after)
    }

    /// Asks a running job to stop after its current batch and keep its model.
    pub async fn stop_job(&self, j: JobRecord) -> Result<JobRecord> {
        match j.status {
            JobStatus::Running => {}
            JobStatus::Queued => {
                return Err(Error::Conflict(format!(
                    "job {} has not started; cancel it instead",
                    j.id
                )));
            }
            st => {
                return Err(Error::Conflict(format!(
                    "job {} is already {}",
                    j.id,
                    st.as_str()
                )));
            }
        }
        let after = self.store.request_stop(j.id).await?.unwrap_or(j);
        self.jobs.stop_local(after.id);
        Ok(after)
    }

    /// Deletes a job that is not running, with its history and checkpoint.
    pub async fn delete_job(&self, j: JobRecord) -> Result<()> {
        if j.status == JobStatus::Running {
            return Err(Error::Conflict(format!(
                "job {} is running; cancel it first",
                j.id
            )));
        }
        self.models.evict(j.id);
        if self.store.delete_job(j.id).await? {
            crate::crash::point("delete_ack");
            Ok(())
        } else {
            Err(Error::Conflict(format!(
                "job {} started running; cancel it first",
                j.id
            )))
        }
    }

    /// The job's latest weights: its model once it has one, else the newest checkpoint (a
    /// conflict before the first).
    pub async fn job_weights(&self, tenant: &str, j: &JobRecord) -> Result<JobWeights> {
        match j.model_id {
            Some(model_id) => Ok(JobWeights {
                model: self.model(tenant, model_id).await?,
                epoch: j.epoch,
                model_id: Some(model_id),
            }),
            None => {
                let (epoch, model) = self.snapshot(tenant, j).await?;
                Ok(JobWeights {
                    model,
                    epoch,
                    model_id: None,
                })
            }
        }
    }

    /// The model of the job's newest checkpoint: its network with the preprocessing the
    /// session fits on the job's dataset (deterministic from the stored spec and seed).
    async fn snapshot(&self, tenant: &str, j: &JobRecord) -> Result<(i64, Arc<Model>)> {
        let no_weights = || {
            Error::Conflict(match j.status {
                JobStatus::Cancelled => format!(
                    "job {} was cancelled and its weights were discarded with it (POST …/stop ends a job and keeps its model)",
                    j.id
                ),
                JobStatus::Failed => format!(
                    "job {} failed and has no weights to predict with (see its error)",
                    j.id
                ),
                _ => format!(
                    "job {} is {} and has no weights yet (no checkpoint; one is saved every --checkpoint-secs while it trains)",
                    j.id,
                    j.status.as_str()
                ),
            })
        };
        let Some((epoch, state)) = self.store.load_checkpoint(j.id).await? else {
            return Err(no_weights());
        };
        if let Some(m) = self.models.snapshot(tenant, j.id, epoch) {
            return Ok((epoch, m));
        }
        let Some(dataset_id) = j.dataset_id else {
            return Err(no_weights());
        };
        let Some(blob) = self.store.dataset_data(dataset_id).await? else {
            return Err(Error::Conflict(format!(
                "job {}'s dataset {dataset_id} was deleted",
                j.id
            )));
        };
        let validation = match j.spec.validation_dataset_id {
            Some(v) => self.store.dataset_data(v).await?,
            None => None,
        };
        let spec = j.spec.train.clone();
        let model = tokio::task::spawn_blocking(move || {
            crate::jobs::checkpoint_model(&spec, &blob, validation.as_deref(), &state)
        })
        .await?
        .map_err(|e| Error::Internal(format!("job {} checkpoint: {e}", j.id)))?;
        let model = Arc::new(model);
        self.models.put_snapshot(tenant, j.id, epoch, model.clone());
        Ok((epoch, model))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inline(layers: usize) -> Vec<u8> {
        // Hidden layers of 2 units, then an output layer whose width is inferred.
        let layers: Vec<Value> = (0..layers)
            .map(|i| {
                if i + 1 == layers {
                    serde_json::json!({})
                } else {
                    serde_json::json!({"units": 2})
                }
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "dataset": {"features": [[0, 1], [1, 0], [1, 1], [0, 0]], "targets": [1, 1, 0, 0]},
            "layers": layers, "loss": "mse", "priority": 7, "name": "n",
        }))
        .unwrap()
    }

    /// The fuzz target `job_spec` calls `plan_job`, so the layer limit must be checked there
    /// (it was checked only in the handler).
    #[test]
    fn plan_job_refuses_more_layers_than_the_limit() {
        let limits = Limits {
            max_layers: 3,
            ..Limits::DEFAULT
        };
        let req = read_request(&inline(4), &limits.data).unwrap();
        let DatasetSource::Inline(d) = req.dataset else {
            panic!("an inline dataset")
        };
        match plan_job(&req.spec, &d.1, &limits) {
            Err(Error::Invalid(errs)) => {
                assert_eq!(errs[0].pointer, "/layers");
                assert!(
                    errs[0].message.contains("--max-layers"),
                    "{}",
                    errs[0].message
                );
            }
            other => panic!("{:?}", other.map(|p| p.parameter_count)),
        }
        let req = read_request(&inline(3), &limits.data).unwrap();
        let DatasetSource::Inline(d) = req.dataset else {
            panic!("an inline dataset")
        };
        assert_eq!(plan_job(&req.spec, &d.1, &limits).unwrap().layers.len(), 3);
    }

    #[test]
    fn the_service_fields_are_read_apart_from_the_engine_spec() {
        let req = read_request(&inline(1), &DataLimits::DEFAULT).unwrap();
        assert_eq!((req.priority, req.name.as_deref()), (7, Some("n")));
        assert!(!req.seed_given);
        let mut body: Value = serde_json::from_slice(&inline(1)).unwrap();
        body["priority"] = serde_json::json!(1001);
        match read_request(&serde_json::to_vec(&body).unwrap(), &DataLimits::DEFAULT) {
            Err(Error::Invalid(errs)) => assert_eq!(errs[0].pointer, "/priority"),
            _ => panic!("priority 1001 accepted"),
        }
    }
}
