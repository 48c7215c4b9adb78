//! What a use case can answer instead of a result. Each variant names a kind of failure, not
//! an HTTP status: `api::error` maps them (and nothing below `api` picks a status).

use crate::data::DataError;
use crate::nn::SpecError;
use crate::store::StoreError;

#[derive(Debug)]
pub enum Error {
    /// The request could not be read at all: malformed JSON, an unreadable query, a content
    /// type we do not take.
    Unreadable {
        detail: String,
        pointer: Option<String>,
    },
    /// Readable but invalid; one entry per problem, each with its JSON pointer.
    Invalid(Vec<SpecError>),
    /// No such record for this tenant.
    NotFound(String),
    /// The record's state does not allow it (cancel a finished job, a reused idempotency key).
    Conflict(String),
    /// Larger than a limit: the whole request, or one field of it (`pointer`).
    TooLarge {
        detail: String,
        pointer: Option<String>,
    },
    /// Over a tenant's quota or the queue's bound; worth retrying after `retry_after` seconds.
    OverQuota { detail: String, retry_after: u64 },
    /// A dependency (the database) is away for now.
    Unavailable(String),
    /// Our fault: logged, never shown.
    Internal(String),
}

impl Error {
    /// One invalid field.
    pub fn invalid(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Invalid(vec![SpecError::new(pointer, detail)])
    }

    /// An unreadable request, with no pointer.
    pub fn unreadable(detail: impl Into<String>) -> Self {
        Error::Unreadable {
            detail: detail.into(),
            pointer: None,
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => {
                Error::Unavailable(format!("the database is unavailable: {m}"))
            }
            // The database's words (constraint names, SQL) stay in the log.
            StoreError::Duplicate(m) => {
                tracing::debug!(cause = %m, "duplicate record");
                Error::Conflict(
                    "a request with the same Idempotency-Key is being processed at this moment; retry to get its answer"
                        .into(),
                )
            }
            StoreError::InUse(m) => {
                tracing::debug!(cause = %m, "a foreign key refused a write");
                Error::Conflict(
                    "a record this request uses or removes changed at the same moment (a model deployed or deleted meanwhile); read it again and retry"
                        .into(),
                )
            }
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<DataError> for Error {
    fn from(e: DataError) -> Self {
        if e.too_large {
            return Error::TooLarge {
                detail: e.message,
                pointer: e.pointer,
            };
        }
        match e.pointer {
            Some(p) => Error::Invalid(vec![SpecError::new(p, e.message)]),
            None => Error::Unreadable {
                detail: e.message,
                pointer: None,
            },
        }
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Error::Internal(e.to_string())
    }
}
