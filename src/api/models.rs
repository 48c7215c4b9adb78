//! `/v1/models`: import, read, export, delete, and predict (from the service's cache of
//! loaded models, so a predict never waits for training).

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
use crate::store::ModelRecord;

pub fn router() -> axum::Router<AppState> {
    Router::new()
        .route("/v1/models", get(list).post(import))
        // POST is TF Serving's `{name}:predict` (api::inference).
        .route(
            "/v1/models/{id}",
            get(read).delete(remove).post(super::inference::tf_predict),
        )
        .route("/v1/models/{id}/export", get(export))
        .route("/v1/models/{id}/predict", post(predict))
        .route("/v1/models/{id}/evaluate", post(evaluate))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ImportQuery {
    name: Option<String>,
}

async fn import(
    State(s): State<AppState>,
    p: Principal,
    headers: axum::http::HeaderMap,
    RawQuery(q): RawQuery,
    Body(body): Body,
) -> Result<impl IntoResponse, ApiError> {
    p.require(Role::Trainer)?;
    let idem = Idempotency::new(&headers, "POST /v1/models", q.as_deref(), &body)?;
    if let Some(r) = idem.replay(&s, &p.tenant).await? {
        return Ok(r);
    }
    // The query is read after the retry check, as the first request read it.
    let name = || parse_query::<ImportQuery>(q.as_deref()).map(|q| q.name);
    let rec = s
        .service
        .import_model(&p.tenant, &idem.key, name, &body)
        .await
        .map_err(ApiError::from);
    let rec = idem.settle(&s, &p.tenant, rec).await?;
    let location = format!("/v1/models/{}", rec.id);
    idem.answer(&s, &p.tenant, 201, Some(location), view::model(&rec))
        .await
}

/// The caller's model `id`; another tenant's is "not found" too.
async fn load(s: &AppState, p: &Principal, id: &str) -> Result<ModelRecord, ApiError> {
    let id = parse_id(id, "model")?;
    Ok(s.service.model_record(&p.tenant, id).await?)
}

async fn read(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(view::model(&load(&s, &p, &id).await?)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    format: Option<String>,
}

/// The portable JSON document, or with `?format=onnx` an ONNX model.
async fn export(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<axum::response::Response, ApiError> {
    let q: ExportQuery = parse_query(q.as_deref())?;
    match q.format.as_deref() {
        None | Some("json") => {}
        Some("onnx") => {
            let id = parse_id(&id, "model")?;
            let bytes = s.service.model_onnx(&p.tenant, id).await?;
            let disposition = format!("attachment; filename=\"model-{id}.onnx\"");
            return Ok((
                [
                    (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                bytes,
            )
                .into_response());
        }
        Some(other) => {
            return Err(ApiError::invalid(
                "/format",
                format!("unknown format {other:?}; use json or onnx"),
            ));
        }
    }
    let m = load(&s, &p, &id).await?;
    let disposition = format!("attachment; filename=\"model-{}.json\"", m.id);
    Ok((
        [(header::CONTENT_DISPOSITION, disposition)],
        Json(m.document),
    )
        .into_response())
}

async fn list(
    State(s): State<AppState>,
    p: Principal,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q: PageQuery = parse_query(q.as_deref())?;
    if q.status.is_some() {
        return Err(ApiError::invalid("/status", "models have no status filter"));
    }
    let page = s
        .service
        .list_models(&p.tenant, &q.list_filter()?, q.cursor()?, q.limit()?)
        .await?;
    Ok(Json(json!({
        "items": page.items.iter().map(view::model).collect::<Vec<_>>(),
        "next_cursor": page.next.map(|c| c.encode()),
        "total": page.total,
    })))
}

async fn remove(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.require(Role::Trainer)?;
    let id = parse_id(&id, "model")?;
    s.service.delete_model(&p.tenant, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A JSON or CSV body; a JSON answer, or CSV when asked for (see `api::predict`).
async fn predict(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
    headers: axum::http::HeaderMap,
    Body(body): Body,
) -> Result<axum::response::Response, ApiError> {
    let query = super::predict::PredictQuery::read(q.as_deref())?;
    let id = parse_id(&id, "model")?;
    let m = s.service.model(&p.tenant, id).await?;
    super::predict::answer(&s, &headers, &query, &m, id, &body, &[]).await
}

/// Scores the model on a stored dataset that has the target column. A trainer's: it reads
/// a dataset, which a predictor's key may not.
async fn evaluate(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    p.require(Role::Trainer)?;
    let id = parse_id(&id, "model")?;
    let e = s.service.evaluate_model(&p.tenant, id, &body).await?;
    let mut answer = crate::store::to_json(&e);
    answer["model_id"] = json!(id);
    Ok(Json(answer))
}
