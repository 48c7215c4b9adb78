//! Issue 14's routes that are not about one existing resource: the learning-rate range test
//! (`POST /v1/lr-range-tests`) and sweeps (`/v1/sweeps`). Each handler parses, calls one use
//! case and answers. Every route is a trainer's; another tenant's sweep is not found.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Principal, Role};
use super::extract::{Body, Idempotency, PageQuery, parse_id, parse_query};
use super::{ApiError, AppState, view};
use crate::store::{SweepRecord, to_json};

pub fn router() -> axum::Router<AppState> {
    Router::new()
        .route("/v1/lr-range-tests", post(range_test))
        .route("/v1/sweeps", get(list).post(create))
        .route("/v1/sweeps/{id}", get(read).delete(remove))
        .route("/v1/sweeps/{id}/cancel", post(cancel))
}

/// Runs the range test on a job spec and its dataset and answers the curve and the
/// suggested rates (trains, so a trainer's key; nothing is stored).
async fn range_test(
    State(s): State<AppState>,
    p: Principal,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    p.require(Role::Trainer)?;
    let t = s.service.lr_range_test(&p.tenant, &body).await?;
    Ok(Json(to_json(&t)))
}

/// `POST /v1/sweeps` takes no query parameters: a `?dry_run=true` read as nothing created a
/// real sweep.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateQuery {}

async fn create(
    State(s): State<AppState>,
    p: Principal,
    headers: axum::http::HeaderMap,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
    Body(body): Body,
) -> Result<impl IntoResponse, ApiError> {
    p.require(Role::Trainer)?;
    if q.as_deref().is_some_and(|q| q.contains("dry_run")) {
        return Err(ApiError::from(crate::service::Error::invalid(
            "/dry_run",
            "a sweep has no dry run: POST /v1/jobs?dry_run=true checks one trial's spec and what it costs",
        )));
    }
    let _: CreateQuery = super::extract::parse_query(q.as_deref())?;
    let idem = Idempotency::new(&headers, "POST /v1/sweeps", None, &body)?;
    if let Some(r) = idem.replay(&s, &p.tenant).await? {
        return Ok(r);
    }
    let created = s
        .service
        .create_sweep(&p.tenant, &idem.key, &body)
        .await
        .map_err(ApiError::from);
    let created = idem.settle(&s, &p.tenant, created).await?;
    let answer = sweep_body(&s, created).await?;
    let location = format!("/v1/sweeps/{}", answer["id"].as_str().unwrap_or_default());
    idem.answer(&s, &p.tenant, 202, Some(location), answer)
        .await
}

/// The caller's sweep `id`; another tenant's is "not found" too.
async fn load(s: &AppState, p: &Principal, id: &str) -> Result<SweepRecord, ApiError> {
    p.require(Role::Trainer)?;
    let id = parse_id(id, "sweep")?;
    Ok(s.service.sweep(&p.tenant, id).await?)
}

async fn sweep_body(s: &AppState, rec: SweepRecord) -> Result<Value, ApiError> {
    Ok(view::sweep(&s.service.sweep_view(rec).await?))
}

async fn read(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let rec = load(&s, &p, &id).await?;
    Ok(Json(sweep_body(&s, rec).await?))
}

async fn list(
    State(s): State<AppState>,
    p: Principal,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    p.require(Role::Trainer)?;
    let q: PageQuery = parse_query(q.as_deref())?;
    if q.status.is_some() {
        return Err(ApiError::invalid("/status", "sweeps have no status filter"));
    }
    let page = s
        .service
        .list_sweeps(&p.tenant, q.cursor()?, q.limit()?)
        .await?;
    Ok(Json(json!({
        "items": page.items.iter().map(view::sweep_summary).collect::<Vec<_>>(),
        "next_cursor": page.next.map(|c| c.encode()),
        "total": page.total,
    })))
}

async fn cancel(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let rec = load(&s, &p, &id).await?;
    let after = s.service.cancel_sweep(rec).await?;
    Ok((StatusCode::ACCEPTED, Json(sweep_body(&s, after).await?)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    #[serde(default, deserialize_with = "super::extract::query_bool")]
    keep_trials: Option<bool>,
}

async fn remove(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<StatusCode, ApiError> {
    let q: DeleteQuery = parse_query(q.as_deref())?;
    let rec = load(&s, &p, &id).await?;
    s.service
        .delete_sweep(rec, q.keep_trials.unwrap_or(false))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
