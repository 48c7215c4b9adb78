//! The web dashboard: a handful of static files (HTML, CSS, ES modules) embedded in the
//! binary and served at `/` and `/ui/{file}`. The page is a client of the public `/v1` API
//! like any other (it sends the key the user enters as `Authorization: Bearer`); nothing here
//! reads the store or knows about jobs. The static files need no key.
//!
//! Every answer carries a strict Content-Security-Policy (scripts and styles only from this
//! origin, no inline code, requests only to this origin) and an ETag; browsers revalidate
//! (`no-cache`) so a new binary's files are picked up at once, and get 304 otherwise.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use super::{ApiError, AppState};

/// The dashboard's routes: static files, not part of the API (so not in `openapi.yaml`;
/// tests/openapi.rs knows them by this list).
pub const ROUTES: &[(&str, &str)] = &[("get", "/"), ("get", "/ui/{file}")];

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; \
     manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// (file name, content type, bytes)
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("dashboard/index.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("dashboard/style.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("dashboard/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("dashboard/api.js"),
    ),
    (
        "charts.js",
        "text/javascript; charset=utf-8",
        include_bytes!("dashboard/charts.js"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_bytes!("dashboard/icon.svg"),
    ),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/ui/{file}", get(asset))
}

/// A strong ETag per asset: the first 16 bytes of its SHA-256, computed once.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|(_, _, body)| {
                let h = Sha256::digest(body);
                let hex: String = h[..16].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    })
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers).unwrap_or_else(IntoResponse::into_response)
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    serve(&file, &headers).unwrap_or_else(IntoResponse::into_response)
}

fn serve(name: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    let i = ASSETS
        .iter()
        .position(|(n, _, _)| *n == name)
        .ok_or_else(|| ApiError::NotFound(format!("the dashboard has no file \"{name}\"")))?;
    let (_, ctype, body) = ASSETS[i];
    let etag = &etags()[i];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, ctype)], body).into_response()
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    Ok(resp)
}
