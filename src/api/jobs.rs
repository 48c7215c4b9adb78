//! `/v1/jobs`: submit (validated against the dataset before it is queued), read, list,
//! history, cancel, stop, delete, and predict with a job's latest weights (its checkpoint
//! while it trains, its model once it has one).

use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::auth::{Principal, Role};
use super::error::{from_value, parse_json};
use super::{
    ApiError, AppState, Body, Idempotency, Limits, PageQuery, parse_id, parse_query, rfc3339,
};
use crate::data::{Dataset, JsonDataset, Limits as DataLimits, Summary};
use crate::jobs::SERVICE_FIELDS;
use crate::nn::TrainSpec;
use crate::nn::TrainState;
use crate::nn::spec::Plan;
use crate::store::{JobRecord, JobStatus, now_ms, to_json};

pub fn router() -> axum::Router<AppState> {
    Router::new()
        .route("/v1/jobs", get(list).post(create))
        .route("/v1/jobs/{id}", get(read).delete(remove))
        .route("/v1/jobs/{id}/history", get(history))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/v1/jobs/{id}/stop", post(stop))
        .route("/v1/jobs/{id}/predict", post(predict))
}

/// The job resource as the API shows it.
pub async fn view(s: &AppState, j: &JobRecord) -> Result<Value, ApiError> {
    let queue_position = if j.status == JobStatus::Queued {
        s.store.queue_position(j.id).await?
    } else {
        None
    };
    let per_epoch_ms = j
        .latest
        .as_ref()
        .and_then(|l| l.get("elapsed_ms"))
        .and_then(|v| v.as_f64());
    let eta = match (j.status, per_epoch_ms) {
        (JobStatus::Running, Some(ms)) => {
            Some(((j.epochs - j.epoch).max(0) as f64 * ms / 1000.0 * 10.0).round() / 10.0)
        }
        _ => None,
    };
    Ok(json!({
        "id": j.id,
        "status": j.status,
        "dataset_id": j.dataset_id,
        "priority": j.priority,
        "epoch": j.epoch,
        "epochs": j.epochs,
        "metrics": j.latest,
        "created_at": rfc3339(j.created_at),
        "started_at": j.started_at.map(rfc3339),
        "finished_at": j.finished_at.map(rfc3339),
        "queue_position": queue_position,
        "eta_seconds": eta,
        "model_id": j.model_id,
        "error": j.error,
        "stop_reason": j.stop_reason,
        "cancel_requested": j.cancel_requested,
        "stop_requested": j.stop_requested,
        "attempt": j.attempt,
        "spec": j.spec,
    }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateQuery {
    dry_run: Option<bool>,
}

/// Where a job's data comes from.
pub enum DatasetSource {
    /// A stored dataset, by id; the handler checks it exists and belongs to the caller.
    Stored(Uuid),
    /// An inline dataset: the body as given (for its name) and the checked dataset.
    Inline(Box<(JsonDataset, Dataset)>),
}

/// A `POST /v1/jobs` body, read and checked as far as it can be without the store.
pub struct JobRequest {
    /// The engine's spec (the service fields removed); its seed is 0 unless `seed_given`.
    pub spec: TrainSpec,
    pub seed_given: bool,
    pub priority: i32,
    pub name: Option<String>,
    pub dataset: DatasetSource,
    /// A stored dataset to validate on instead of a `validation_split`.
    pub validation_dataset: Option<Uuid>,
}

/// Reads a job request body: the spec, the service fields, and an inline dataset if there is
/// one. Pure (no store), so the fuzz target `job_spec` exercises exactly what the handler does.
pub fn read_request(body: &[u8], limits: &DataLimits) -> Result<JobRequest, ApiError> {
    let raw: Value = parse_json(body)?;
    let Some(obj) = raw.as_object() else {
        return Err(ApiError::invalid("/", "the job spec must be a JSON object"));
    };
    let mut engine = obj.clone();
    for f in SERVICE_FIELDS {
        engine.remove(f);
    }
    let seed_given = engine.contains_key("seed");
    let spec: TrainSpec = from_value(Value::Object(engine), "")?;
    let priority = match obj.get("priority") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_i64()
            .filter(|p| (-1000..=1000).contains(p))
            .ok_or_else(|| {
                ApiError::invalid("/priority", "must be a whole number from -1000 to 1000")
            })? as i32,
    };
    let name = match obj.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) if !n.is_empty() && n.len() <= 200 => Some(n.clone()),
        Some(_) => {
            return Err(ApiError::invalid(
                "/name",
                "must be a string of 1 to 200 characters",
            ));
        }
    };
    let dataset = match (obj.get("dataset_id"), obj.get("dataset")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "/dataset",
                "give dataset_id or dataset, not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "/dataset_id",
                "is required (or an inline \"dataset\")",
            ));
        }
        (Some(id), None) => DatasetSource::Stored(
            id.as_str()
                .and_then(|i| Uuid::parse_str(i).ok())
                .ok_or_else(|| ApiError::invalid("/dataset_id", "must be a dataset id (a UUID)"))?,
        ),
        (None, Some(d)) => {
            let jd: JsonDataset = from_value(d.clone(), "/dataset")?;
            let ds = crate::data::from_json(&jd, limits).map_err(|mut e| {
                e.pointer = Some(format!("/dataset{}", e.pointer.unwrap_or_default()));
                e
            })?;
            DatasetSource::Inline(Box::new((jd, ds)))
        }
    };
    let validation_dataset = match obj.get("validation_dataset_id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_str()
                .and_then(|i| Uuid::parse_str(i).ok())
                .ok_or_else(|| {
                    ApiError::invalid("/validation_dataset_id", "must be a dataset id (a UUID)")
                })?,
        ),
    };
    if validation_dataset.is_some() && spec.validation_split > 0.0 {
        return Err(ApiError::invalid(
            "/validation_split",
            "give validation_split or validation_dataset_id, not both",
        ));
    }
    Ok(JobRequest {
        spec,
        seed_given,
        priority,
        name,
        dataset,
        validation_dataset,
    })
}

