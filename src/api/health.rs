//! Liveness, readiness and the API description.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::{ApiError, AppState};

pub const OPENAPI: &str = include_str!("../../openapi.yaml");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.yaml", get(openapi))
        .route("/metrics", get(metrics))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    s.service.store.ping().await?;
    Ok(Json(
        json!({"status": "ready", "running_jobs": s.service.jobs.running_count()}),
    ))
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI)
}

/// Prometheus text format. Gauges that describe stored state are read at scrape time.
async fn metrics(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    render_metrics(
        &headers,
        s.metrics_token.as_deref(),
        s.metrics.as_ref(),
        &s.service.jobs,
        s.service.store.as_ref(),
        true,
    )
    .await
}

/// `/metrics` for the API and for a worker's health listener: checks the optional token,
/// refreshes the gauges read at scrape time (job counts only where `count_jobs`), renders.
pub async fn render_metrics(
    headers: &axum::http::HeaderMap,
    token: Option<&str>,
    handle: Option<&metrics_exporter_prometheus::PrometheusHandle>,
    jobs: &crate::jobs::Jobs,
    store: &dyn crate::store::Store,
    count_jobs: bool,
) -> Result<impl IntoResponse + use<>, ApiError> {
    if let Some(token) = token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if crate::digest::hash(given.unwrap_or("")) != crate::digest::hash(token) {
            return Err(ApiError::Unauthorized(
                "/metrics needs \"Authorization: Bearer METRICS_TOKEN\"",
            ));
        }
    }
    let Some(handle) = handle else {
        return Err(ApiError::NotFound(
            "metrics are not enabled in this process".into(),
        ));
    };
    if count_jobs {
        for st in crate::store::JobStatus::ALL {
            if let Some(status) = crate::store::JobStatus::parse(st) {
                let n = store.count_jobs(status).await?;
                metrics::gauge!("backprop_jobs", "status" => st).set(n as f64);
            }
        }
    }
    metrics::gauge!("backprop_jobs_running_here").set(jobs.running_count() as f64);
    let (open, idle) = store.pool_use();
    metrics::gauge!("backprop_db_connections", "state" => "open").set(open as f64);
    metrics::gauge!("backprop_db_connections", "state" => "idle").set(idle as f64);
    handle.run_upkeep();
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    ))
}
