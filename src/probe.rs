//! The `worker` role's only listener: /healthz (the process runs), /readyz (the database
//! answers) and /metrics (its training counters), with the API's problem bodies. Not part of
//! the public API (`api::ROUTES`, openapi.yaml): a worker node serves no API at all.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::api::ApiError;
/// What the `worker` role's health listener needs: no API state, no keys.
#[derive(Clone)]
pub struct Probe {
    pub store: std::sync::Arc<dyn crate::store::Store>,
    pub jobs: crate::jobs::Jobs,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    pub metrics_token: Option<String>,
}

/// The router of the health listener.
pub fn app(probe: Probe) -> axum::Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|uri: axum::http::Uri| async move {
            ApiError::NotFound(format!(
                "no route {}: a worker serves only /healthz, /readyz and /metrics",
                uri.path()
            ))
        })
        .with_state(probe)
}

async fn readyz(State(p): State<Probe>) -> Result<Json<serde_json::Value>, ApiError> {
    p.store.ping().await?;
    Ok(Json(
        json!({"status": "ready", "running_jobs": p.jobs.running_count()}),
    ))
}

async fn metrics(
    State(p): State<Probe>,
    headers: axum::http::HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    // A worker leaves the job-count gauges to the API nodes.
    crate::api::health::render_metrics(
        &headers,
        p.metrics_token.as_deref(),
        p.metrics.as_ref(),
        &p.jobs,
        p.store.as_ref(),
        false,
    )
    .await
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}