/// Validates `spec` against `dataset` and the server's limits: the whole check a job passes
/// before it is queued. A job that passes it trains (or diverges, at run time); the worker
/// never refuses it for a reason visible here.
pub fn plan_job(spec: &TrainSpec, dataset: &Dataset, limits: &Limits) -> Result<Plan, ApiError> {
    plan_job_on(spec, &Summary::of(dataset), None, limits)
}

/// [`plan_job`] from what a dataset's metadata says of it (no data decoded), with the summary
/// of a separate validation dataset when the job names one.
pub fn plan_job_on(
    spec: &TrainSpec,
    dataset: &Summary,
    validation: Option<&Summary>,
    limits: &Limits,
) -> Result<Plan, ApiError> {
    if spec.epochs > limits.max_epochs {
        return Err(ApiError::invalid(
            "/epochs",
            format!("at most {} epochs (--max-epochs)", limits.max_epochs),
        ));
    }
    let (width, _) = spec
        .input_width(&dataset.columns, dataset.rows)
        .map_err(ApiError::Invalid)?;
    if let Some(v) = validation {
        let names = |c: &[crate::nn::tabular::ColumnSchema]| {
            c.iter().map(|c| c.name.clone()).collect::<Vec<_>>()
        };
        if names(&v.columns) != names(&dataset.columns) {
            return Err(ApiError::invalid(
                "/validation_dataset_id",
                format!(
                    "the validation dataset's columns {:?} differ from the training dataset's {:?}",
                    names(&v.columns),
                    names(&dataset.columns)
                ),
            ));
        }
    }
    let plan = match validation {
        Some(_) => spec.plan_with_validation_set(width, dataset.rows, &dataset.target),
        None => spec.plan(width, dataset.rows, &dataset.target),
    }
    .map_err(ApiError::Invalid)?;
    if plan.parameter_count > limits.max_parameters {
        return Err(ApiError::invalid(
            "/layers",
            format!(
                "{} parameters is more than this server's limit of {} (--max-parameters)",
                plan.parameter_count, limits.max_parameters
            ),
        ));
    }
    Ok(plan)
}

