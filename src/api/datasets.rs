//! `/v1/datasets`: upload (JSON or CSV), list, read, read rows, delete.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Principal, Role};
use super::extract::{Body, Idempotency, PageQuery, parse_id, parse_query};
use super::{ApiError, AppState, view};
use crate::service::datasets::Upload;

pub fn router() -> axum::Router<AppState> {
    Router::new()
        .route("/v1/datasets", get(list).post(create))
        .route("/v1/datasets/{id}", get(read).delete(remove))
        .route("/v1/datasets/{id}/rows", get(rows))
}

/// Most rows one `GET /v1/datasets/{id}/rows` answers.
const MAX_ROWS_PER_PAGE: usize = 10_000;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RowsQuery {
    offset: Option<i64>,
    limit: Option<i64>,
}

/// The stored rows `offset..offset + limit`, as they were uploaded (raw features; class
/// labels as in the data): a preview, or the points a dashboard draws.
async fn rows(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    p.require(Role::Trainer)?;
    let q: RowsQuery = parse_query(q.as_deref())?;
    let offset = match q.offset {
        None => 0,
        Some(o) if o >= 0 => o as usize,
        Some(o) => {
            return Err(ApiError::invalid(
                "/offset",
                format!("must be 0 or more, got {o}"),
            ));
        }
    };
    let limit = match q.limit {
        None => 20,
        Some(l) if (1..=MAX_ROWS_PER_PAGE as i64).contains(&l) => l as usize,
        Some(l) => {
            return Err(ApiError::invalid(
                "/limit",
                format!("must be between 1 and {MAX_ROWS_PER_PAGE}, got {l}"),
            ));
        }
    };
    let id = parse_id(&id, "dataset")?;
    let (d, ds) = s.service.dataset(&p.tenant, id).await?;
    Ok(Json(json!({
        "dataset_id": d.id,
        "total": ds.rows(),
        "offset": offset,
        "feature_names": ds.feature_names,
        "target_names": ds.target_names,
        "rows": ds.slice(offset, limit),
    })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    name: Option<String>,
    target: Option<String>,
}

async fn create(
    State(s): State<AppState>,
    p: Principal,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<impl IntoResponse, ApiError> {
    p.require(Role::Trainer)?;
    let query: UploadQuery = parse_query(q.as_deref())?;
    let idem = Idempotency::new(&headers, "POST /v1/datasets", q.as_deref(), &body)?;
    if let Some(r) = idem.replay(&s, &p.tenant).await? {
        return Ok(r);
    }
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let media_type = ctype
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let upload = Upload {
        media_type,
        name: query.name,
        target: query.target,
        body,
    };
    let rec = s
        .service
        .upload_dataset(&p.tenant, &idem.key, upload)
        .await?;
    let location = format!("/v1/datasets/{}", rec.id);
    idem.answer(&s, &p.tenant, 201, Some(location), view::dataset(&rec))
        .await
}

async fn list(
    State(s): State<AppState>,
    p: Principal,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q: PageQuery = parse_query(q.as_deref())?;
    p.require(Role::Trainer)?;
    let page = s
        .service
        .list_datasets(&p.tenant, q.cursor()?, q.limit()?)
        .await?;
    Ok(Json(json!({
        "items": page.items.iter().map(view::dataset).collect::<Vec<_>>(),
        "next_cursor": page.next.map(|n| n.to_string()),
    })))
}

async fn read(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    p.require(Role::Trainer)?;
    let id = parse_id(&id, "dataset")?;
    Ok(Json(view::dataset(
        &s.service.dataset_record(&p.tenant, id).await?,
    )))
}

async fn remove(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.require(Role::Trainer)?;
    let id = parse_id(&id, "dataset")?;
    s.service.delete_dataset(&p.tenant, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
