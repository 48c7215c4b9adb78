//! The one error type of the HTTP layer: every failure becomes an RFC 9457
//! `application/problem+json` body. Internal causes are logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::data::DataError;
use crate::nn::SpecError;
use crate::service;
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
    /// 413 for one field of the body (a dataset row wider than the column limit).
    TooLargeAt {
        detail: String,
        pointer: String,
    },
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
            ApiError::TooLarge(_) | ApiError::TooLargeAt { .. } => (
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

impl From<service::Error> for ApiError {
    /// How each kind of use-case failure is answered.
    fn from(e: service::Error) -> Self {
        use service::Error as E;
        match e {
            E::Unreadable { detail, pointer } => ApiError::BadRequest { detail, pointer },
            E::Invalid(errs) => ApiError::Invalid(errs),
            E::NotFound(d) => ApiError::NotFound(d),
            E::Conflict(d) => ApiError::Conflict(d),
            E::TooLarge {
                detail,
                pointer: Some(pointer),
            } => ApiError::TooLargeAt { detail, pointer },
            E::TooLarge {
                detail,
                pointer: None,
            } => ApiError::TooLarge(detail),
            E::OverQuota {
                detail,
                retry_after,
            } => ApiError::TooMany {
                detail,
                retry_after,
            },
            E::Unavailable(d) => ApiError::Unavailable(d),
            E::Internal(cause) => ApiError::Internal(cause),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        service::Error::from(e).into()
    }
}

impl From<DataError> for ApiError {
    fn from(e: DataError) -> Self {
        service::Error::from(e).into()
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
            ApiError::TooLargeAt { detail, pointer } => {
                body["detail"] = json!(detail);
                body["pointer"] = json!(pointer);
            }
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