async fn create(
    State(s): State<AppState>,
    p: Principal,
    RawQuery(q): RawQuery,
    headers: axum::http::HeaderMap,
    Body(body): Body,
) -> Result<impl IntoResponse, ApiError> {
    p.require(Role::Trainer)?;
    let query: CreateQuery = parse_query(q.as_deref())?;
    let idem = Idempotency::new(&headers, "POST /v1/jobs", q.as_deref(), &body)?;
    if let Some(r) = idem.replay(&s, &p.tenant).await? {
        return Ok(r);
    }
    let job_id = match s.store.get_job(idem.record_id(&p.tenant, "job")).await? {
        // Queued by this key's first request, which died before answering.
        Some(j) if idem.is_retry_of(j.created_at) => {
            let mut body = view(&s, &j).await?;
            body["status"] = json!("queued");
            let location = format!("/v1/jobs/{}", j.id);
            return idem.answer(&s, &p.tenant, 202, Some(location), body).await;
        }
        Some(_) => Uuid::new_v4(),
        None => idem.record_id(&p.tenant, "job"),
    };
    let JobRequest {
        mut spec,
        seed_given,
        priority,
        name,
        dataset: source,
        validation_dataset,
    } = read_request(&body, &s.limits.data)?;
    if spec.layers.len() > s.limits.max_layers {
        return Err(ApiError::invalid(
            "/layers",
            format!(
                "{} layers is more than this server's limit of {} (--max-layers)",
                spec.layers.len(),
                s.limits.max_layers
            ),
        ));
    }
    if !seed_given {
        spec.seed =
            u64::from_le_bytes(Uuid::new_v4().as_bytes()[..8].try_into().unwrap_or([0; 8])) >> 11;
    }

    // The dataset: by id (checked against the schema in its metadata, without decoding it),
    // or inline (stored as a dataset of its own).
    let (summary, inline): (Summary, Result<(JsonDataset, Dataset), Uuid>) = match source {
        DatasetSource::Stored(id) => match s.store.get_dataset(id).await? {
            Some(d) if d.tenant == p.tenant => (super::datasets::summary(&s, &d).await?, Err(id)),
            _ => return Err(ApiError::invalid("/dataset_id", format!("no dataset {id}"))),
        },
        DatasetSource::Inline(inline) => {
            let (jd, ds) = *inline;
            (Summary::of(&ds), Ok((jd, ds)))
        }
    };
    let validation = match validation_dataset {
        Some(id) => match s.store.get_dataset(id).await? {
            Some(d) if d.tenant == p.tenant => Some(super::datasets::summary(&s, &d).await?),
            _ => {
                return Err(ApiError::invalid(
                    "/validation_dataset_id",
                    format!("no dataset {id}"),
                ));
            }
        },
        None => None,
    };
    let plan = plan_job_on(&spec, &summary, validation.as_ref(), &s.limits)?;

    let rows = summary.rows;
    let inputs = summary.columns.len();
    let outputs = match &summary.target {
        crate::nn::spec::TargetShape::Values { width, .. } => *width,
        crate::nn::spec::TargetShape::Labels { .. } => 1,
    };
    let train_rows = rows - ((rows as f64) * spec.validation_split as f64).round() as usize;
    if query.dry_run.unwrap_or(false) {
        // ~6 flops per parameter per sample (forward + backward), at a conservative 20 GFLOP/s.
        let flops = 6.0 * plan.parameter_count as f64 * train_rows as f64;
        let batch = spec.batch_size.min(train_rows.max(1));
        let widths: usize = plan
            .layers
            .iter()
            .map(|l| match l {
                crate::nn::spec::PlannedLayer::Dense { units, .. } => *units,
                crate::nn::spec::PlannedLayer::Dropout(_) => 0,
            })
            .sum();
        let memory = 4
            * (rows * (inputs + outputs + plan.input_dim)
                + 4 * plan.parameter_count
                + 3 * batch * (widths + plan.input_dim));
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json".to_string())],
            Json(json!({
                "valid": true,
                "parameter_count": plan.parameter_count,
                "train_rows": train_rows,
                "validation_rows": validation.as_ref().map_or(rows - train_rows, |v| v.rows),
                "estimated_memory_bytes": memory,
                "estimated_seconds_per_epoch": flops / 20e9,
                "spec": to_json(&spec),
            })),
        )
            .into_response());
    }

    let quota = s.limits.quota_queued_jobs;
    if quota > 0 {
        let queued = s.store.usage(&p.tenant).await?.queued;
        if queued >= quota {
            return Err(ApiError::TooMany {
                detail: format!(
                    "tenant {} has {queued} queued jobs, its quota; retry when some have run",
                    p.tenant
                ),
                retry_after: 30,
            });
        }
    }
    if s.store.count_jobs(JobStatus::Queued).await? >= s.limits.max_queued_jobs {
        return Err(ApiError::TooMany {
            detail: format!(
                "the queue holds {} jobs, its limit; retry later",
                s.limits.max_queued_jobs
            ),
            retry_after: 30,
        });
    }
    let dataset_id = match inline {
        Ok((jd, dataset)) => {
            let name = jd.name.clone().unwrap_or_else(|| "inline".into());
            let id = idem.record_id(&p.tenant, "dataset");
            match s.store.get_dataset(id).await? {
                // Stored by this key's first request, which died before queueing the job.
                Some(d) if idem.is_retry_of(d.created_at) => d.id,
                existing => {
                    let id = if existing.is_some() {
                        Uuid::new_v4()
                    } else {
                        id
                    };
                    super::datasets::store_dataset(&s, &p.tenant, id, name, dataset)
                        .await?
                        .id
                }
            }
        }
        Err(id) => id,
    };
    let mut stored = to_json(&spec);
    stored["dataset_id"] = json!(dataset_id);
    if let Some(v) = validation_dataset {
        stored["validation_dataset_id"] = json!(v);
    }
    stored["priority"] = json!(priority);
    if let Some(n) = &name {
        stored["name"] = json!(n);
    }
    let job = JobRecord {
        id: job_id,
        tenant: p.tenant.clone(),
        seq: 0,
        status: JobStatus::Queued,
        priority,
        dataset_id: Some(dataset_id),
        spec: stored,
        epochs: spec.epochs as i64,
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
    };
    s.store.insert_job(&job).await?;
    crate::crash::point("job_ack");
    s.jobs.notify();
    let j = s.store.get_job(job.id).await?.unwrap_or(job);
    let mut body = view(&s, &j).await?;
    // The answer describes the job as submitted, even if a worker has claimed it already.
    body["status"] = json!("queued");
    idem.answer(&s, &p.tenant, 202, Some(format!("/v1/jobs/{}", j.id)), body)
        .await
}

