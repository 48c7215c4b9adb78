//! What every request passes through: a request id (taken from `X-Request-Id` or made, and
//! returned), a tracing span carrying it, HTTP metrics by route and status, a timeout (not on
//! the SSE route), the media-type check of bodies, and the rewrite of any plain-text error
//! from a layer below the handlers into a problem document.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header, header::HeaderName};
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

/// Error responses that something below the handlers wrote as plain text (axum's path and
/// query rejections, tower-http's layers) become problem documents, so every error a client
/// sees has one shape.
pub async fn problems(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/problem+json"));
    if is_problem {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let mut out =
        ApiError::from_plain(parts.status, &String::from_utf8_lossy(&text)).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE
            && name != header::CONTENT_LENGTH
            && name != header::CONTENT_ENCODING
            && !out.headers().contains_key(name)
        {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out.extensions_mut().extend(parts.extensions);
    out
}

/// Refuses a body in a media type or content encoding its route does not take (415), before
/// a byte of it is read.
pub async fn media_type(req: Request, next: Next) -> Response {
    match check_media_type(req.method(), req.uri().path(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// The routes that take CSV as well as JSON.
const CSV_ROUTES: &[&str] = &["/v1/datasets"];

/// A model's or a deployment's predict route, which takes CSV too (`api::predict`).
fn is_predict(path: &str) -> bool {
    path.ends_with("/predict")
        && (path.starts_with("/v1/models/") || path.starts_with("/v1/deployments/"))
        && path.matches('/').count() == 4
}

/// The media-type rule: JSON routes take `application/json` (or `application/…+json`, or
/// `curl -d`'s default form type, whose body is read as JSON, or none); the dataset route
/// takes JSON or CSV; bodies may be gzip-compressed (`Content-Encoding: gzip`).
pub fn check_media_type(method: &Method, path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    if !matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        return Ok(());
    }
    if let Some(enc) = headers.get(header::CONTENT_ENCODING) {
        let enc = enc.to_str().unwrap_or("").trim().to_ascii_lowercase();
        if !matches!(enc.as_str(), "gzip" | "x-gzip" | "identity" | "") {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Encoding \"{enc}\" is not supported; send the body uncompressed or with gzip"
            )));
        }
    }
    let Some(ctype) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = ctype
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let json = essence == "application/json";
    let json_like = json || (essence.starts_with("application/") && essence.ends_with("+json"));
    let form = essence == "application/x-www-form-urlencoded";
    if CSV_ROUTES.contains(&path) || is_predict(path) {
        return match essence.as_str() {
            "application/json" | "text/csv" | "application/csv" | "text/plain" => Ok(()),
            // Uploads read any delimiter (`data::csv::dialect`); predict rows are comma-separated.
            "text/tab-separated-values" if CSV_ROUTES.contains(&path) => Ok(()),
            _ if CSV_ROUTES.contains(&path)
                && (crate::service::datasets::is_jsonl(&essence)
                    || crate::data::is_parquet(&essence)) =>
            {
                Ok(())
            }
            // `curl -d '{"inputs": …}'`: a predict body of JSON loses nothing to the form
            // type (its rows are in brackets, not lines), so it is read as JSON as everywhere.
            _ if form && is_predict(path) => Ok(()),
            _ if form => Err(ApiError::UnsupportedMediaType(
                "the body came form-encoded (curl -d), which drops a file's line breaks: send a CSV \
                 with `--data-binary @file.csv -H 'content-type: text/csv'`, or JSON with \
                 `-H 'content-type: application/json'`"
                    .into(),
            )),
            other => Err(ApiError::UnsupportedMediaType(format!(
                "this route takes application/json or text/csv{}, not \"{other}\"",
                if CSV_ROUTES.contains(&path) {
                    " (or text/tab-separated-values, application/x-ndjson for JSON Lines, or application/vnd.apache.parquet)"
                } else {
                    ""
                }
            ))),
        };
    }
    if json_like || form {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "this route takes application/json, not \"{essence}\""
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(ctype: Option<&str>, enc: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(c) = ctype {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(c).unwrap());
        }
        if let Some(e) = enc {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_str(e).unwrap());
        }
        h
    }

    fn status(m: Method, path: &str, h: &HeaderMap) -> u16 {
        match check_media_type(&m, path, h) {
            Ok(()) => 200,
            Err(e) => e.into_response().status().as_u16(),
        }
    }

    #[test]
    fn json_routes_take_json_and_curls_default_and_refuse_the_rest() {
        for ok in [
            None,
            Some("application/json"),
            Some("application/json; charset=utf-8"),
            Some("application/x-www-form-urlencoded"),
            Some("application/merge-patch+json"),
        ] {
            assert_eq!(
                status(Method::POST, "/v1/jobs", &with(ok, None)),
                200,
                "{ok:?}"
            );
        }
        for bad in [
            "image/png",
            "text/csv",
            "multipart/form-data; boundary=x",
            "text/plain",
        ] {
            assert_eq!(
                status(Method::POST, "/v1/jobs", &with(Some(bad), None)),
                415,
                "{bad}"
            );
        }
        // Bodiless methods are not checked.
        assert_eq!(
            status(Method::GET, "/v1/jobs", &with(Some("image/png"), None)),
            200
        );
    }

    #[test]
    fn the_dataset_route_takes_csv_and_explains_curl_d() {
        assert_eq!(
            status(Method::POST, "/v1/datasets", &with(Some("text/csv"), None)),
            200
        );
        let e = check_media_type(
            &Method::POST,
            "/v1/datasets",
            &with(Some("application/x-www-form-urlencoded"), None),
        )
        .unwrap_err();
        match e {
            ApiError::UnsupportedMediaType(d) => assert!(d.contains("--data-binary"), "{d}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_gzip_bodies_are_accepted_compressed() {
        let j = Some("application/json");
        assert_eq!(
            status(Method::POST, "/v1/jobs", &with(j, Some("gzip"))),
            200
        );
        assert_eq!(status(Method::POST, "/v1/jobs", &with(j, Some("br"))), 415);
    }
}
