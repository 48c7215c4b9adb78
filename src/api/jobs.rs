//! `/v1/jobs`: submit, read, list, history, cancel, stop, delete, and predict with a job's
//! latest weights (its checkpoint while it trains, its model once it has one). Each handler
//! parses the request, calls one use case of `service`, and answers.

use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Principal, Role};
use super::extract::{Body, Idempotency, PageQuery, parse_id, parse_query};
use super::{ApiError, AppState, view};
use crate::service::jobs::{MAX_HISTORY_PAGE, Submitted};
use crate::service::read::parse_json;
use crate::store::{JobRecord, JobStatus, to_json};

pub fn router() -> axum::Router<AppState> {
    Router::new()
        .route("/v1/jobs", get(list).post(create))
        .route("/v1/jobs/{id}", get(read).delete(remove))
        .route("/v1/jobs/{id}/history", get(history))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/v1/jobs/{id}/stop", post(stop))
        .route("/v1/jobs/{id}/predict", post(predict))
        .route("/v1/jobs/{id}/continue", post(continue_job))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateQuery {
    #[serde(default, deserialize_with = "super::extract::query_bool")]
    dry_run: Option<bool>,
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
    let submitted = s
        .service
        .submit_job(&p.tenant, &idem.key, &body, query.dry_run.unwrap_or(false))
        .await
        .map_err(ApiError::from);
    let submitted = idem.settle(&s, &p.tenant, submitted).await?;
    let j = match submitted {
        Submitted::DryRun(e) => {
            // A dry run creates nothing: its key stays free for the real submission.
            idem.key.release(s.service.store.as_ref(), &p.tenant).await;
            return Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json".to_string())],
                Json(json!({
                    "valid": true,
                    "parameter_count": e.parameter_count,
                    "train_rows": e.train_rows,
                    "validation_rows": e.validation_rows,
                    "estimated_memory_bytes": e.memory_bytes,
                    "estimated_seconds_per_epoch": e.seconds_per_epoch,
                    "spec": to_json(&e.spec),
                })),
            )
                .into_response());
        }
        Submitted::Queued(j) => *j,
    };
    let mut body = view::job(&s, &j).await?;
    as_submitted(&mut body, true);
    let location = format!("/v1/jobs/{}", j.id);
    idem.answer(&s, &p.tenant, 202, Some(location), body).await
}

/// The 202 describes a job as submitted, even if a worker has claimed it (and run some of
/// it) before the answer was built: queued, not started, attempt 0, at the front of the queue
/// if it has left it; a `fresh` job also at epoch 0 with no metrics.
fn as_submitted(body: &mut Value, fresh: bool) {
    body["status"] = json!("queued");
    body["started_at"] = Value::Null;
    body["eta_seconds"] = Value::Null;
    body["attempt"] = json!(0);
    if fresh {
        body["epoch"] = json!(0);
        body["metrics"] = Value::Null;
    }
    if body["queue_position"].is_null() {
        body["queue_position"] = json!(0);
    }
}

/// The caller's job `id` (a trainer's); another tenant's is "not found" too.
pub async fn load(s: &AppState, p: &Principal, id: &str) -> Result<JobRecord, ApiError> {
    p.require(Role::Trainer)?;
    let id = parse_id(id, "job")?;
    Ok(s.service.job(&p.tenant, id).await?)
}

async fn read(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let j = load(&s, &p, &id).await?;
    Ok(Json(view::job(&s, &j).await?))
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
    let filter = crate::store::ListFilter {
        status,
        ..q.list_filter()?
    };
    let page = s
        .service
        .list_jobs(&p.tenant, &filter, q.cursor()?, q.limit()?)
        .await?;
    let mut items = Vec::with_capacity(page.items.len());
    for j in &page.items {
        items.push(view::job(&s, j).await?);
    }
    Ok(Json(
        json!({"items": items, "next_cursor": page.next.map(|c| c.encode()), "total": page.total}),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    since: Option<i64>,
    limit: Option<i64>,
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
    let limit = q.limit.unwrap_or(MAX_HISTORY_PAGE);
    if !(1..=MAX_HISTORY_PAGE).contains(&limit) {
        return Err(ApiError::invalid(
            "/limit",
            format!("must be 1 to {MAX_HISTORY_PAGE}"),
        ));
    }
    let epochs = s.service.history(&j, since, limit).await?;
    // A full page may have more after it: `next_since` is its last epoch.
    let next_since = (epochs.len() as i64 == limit)
        .then(|| epochs.last().and_then(|r| r.get("epoch")).cloned())
        .flatten();
    Ok(Json(
        json!({"job_id": j.id, "status": j.status, "epochs": epochs, "next_since": next_since}),
    ))
}

async fn cancel(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let j = load(&s, &p, &id).await?;
    let after = s.service.cancel_job(j).await?;
    Ok((StatusCode::ACCEPTED, Json(view::job(&s, &after).await?)))
}

async fn stop(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let j = load(&s, &p, &id).await?;
    let after = s.service.stop_job(j).await?;
    Ok((StatusCode::ACCEPTED, Json(view::job(&s, &after).await?)))
}

async fn remove(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let j = load(&s, &p, &id).await?;
    s.service.delete_job(j).await?;
    Ok(StatusCode::NO_CONTENT)
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
    let w = s.service.job_weights(&p.tenant, &j).await?;
    let mut answer = match w.model_id {
        Some(model_id) => json!({"job_id": j.id, "source": "model", "model_id": model_id}),
        None => json!({"job_id": j.id, "source": "checkpoint"}),
    };
    answer["epoch"] = json!(w.epoch);
    let pred = s.service.predict(&w.model, &body).await?;
    view::add_prediction(&mut answer, pred);
    Ok(Json(answer))
}

/// Queues a new job continuing a succeeded one for more epochs (202, like a submission).
async fn continue_job(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    Body(body): Body,
) -> Result<impl IntoResponse, ApiError> {
    let j = load(&s, &p, &id).await?;
    // The job's id goes into the fingerprint: one key continuing another job is a conflict.
    let source = j.id.to_string();
    let idem = Idempotency::new(
        &headers,
        "POST /v1/jobs/{id}/continue",
        Some(&source),
        &body,
    )?;
    if let Some(r) = idem.replay(&s, &p.tenant).await? {
        return Ok(r);
    }
    let queued = s
        .service
        .continue_job(&p.tenant, &idem.key, &j, &body)
        .await
        .map_err(ApiError::from);
    let queued = idem.settle(&s, &p.tenant, queued).await?;
    let mut body = view::job(&s, &queued).await?;
    // A continuation keeps the epoch and metrics of the epochs it copied.
    as_submitted(&mut body, false);
    let location = format!("/v1/jobs/{}", queued.id);
    idem.answer(&s, &p.tenant, 202, Some(location), body).await
}
