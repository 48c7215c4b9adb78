//! What every request passes through: a request id (taken from `X-Request-Id` or made, and
//! returned), a tracing span carrying it, HTTP metrics by route and status, and a timeout
//! (not on the SSE route).

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header::HeaderName};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;
use uuid::Uuid;

use super::ApiError;

pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request id, span, metrics.
pub async fn track(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200 && v.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    if let Ok(v) = HeaderValue::from_str(&id) {
        req.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    let method = req.method().clone();
    let span = tracing::info_span!("request", request_id = %id, method = %method, path = %req.uri().path());
    let mut resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status().as_u16();
    let route = resp
        .extensions()
        .get::<RouteLabel>()
        .map_or("unmatched", |r| r.0.as_str())
        .to_owned();
    let elapsed = started.elapsed();
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(status, ms = elapsed.as_secs_f64() * 1e3, "request failed");
        } else {
            tracing::debug!(status, ms = elapsed.as_secs_f64() * 1e3, "request");
        }
    });
    let labels = [
        ("method", method.to_string()),
        ("route", route),
        ("status", status.to_string()),
    ];
    metrics::counter!("backprop_http_requests_total", &labels).increment(1);
    metrics::histogram!("backprop_http_request_duration_seconds", &labels[..2])
        .record(elapsed.as_secs_f64());
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    resp
}

/// The route template a request matched, passed from the router to [`track`].
#[derive(Clone)]
pub struct RouteLabel(pub String);

/// Route layer: remembers which route matched, for the metrics' `route` label.
pub async fn label_route(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let mut resp = next.run(req).await;
    if let Some(r) = route {
        resp.extensions_mut().insert(RouteLabel(r));
    }
    resp
}

/// Answers 503 with a problem body when a request takes longer than the limit.
pub async fn timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::Unavailable(format!(
            "the request took longer than {} s (--request-timeout-secs)",
            limit.as_secs_f64()
        ))
        .into_response(),
    }
}
