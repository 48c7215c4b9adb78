//! The one error type of the HTTP layer: every failure becomes an RFC 9457
//! `application/problem+json` body. Internal causes are logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::data::DataError;
use crate::nn::SpecError;
use crate::store::StoreError;

#[derive(Debug)]
pub enum ApiError {
    /// 400: the request could not be read (malformed JSON, bad query).
    BadRequest {
        detail: String,
        pointer: Option<String>,
    },
    /// 422: readable but invalid; one entry per problem.
    Invalid(Vec<SpecError>),
    NotFound(String),
    Unauthorized(&'static str),
    Forbidden(String),
    MethodNotAllowed,
    Conflict(String),
    TooLarge(String),
    TooMany {
        detail: String,
        retry_after: u64,
    },
    Unavailable(String),
    Internal(String),
}

impl ApiError {
    pub fn invalid(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::Invalid(vec![SpecError::new(pointer, detail)])
    }

    pub fn bad(detail: impl Into<String>) -> Self {
        ApiError::BadRequest {
            detail: detail.into(),
            pointer: None,
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            ApiError::Invalid(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Invalid request",
            ),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            ApiError::TooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Request too large",
            ),
            ApiError::TooMany { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "queue-full",
                "Too many requests",
            ),
            ApiError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => {
                ApiError::Unavailable(format!("the database is unavailable: {m}"))
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<DataError> for ApiError {
    fn from(e: DataError) -> Self {
        if e.too_large {
            return ApiError::TooLarge(e.message);
        }
        match e.pointer {
            Some(p) => ApiError::Invalid(vec![SpecError::new(p, e.message)]),
            None => ApiError::BadRequest {
                detail: e.message,
                pointer: None,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, slug, title) = self.parts();
        let mut body = json!({
            "type": format!("/problems/{slug}"),
            "title": title,
            "status": status.as_u16(),
        });
        match &self {
            ApiError::BadRequest { detail, pointer } => {
                body["detail"] = json!(detail);
                if let Some(p) = pointer {
                    body["pointer"] = json!(p);
                }
            }
            ApiError::Invalid(errs) => {
                let detail = errs
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ");
                body["detail"] = json!(detail);
                if let Some(first) = errs.first() {
                    body["pointer"] = json!(first.pointer);
                }
                body["errors"] = json!(
                    errs.iter()
                        .map(|e| json!({"pointer": e.pointer, "detail": e.message}))
                        .collect::<Vec<_>>()
                );
            }
            ApiError::NotFound(d)
            | ApiError::Conflict(d)
            | ApiError::TooLarge(d)
            | ApiError::TooMany { detail: d, .. }
            | ApiError::Unavailable(d) => body["detail"] = json!(d),
            ApiError::Unauthorized(d) => body["detail"] = json!(d),
            ApiError::Forbidden(d) => body["detail"] = json!(d),
            ApiError::MethodNotAllowed => {
                body["detail"] = json!("this method is not allowed on this path; see /openapi.yaml")
            }
            ApiError::Internal(cause) => {
                tracing::error!(cause = %cause, "internal error");
                body["detail"] =
                    json!("the server failed to handle this request; the cause is in its log");
            }
        }
        let mut resp = (status, body.to_string()).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let ApiError::TooMany { retry_after, .. } = self {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(5u64));
        }
        resp
    }
}

/// Parses a JSON body into `T`, pointing at the field that failed.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::bad(
            "the request body is empty; send a JSON document",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let pointer = pointer_of(e.path());
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::BadRequest {
                detail: format!("malformed JSON: {inner}"),
                pointer: None,
            }
        } else {
            let msg = strip_position(&inner.to_string());
            // The whole body is wrong (a string where an object belongs): "/", as from_value
            // and the handlers say, not an empty pointer.
            ApiError::invalid(
                if pointer.is_empty() {
                    "/".into()
                } else {
                    pointer
                },
                msg,
            )
        }
    })
}

/// Parses a JSON value into `T` under `prefix`.
pub fn from_value<T: serde::de::DeserializeOwned>(
    v: serde_json::Value,
    prefix: &str,
) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let pointer = format!("{prefix}{}", pointer_of(e.path()));
        ApiError::invalid(
            if pointer.is_empty() {
                "/".into()
            } else {
                pointer
            },
            e.into_inner().to_string(),
        )
    })
}

fn strip_position(s: &str) -> String {
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s.to_string(),
    }
}

fn pointer_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut p = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => p.push_str(&format!("/{index}")),
            Segment::Map { key } => {
                p.push_str(&format!("/{}", key.replace('~', "~0").replace('/', "~1")))
            }
            Segment::Enum { variant } => p.push_str(&format!("/{variant}")),
            Segment::Unknown => {}
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_of_the_wrong_type_points_at_the_root() {
        // Found by the json_dataset fuzz target: a JSON string as the body gave pointer "".
        let e = parse_json::<crate::data::JsonDataset>(br#""feature_names""#).unwrap_err();
        match e {
            ApiError::Invalid(errs) => assert_eq!(errs[0].pointer, "/"),
            other => panic!("{other:?}"),
        }
        let e = parse_json::<crate::data::JsonDataset>(br#"{"features": "x"}"#).unwrap_err();
        match e {
            ApiError::Invalid(errs) => assert_eq!(errs[0].pointer, "/features"),
            other => panic!("{other:?}"),
        }
    }
}
