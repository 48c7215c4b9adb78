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
    pub max_layers: usize,
    pub max_sse_clients: usize,
    pub request_timeout: std::time::Duration,
    /// How long a connection may take to send a request's headers (slowloris).
    pub header_read_timeout: std::time::Duration,
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
    /// One permit per open event stream (`--max-sse-clients`).
    pub event_streams: Arc<tokio::sync::Semaphore>,
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

/// The raw request body, with a problem body when it is too large or unreadable. A declared
/// `Content-Length` over the limit is refused before a byte of the body is read; a chunked
/// body is read up to the limit and refused there.
pub struct Body(pub axum::body::Bytes);

impl axum::extract::FromRequest<AppState> for Body {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.limits.max_body_bytes;
        let too_large = || {
            ApiError::TooLarge(format!(
                "the request body is larger than the server's limit of {limit} bytes (--max-body-bytes)"
            ))
        };
        let declared = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        // Into one buffer sized by Content-Length: collecting frames and then joining them
        // would hold a large upload twice.
        use futures::StreamExt;
        let mut stream = req.into_body().into_data_stream();
        let mut buf: Vec<u8> = Vec::with_capacity(declared.map_or(0, |n| n as usize).min(limit));
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::bad(format!("unreadable request body: {e}")))?;
            if buf.len() + chunk.len() > limit {
                return Err(too_large());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Body(axum::body::Bytes::from(buf)))
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
        Self::with_body_hash(
            headers,
            route,
            query,
            crate::auth::hash(&String::from_utf8_lossy(body)),
        )
    }

    /// As [`new`](Self::new) for a body read as a stream: `body_hash` is the SHA-256 of its
    /// bytes (the same as `new` computes for a UTF-8 body).
    pub fn with_body_hash(
        headers: &axum::http::HeaderMap,
        route: &'static str,
        query: Option<&str>,
        body_hash: [u8; 32],
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
        h.extend_from_slice(&body_hash);
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

    /// The id of the record this request creates (`what`: "dataset", "job", "model").
    /// Without a key, a new random id. With one, an id derived from the tenant, route and
    /// key: the record and the remembered answer are two commits, and a crash between them
    /// must not let the client's retry create a second record — the retry finds the first
    /// one under this id instead (`is_retry_of`).
    pub fn record_id(&self, tenant: &str, what: &str) -> Uuid {
        let Some(key) = &self.key else {
            return Uuid::new_v4();
        };
        let h = crate::auth::hash(&format!("{tenant}\0{}\0{key}\0{what}", self.route));
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&h[..16]);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    /// True when a record found under `record_id`, created at `created_at`, is this key's
    /// first request (keys are remembered for a day; after that a key may be used again,
    /// and the new record needs a new id).
    pub fn is_retry_of(&self, created_at: i64) -> bool {
        self.key.is_some() && created_at > crate::store::now_ms() - crate::store::IDEMPOTENCY_TTL_MS
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
