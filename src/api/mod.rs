//! The HTTP API: the router, one file per resource, and the shared state. Talks to
//! `store`, `jobs`, `data` and `nn`'s predict; never to SQL.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Uri;
use tokio::net::TcpListener;

use crate::service::Service;

pub mod auth;
pub mod batch;
pub mod dashboard;
pub mod datasets;
pub mod deployments;
pub mod error;
pub mod events;
pub mod extract;
pub mod fair;
pub mod health;
pub mod inference;
pub mod jobs;
pub mod models;
pub mod observe;
pub mod predict;
pub mod tuning;
pub mod view;

pub use error::ApiError;

/// Limits of the HTTP face (what a request may ask for is `service::Limits`).
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_sse_clients: usize,
    pub request_timeout: std::time::Duration,
    /// How long a connection may take to send a request's headers (slowloris).
    pub header_read_timeout: std::time::Duration,
    /// Allowed CORS origins; empty means CORS stays off.
    pub cors_origins: Vec<String>,
}

#[derive(Clone)]
pub struct AppState {
    /// The use cases (and through them the store, the queue and the model cache).
    pub service: Service,
    pub limits: Arc<Limits>,
    pub keys: Arc<crate::auth::Keyring>,
    /// When set, `/metrics` wants `Authorization: Bearer` with this token.
    pub metrics_token: Option<String>,
    /// Renders `/metrics`; `None` when no recorder is installed.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// One permit per open event stream (`--max-sse-clients`).
    pub event_streams: Arc<tokio::sync::Semaphore>,
    /// Per-key rate limits and per-tenant event-stream shares.
    pub fair: Arc<fair::Fairness>,
}

/// Every route the router serves, as (method, path); `openapi.yaml` must list exactly these.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/openapi.yaml"),
    ("get", "/metrics"),
    ("post", "/v1/datasets"),
    ("get", "/v1/datasets"),
    ("get", "/v1/datasets/{id}"),
    ("delete", "/v1/datasets/{id}"),
    ("get", "/v1/datasets/{id}/rows"),
    ("get", "/v1/datasets/{id}/leaderboard"),
    ("post", "/v1/jobs"),
    ("get", "/v1/jobs"),
    ("get", "/v1/jobs/{id}"),
    ("delete", "/v1/jobs/{id}"),
    ("get", "/v1/jobs/{id}/history"),
    ("get", "/v1/jobs/{id}/events"),
    ("post", "/v1/jobs/{id}/cancel"),
    ("post", "/v1/jobs/{id}/stop"),
    ("post", "/v1/jobs/{id}/predict"),
    ("post", "/v1/models"),
    ("get", "/v1/models"),
    ("get", "/v1/models/{id}"),
    ("delete", "/v1/models/{id}"),
    ("get", "/v1/models/{id}/export"),
    ("post", "/v1/models/{id}/predict"),
    // Serving to other services (issue 13).
    ("get", "/v1/deployments"),
    ("get", "/v1/deployments/{name}"),
    ("put", "/v1/deployments/{name}"),
    ("delete", "/v1/deployments/{name}"),
    ("post", "/v1/deployments/{name}/rollback"),
    ("post", "/v1/deployments/{name}/predict"),
    ("get", "/v2"),
    ("get", "/v2/health/live"),
    ("get", "/v2/health/ready"),
    ("get", "/v2/models/{name}"),
    ("get", "/v2/models/{name}/ready"),
    ("post", "/v2/models/{name}/infer"),
    ("get", "/v2/models/{name}/versions/{version}"),
    ("get", "/v2/models/{name}/versions/{version}/ready"),
    ("post", "/v2/models/{name}/versions/{version}/infer"),
    ("post", "/v1/models/{id}"),
    ("post", "/v1/models/{id}/versions/{version}"),
    ("post", "/v1/models/{id}/predictions"),
    ("get", "/v1/models/{id}/predictions/{batch}"),
    ("get", "/v1/models/{id}/predictions/{batch}/result"),
    // issue 14: evaluation, warm starts, the learning-rate range test, sweeps
    ("post", "/v1/models/{id}/evaluate"),
    ("post", "/v1/jobs/{id}/continue"),
    ("post", "/v1/lr-range-tests"),
    ("post", "/v1/sweeps"),
    ("get", "/v1/sweeps"),
    ("get", "/v1/sweeps/{id}"),
    ("delete", "/v1/sweeps/{id}"),
    ("post", "/v1/sweeps/{id}/cancel"),
    ("get", "/v1/sweeps/{id}/events"),
];

/// The application: all routes, limits and fallbacks.
pub fn app(state: AppState) -> Router {
    use axum::middleware::{from_fn, from_fn_with_state};
    let limits = state.limits.clone();
    // Everything but the event stream gets a timeout.
    let bounded = Router::new()
        .merge(health::router())
        .merge(datasets::router())
        .merge(jobs::router())
        .merge(models::router())
        .merge(deployments::router())
        .merge(inference::router())
        .merge(batch::router())
        .merge(tuning::router())
        .merge(dashboard::router())
        .layer(from_fn_with_state(limits.request_timeout, observe::timeout));
    let mut router = bounded
        .merge(events::router())
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .route_layer(from_fn(observe::label_route))
        .layer(from_fn_with_state(state.clone(), fair::limit))
        .with_state(state);
    if !limits.cors_origins.is_empty() {
        let origins: Vec<axum::http::HeaderValue> = limits
            .cors_origins
            .iter()
            .filter_map(|o| o.parse().ok())
            .collect();
        router = router.layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(origins)
                .allow_methods(tower_http::cors::Any)
                .allow_headers(tower_http::cors::Any)
                .expose_headers([observe::REQUEST_ID.clone(), axum::http::header::LOCATION]),
        );
    }
    router
        .layer(tower_http::decompression::RequestDecompressionLayer::new().gzip(true))
        .layer(from_fn(observe::media_type))
        .layer(from_fn(observe::problems))
        .layer(from_fn(inference::protocol_errors))
        // Outside the layers that rewrite error bodies, so they read them uncompressed.
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(from_fn(observe::track))
}

async fn no_route(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route {}; see /openapi.yaml", uri.path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets open requests finish
/// (for at most [`DRAIN`]).
///
/// HTTP/1.1 through hyper directly rather than `axum::serve`, which sets no timer and so no
/// header read timeout: a client that trickles its request headers would hold a connection
/// (and a task) for as long as it likes. Bodies are bounded by the request timeout.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let header_timeout = state.limits.header_read_timeout;
    let app = app(state);
    // `stop` tells connections to finish; every connection task holds a `done` receiver, so
    // `done_tx.closed()` resolves when the last one has ended.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (done_tx, done_rx) = tokio::sync::watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    if !matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                    ) {
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let mut stop = stop_rx.clone();
        let done = done_rx.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = async { drop(stop.wait_for(|s| *s).await) } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(done);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(done_rx);
    if tokio::time::timeout(DRAIN, done_tx.closed()).await.is_err() {
        tracing::warn!("connections still open after {DRAIN:?}; closing them");
    }
    Ok(())
}

/// How long a shutdown waits for open requests (event streams included) to finish.
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(9);
