//! The HTTP API: the router, one file per resource, and the shared state. Talks to
//! `store`, `jobs`, `data` and `nn`'s predict; never to SQL.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Uri;
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::data::Limits as DataLimits;
use crate::jobs::Jobs;
use crate::nn::Model;
use crate::store::Store;

pub mod auth;
pub mod dashboard;
pub mod datasets;
pub mod error;
pub mod events;
pub mod health;
pub mod jobs;
pub mod models;
pub mod observe;

pub use error::ApiError;

/// Limits the API enforces, with clear errors.
#[derive(Clone, Debug)]
pub struct Limits {
    pub data: DataLimits,
    pub max_body_bytes: usize,
    pub max_parameters: usize,
    pub max_epochs: u32,
    pub max_queued_jobs: i64,
    pub max_predict_rows: usize,
    pub request_timeout: std::time::Duration,
    /// Per-tenant quotas (0 = none).
    pub quota_queued_jobs: i64,
    pub quota_stored_bytes: i64,
    /// Allowed CORS origins; empty means CORS stays off.
    pub cors_origins: Vec<String>,
}

/// A job's checkpoint as a model: (tenant, epoch, model).
type Snapshot = (String, i64, Arc<Model>);

/// Loaded models for predictions, bounded.
pub struct ModelCache {
    /// id → (tenant, model)
    models: RwLock<HashMap<Uuid, (String, Arc<Model>)>>,
    /// job id → (tenant, checkpoint epoch, model): running jobs' latest checkpoints, so a
    /// dashboard redrawing a decision boundary does not rebuild one per request.
    snapshots: RwLock<HashMap<Uuid, Snapshot>>,
    capacity: usize,
}

impl ModelCache {
    pub fn new(capacity: usize) -> Self {
        ModelCache {
            models: RwLock::new(HashMap::new()),
            snapshots: RwLock::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The cached model `id` when it belongs to `tenant`.
    pub fn get(&self, tenant: &str, id: Uuid) -> Option<Arc<Model>> {
        let g = self.models.read().ok()?;
        let (t, m) = g.get(&id)?;
        (t == tenant).then(|| m.clone())
    }

    pub fn put(&self, tenant: &str, id: Uuid, m: Arc<Model>) {
        if let Ok(mut g) = self.models.write() {
            if g.len() >= self.capacity
                && let Some(k) = g.keys().next().copied()
            {
                g.remove(&k);
            }
            g.insert(id, (tenant.to_string(), m));
        }
    }

    pub fn evict(&self, id: Uuid) {
        if let Ok(mut g) = self.models.write() {
            g.remove(&id);
        }
        if let Ok(mut g) = self.snapshots.write() {
            g.remove(&id);
        }
    }

    /// The model of job `job`'s checkpoint after `epoch`, when cached for `tenant`.
    pub fn snapshot(&self, tenant: &str, job: Uuid, epoch: i64) -> Option<Arc<Model>> {
        let g = self.snapshots.read().ok()?;
        let (t, e, m) = g.get(&job)?;
        (t == tenant && *e == epoch).then(|| m.clone())
    }

    /// Keeps one snapshot per job (the newest replaces the older).
    pub fn put_snapshot(&self, tenant: &str, job: Uuid, epoch: i64, m: Arc<Model>) {
        if let Ok(mut g) = self.snapshots.write() {
            if !g.contains_key(&job)
                && g.len() >= self.capacity
                && let Some(k) = g.keys().next().copied()
            {
                g.remove(&k);
            }
            g.insert(job, (tenant.to_string(), epoch, m));
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub jobs: Jobs,
    pub models: Arc<ModelCache>,
    pub limits: Arc<Limits>,
    pub keys: Arc<crate::auth::Keyring>,
    /// When set, `/metrics` wants `Authorization: Bearer` with this token.
    pub metrics_token: Option<String>,
    /// Renders `/metrics`; `None` when no recorder is installed.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
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
        .merge(dashboard::router())
        .layer(from_fn_with_state(limits.request_timeout, observe::timeout));
    let mut router = bounded
        .merge(events::router())
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(tower_http::compression::CompressionLayer::new())
        .route_layer(from_fn(observe::label_route))
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
    router.layer(from_fn(observe::track))
}

async fn no_route(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route {}; see /openapi.yaml", uri.path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// RFC 3339 time of Unix milliseconds.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Parses an id path segment, answering 404 (not 400) for a malformed one: no such resource.
pub fn parse_id(s: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s)
        .map_err(|_| ApiError::NotFound(format!("no {what} with id \"{s}\" (ids are UUIDs)")))
}

/// `?limit=&cursor=` of listings.
#[derive(serde::Deserialize, Debug, Default)]
pub struct PageQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub status: Option<String>,
}

impl PageQuery {
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(50),
            Some(l) if (1..=500).contains(&l) => Ok(l),
            Some(l) => Err(ApiError::invalid(
                "/limit",
                format!("must be between 1 and 500, got {l}"),
            )),
        }
    }

    pub fn cursor(&self) -> Result<Option<i64>, ApiError> {
        self.cursor
            .as_deref()
            .map(|c| {
                c.parse::<i64>().map_err(|_| {
                    ApiError::invalid(
                        "/cursor",
                        format!("\"{c}\" is not a cursor this server gave"),
                    )
                })
            })
            .transpose()
    }
}

/// Query strings parsed into `T` with a problem body on error.
pub fn parse_query<T: serde::de::DeserializeOwned>(q: Option<&str>) -> Result<T, ApiError> {
    serde_urlencoded_like(q.unwrap_or(""))
}

fn serde_urlencoded_like<T: serde::de::DeserializeOwned>(q: &str) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{q}")
            .parse::<Uri>()
            .map_err(|_| ApiError::bad("unreadable query string"))?,
    )
    .map(|axum::extract::Query(v)| v)
    .map_err(|e| ApiError::BadRequest {
        detail: format!("query string: {}", e.body_text()),
        pointer: None,
    })
}

