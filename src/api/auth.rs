//! The `Authorization: Bearer …` extractor. Without configured keys every caller is the admin
//! of the `default` tenant (local use); with keys, a missing or wrong key is 401 and a role
//! too weak for the route is 403.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::{ApiError, AppState};
pub use crate::auth::{Principal, Role};

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Two keys in one request: which one acts is ambiguous (proxies and servers differ on
        // "the first wins"), so neither does.
        if parts.headers.get_all(header::AUTHORIZATION).iter().count() > 1 {
            return Err(ApiError::bad(
                "the request has more than one Authorization header; send exactly one",
            ));
        }
        if state.keys.is_open() {
            return Ok(Principal {
                tenant: crate::auth::OPEN_TENANT.into(),
                role: Role::Admin,
            });
        }
        let secret = bearer(parts).ok_or(ApiError::Unauthorized(
            "send an API key as \"Authorization: Bearer KEY\"",
        ))?;
        state
            .keys
            .authenticate(secret)
            .ok_or(ApiError::Unauthorized("the API key is not valid"))
    }
}

pub fn bearer(parts: &Parts) -> Option<&str> {
    bearer_in(&parts.headers)
}

/// The bearer token of a request's headers.
pub fn bearer_in(headers: &axum::http::HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl Principal {
    /// 403 unless the caller's role is at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "a {} key cannot do this; it needs a {} key",
                self.role.as_str(),
                role.as_str()
            )))
        }
    }
}
