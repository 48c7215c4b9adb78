//! The one error type of the HTTP layer: every failure becomes an RFC 9457
//! `application/problem+json` body. Internal causes are logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::data::DataError;
use crate::nn::SpecError;
use crate::service;
use crate::store::{Failure, FailureKind, StoreError};

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
    /// 415: a body in a media type (or content encoding) the route does not take.
    UnsupportedMediaType(String),
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
            ApiError::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
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

/// How a failed job's error is shown: the problem document of its kind (the same documents
/// releases before failure kinds stored).
pub fn failure_problem(f: &Failure) -> serde_json::Value {
    use FailureKind as K;
    let (title, status) = match f.kind {
        K::TrainingDiverged => ("Training diverged", StatusCode::UNPROCESSABLE_ENTITY),
        K::InvalidSpec => ("Invalid spec", StatusCode::UNPROCESSABLE_ENTITY),
        K::NoDataset => ("No dataset", StatusCode::UNPROCESSABLE_ENTITY),
        K::DatasetGone => ("Dataset gone", StatusCode::UNPROCESSABLE_ENTITY),
        K::CheckpointUnreadable => ("Checkpoint unreadable", StatusCode::INTERNAL_SERVER_ERROR),
        K::StoredSpecUnreadable => ("Stored spec unreadable", StatusCode::INTERNAL_SERVER_ERROR),
        K::NoTrainingThread => ("No training thread", StatusCode::INTERNAL_SERVER_ERROR),
        K::TrainingCrashed => ("Training crashed", StatusCode::INTERNAL_SERVER_ERROR),
        K::DatabaseError => ("Database error", StatusCode::INTERNAL_SERVER_ERROR),
        K::TooManyAttempts => ("Too many attempts", StatusCode::INTERNAL_SERVER_ERROR),
        K::TooLarge => ("Too large", StatusCode::UNPROCESSABLE_ENTITY),
    };
    let slug = title.to_lowercase().replace(' ', "-");
    json!({
        "type": format!("/problems/{slug}"),
        "title": title,
        "status": status.as_u16(),
        "detail": f.detail,
    })
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
                // A body with a hundred thousand bad fields gets the first ones and a count,
                // not an answer larger than the request.
                let shown = &errs[..errs.len().min(MAX_ERRORS_SHOWN)];
                let more = errs.len() - shown.len();
                let mut detail = shown
                    .iter()
                    .take(10)
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ");
                if errs.len() > 10 {
                    detail.push_str(&format!("; and {} more", errs.len() - 10));
                }
                body["detail"] = json!(detail);
                if let Some(first) = errs.first() {
                    body["pointer"] = json!(first.pointer);
                }
                body["errors"] = json!(
                    shown
                        .iter()
                        .map(|e| json!({"pointer": e.pointer, "detail": e.message}))
                        .collect::<Vec<_>>()
                );
                if more > 0 {
                    body["more_errors"] = json!(more);
                }
            }
            ApiError::NotFound(d)
            | ApiError::Conflict(d)
            | ApiError::TooLarge(d)
            | ApiError::TooMany { detail: d, .. }
            | ApiError::UnsupportedMediaType(d)
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

/// The most entries of a validation problem's `errors` list; `more_errors` counts the rest.
pub const MAX_ERRORS_SHOWN: usize = 100;

impl ApiError {
    /// An error response that some layer below the handlers wrote as plain text (a path
    /// segment that is not UTF-8, a body-decompression failure, …) as the problem its status
    /// stands for, so that every error the server sends is a problem document.
    pub fn from_plain(status: StatusCode, text: &str) -> Self {
        let detail = if text.trim().is_empty() {
            status
                .canonical_reason()
                .unwrap_or("the request failed")
                .to_string()
        } else {
            text.trim().to_string()
        };
        match status {
            StatusCode::NOT_FOUND => ApiError::NotFound(detail),
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
            StatusCode::CONFLICT => ApiError::Conflict(detail),
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(detail),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(detail),
            StatusCode::UNPROCESSABLE_ENTITY => ApiError::invalid("/", detail),
            StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable(detail),
            s if s.is_server_error() => ApiError::Internal(detail),
            _ => ApiError::bad(detail),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_text_error_becomes_the_problem_of_its_status() {
        let e = ApiError::from_plain(StatusCode::BAD_REQUEST, "Invalid URL: Invalid UTF-8 in id");
        assert_eq!(e.parts().0, StatusCode::BAD_REQUEST);
        let e = ApiError::from_plain(StatusCode::UNSUPPORTED_MEDIA_TYPE, "");
        assert_eq!(e.parts().0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    /// Releases before failure kinds stored these documents; a kind read from one must be
    /// shown as exactly that document again.
    #[test]
    fn a_failure_is_shown_as_the_problem_document_earlier_releases_stored() {
        for old in [
            json!({"type": "/problems/training-diverged", "title": "Training diverged",
                   "status": 422, "detail": "loss is NaN at epoch 3"}),
            json!({"type": "/problems/too-many-attempts", "title": "Too many attempts",
                   "status": 500, "detail": "the job was interrupted 5 times (its workers died); it will not be retried"}),
            json!({"type": "/problems/dataset-gone", "title": "Dataset gone", "status": 422,
                   "detail": "dataset 1 was deleted before the job ran"}),
            json!({"type": "/problems/checkpoint-unreadable", "title": "Checkpoint unreadable",
                   "status": 500, "detail": "bad magic"}),
        ] {
            let f = Failure::from_value(&old).unwrap();
            assert_eq!(failure_problem(&f), old);
        }
        for kind in FailureKind::ALL {
            let f = Failure::new(kind, "why");
            let shown = failure_problem(&f);
            assert_eq!(Failure::from_value(&shown), Ok(f.clone()), "{shown}");
            assert_eq!(Failure::from_value(&f.to_value()), Ok(f));
        }
    }
}