/// The raw request body, with a problem body when it is too large or unreadable.
pub struct Body(pub axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        axum::body::Bytes::from_request(req, state)
            .await
            .map(Body)
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::TooLarge(
                        "the request body is larger than the server's limit (--max-body-bytes)"
                            .into(),
                    )
                } else {
                    ApiError::bad(format!("unreadable request body: {}", e.body_text()))
                }
            })
    }
}

/// `Idempotency-Key` handling for POSTs that create: a repeated key (same tenant and route)
/// answers the first request's response instead of creating again.
pub struct Idempotency {
    key: Option<String>,
    fingerprint: String,
    route: &'static str,
}

impl Idempotency {
    pub fn new(
        headers: &axum::http::HeaderMap,
        route: &'static str,
        query: Option<&str>,
        body: &[u8],
    ) -> Result<Self, ApiError> {
        let key = match headers.get("idempotency-key") {
            None => None,
            Some(v) => {
                let k = v.to_str().ok().filter(|k| !k.is_empty() && k.len() <= 255);
                Some(
                    k.ok_or_else(|| {
                        ApiError::bad("Idempotency-Key must be 1 to 255 visible characters")
                    })?
                    .to_string(),
                )
            }
        };
        let mut h = crate::auth::hash(query.unwrap_or("")).to_vec();
        h.extend_from_slice(&crate::auth::hash(&String::from_utf8_lossy(body)));
        let fingerprint = h.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Idempotency {
            key,
            fingerprint,
            route,
        })
    }

    /// The stored answer for this key, if the same request was made before.
    pub async fn replay(
        &self,
        s: &AppState,
        tenant: &str,
    ) -> Result<Option<axum::response::Response>, ApiError> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        let Some(a) = s.store.idempotent_answer(tenant, self.route, key).await? else {
            return Ok(None);
        };
        if a.fingerprint != self.fingerprint {
            return Err(ApiError::Conflict(format!(
                "Idempotency-Key \"{key}\" was used for a different request in the last 24 hours"
            )));
        }
        Ok(Some(respond(a.status, a.location, a.body, true)))
    }

    /// Stores the answer (when a key was given) and returns it as a response.
    pub async fn answer(
        &self,
        s: &AppState,
        tenant: &str,
        status: u16,
        location: Option<String>,
        body: serde_json::Value,
    ) -> Result<axum::response::Response, ApiError> {
        if let Some(key) = &self.key {
            let a = crate::store::IdempotentAnswer {
                fingerprint: self.fingerprint.clone(),
                status,
                location: location.clone(),
                body: body.clone(),
            };
            s.store.remember_answer(tenant, self.route, key, &a).await?;
        }
        Ok(respond(status, location, body, false))
    }
}

fn respond(
    status: u16,
    location: Option<String>,
    body: serde_json::Value,
    replayed: bool,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut r = (
        axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK),
        axum::Json(body),
    )
        .into_response();
    if let Some(l) = location.and_then(|l| l.parse().ok()) {
        r.headers_mut().insert(axum::http::header::LOCATION, l);
    }
    if replayed {
        r.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    r
}

/// 429 when storing `extra` more bytes would put the tenant over its quota.
pub async fn check_bytes_quota(s: &AppState, tenant: &str, extra: usize) -> Result<(), ApiError> {
    let quota = s.limits.quota_stored_bytes;
    if quota > 0 {
        let used = s.store.usage(tenant).await?.stored_bytes;
        if used + extra as i64 > quota {
            return Err(ApiError::TooMany {
                detail: format!(
                    "tenant {tenant} stores {used} bytes; {extra} more would pass its quota of {quota} (delete datasets or models)"
                ),
                retry_after: 3600,
            });
        }
    }
    Ok(())
}