/// The caller's job `id` (a trainer's); another tenant's is "not found" too.
pub async fn load(s: &AppState, p: &Principal, id: &str) -> Result<JobRecord, ApiError> {
    p.require(Role::Trainer)?;
    let id = parse_id(id, "job")?;
    match s.store.get_job(id).await? {
        Some(j) if j.tenant == p.tenant => Ok(j),
        _ => Err(ApiError::NotFound(format!("no job {id}"))),
    }
}

async fn read(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let j = load(&s, &p, &id).await?;
    Ok(Json(view(&s, &j).await?))
}

async fn list(
    State(s): State<AppState>,
    p: Principal,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    p.require(Role::Trainer)?;
    let q: PageQuery = parse_query(q.as_deref())?;
    let status = match q.status.as_deref() {
        None => None,
        Some(st) => Some(JobStatus::parse(st).ok_or_else(|| {
            ApiError::invalid(
                "/status",
                format!(
                    "unknown status \"{st}\"; expected one of {}",
                    JobStatus::ALL.join(", ")
                ),
            )
        })?),
    };
    let page = s
        .store
        .list_jobs(&p.tenant, status, q.cursor()?, q.limit()?)
        .await?;
    let mut items = Vec::with_capacity(page.items.len());
    for j in &page.items {
        items.push(view(&s, j).await?);
    }
    Ok(Json(
        json!({"items": items, "next_cursor": page.next.map(|n| n.to_string())}),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    since: Option<i64>,
}

async fn history(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q: HistoryQuery = parse_query(q.as_deref())?;
    let j = load(&s, &p, &id).await?;
    let since = q.since.unwrap_or(0);
    if since < 0 {
        return Err(ApiError::invalid("/since", "must be 0 or more"));
    }
    let epochs = s.store.history(j.id, since).await?;
    Ok(Json(
        json!({"job_id": j.id, "status": j.status, "epochs": epochs}),
    ))
}

async fn cancel(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let j = load(&s, &p, &id).await?;
    if j.status.is_terminal() {
        return Err(ApiError::Conflict(format!(
            "job {} is already {}",
            j.id,
            j.status.as_str()
        )));
    }
    let after = s.store.request_cancel(j.id).await?.unwrap_or(j);
    s.jobs.cancel_local(after.id);
    if after.status == JobStatus::Cancelled {
        s.jobs.finished_elsewhere(after.id);
    }
    Ok((StatusCode::ACCEPTED, Json(view(&s, &after).await?)))
}

async fn stop(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let j = load(&s, &p, &id).await?;
    match j.status {
        JobStatus::Running => {}
        JobStatus::Queued => {
            return Err(ApiError::Conflict(format!(
                "job {} has not started; cancel it instead",
                j.id
            )));
        }
        st => {
            return Err(ApiError::Conflict(format!(
                "job {} is already {}",
                j.id,
                st.as_str()
            )));
        }
    }
    let after = s.store.request_stop(j.id).await?.unwrap_or(j);
    s.jobs.stop_local(after.id);
    Ok((StatusCode::ACCEPTED, Json(view(&s, &after).await?)))
}

async fn remove(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let j = load(&s, &p, &id).await?;
    if j.status == JobStatus::Running {
        return Err(ApiError::Conflict(format!(
            "job {} is running; cancel it first",
            j.id
        )));
    }
    s.models.evict(j.id);
    if s.store.delete_job(j.id).await? {
        crate::crash::point("delete_ack");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::Conflict(format!(
            "job {} started running; cancel it first",
            j.id
        )))
    }
}

/// Predicts with the job's latest weights: its model once it has one, else the newest
/// checkpoint (409 before the first). The answer says which, and after which epoch, so a
/// dashboard can redraw a decision boundary while the job trains.
async fn predict(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let j = load(&s, &p, &id).await?;
    // A body that is not JSON at all is a 400 before anything about the job.
    let _: serde::de::IgnoredAny = parse_json(&body)?;
    let (model, epoch, mut answer) = match j.model_id {
        Some(model_id) => (
            super::models::model(&s, &p, model_id).await?,
            j.epoch,
            json!({"job_id": j.id, "source": "model", "model_id": model_id}),
        ),
        None => {
            let (epoch, model) = snapshot(&s, &p, &j).await?;
            (
                model,
                epoch,
                json!({"job_id": j.id, "source": "checkpoint"}),
            )
        }
    };
    answer["epoch"] = json!(epoch);
    super::models::predict_rows(&s, &model, &body, &mut answer).await?;
    Ok(Json(answer))
}

/// The model of the job's newest checkpoint: its network with the preprocessing the session
/// fits on the job's dataset (deterministic from the stored spec and seed).
async fn snapshot(
    s: &AppState,
    p: &Principal,
    j: &JobRecord,
) -> Result<(i64, std::sync::Arc<crate::nn::Model>), ApiError> {
    let no_weights = || {
        ApiError::Conflict(format!(
            "job {} is {} and has no weights yet (no checkpoint; one is saved every --checkpoint-secs while it trains)",
            j.id,
            j.status.as_str()
        ))
    };
    let Some((epoch, state)) = s.store.load_checkpoint(j.id).await? else {
        return Err(no_weights());
    };
    if let Some(m) = s.models.snapshot(&p.tenant, j.id, epoch) {
        return Ok((epoch, m));
    }
    let Some(dataset_id) = j.dataset_id else {
        return Err(no_weights());
    };
    let Some(blob) = s.store.dataset_data(dataset_id).await? else {
        return Err(ApiError::Conflict(format!(
            "job {}'s dataset {dataset_id} was deleted",
            j.id
        )));
    };
    let spec = crate::jobs::train_spec(&j.spec).map_err(ApiError::Internal)?;
    let validation = match crate::jobs::validation_dataset_id(&j.spec) {
        Some(v) => s.store.dataset_data(v).await?,
        None => None,
    };
    let model = tokio::task::spawn_blocking(move || {
        let dataset = Dataset::from_bytes(&blob)?;
        let validation = validation.map(|b| Dataset::from_bytes(&b)).transpose()?;
        let session = crate::jobs::session(&spec, &dataset, validation.as_ref())
            .map_err(|e| e.to_string())?;
        let state = TrainState::from_bytes(&state)?;
        let mut model = session.model(state.network);
        if model.feature_names.is_none() {
            model.feature_names = Some(dataset.feature_names);
        }
        Ok::<_, String>(model)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(format!("job {} checkpoint: {e}", j.id)))?;
    let model = std::sync::Arc::new(model);
    s.models.put_snapshot(&p.tenant, j.id, epoch, model.clone());
    Ok((epoch, model))
}
