//! `/v1/deployments`: named deployments (point a stable name at a model, read its versions,
//! roll back, remove the name) and predictions by name. Changing a deployment needs a trainer
//! key; reading one and predicting need any key of the tenant.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::auth::{Principal, Role};
use super::extract::{Body, PageQuery, parse_query};
use super::{ApiError, AppState, view};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/deployments", get(list))
        .route(
            "/v1/deployments/{name}",
            get(read).put(deploy).delete(remove),
        )
        .route("/v1/deployments/{name}/rollback", post(rollback))
        .route("/v1/deployments/{name}/predict", post(predict))
}

async fn deploy(
    State(s): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<impl IntoResponse, ApiError> {
    p.require(Role::Trainer)?;
    let d = s.service.deploy(&p.tenant, &name, &body).await?;
    let status = if d.version == 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view::deployment(&d, None))))
}

async fn read(
    State(s): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (d, versions) = s.service.deployment(&p.tenant, &name).await?;
    Ok(Json(view::deployment(&d, Some(&versions))))
}

async fn list(
    State(s): State<AppState>,
    p: Principal,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q: PageQuery = parse_query(q.as_deref())?;
    if q.status.is_some() {
        return Err(ApiError::invalid(
            "/status",
            "deployments have no status filter",
        ));
    }
    let page = s
        .service
        .list_deployments(&p.tenant, q.cursor()?, q.limit()?)
        .await?;
    Ok(Json(json!({
        "items": page.items.iter().map(|d| view::deployment(d, None)).collect::<Vec<_>>(),
        "next_cursor": page.next.map(|c| c.encode()),
        "total": page.total,
    })))
}

async fn remove(
    State(s): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.require(Role::Trainer)?;
    s.service.delete_deployment(&p.tenant, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rollback(
    State(s): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    p.require(Role::Trainer)?;
    let d = s
        .service
        .rollback_deployment(&p.tenant, &name, &body)
        .await?;
    Ok(Json(view::deployment(&d, None)))
}

/// As `POST /v1/models/{id}/predict` (JSON or CSV), on the model the deployment points at
/// now; a JSON answer also says which deployment version answered.
async fn predict(
    State(s): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
    headers: axum::http::HeaderMap,
    Body(body): Body,
) -> Result<axum::response::Response, ApiError> {
    let query = super::predict::PredictQuery::read(q.as_deref())?;
    let r = s.service.resolve(&p.tenant, &name, None).await?;
    let extra = [("deployment", json!(name)), ("version", json!(r.version))];
    super::predict::answer(&s, &headers, &query, &r.model, r.model_id, &body, &extra).await
}
