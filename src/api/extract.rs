//! Reading the parts of an HTTP request every resource shares: path ids, query strings,
//! listing pages, the bounded body, and the `Idempotency-Key` header with the remembered
//! answer it replays.

use axum::http::Uri;
use uuid::Uuid;

use super::{ApiError, AppState};
use crate::service::{self, IdempotencyKey};

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

/// Query strings parsed into `T`; unreadable ones are the request's fault (a 400 with the
/// reason).
pub fn parse_query<T: serde::de::DeserializeOwned>(q: Option<&str>) -> Result<T, service::Error> {
    let uri = format!("/?{}", q.unwrap_or(""))
        .parse::<Uri>()
        .map_err(|_| service::Error::unreadable("unreadable query string"))?;
    axum::extract::Query::<T>::try_from_uri(&uri)
        .map(|axum::extract::Query(v)| v)
        .map_err(|e| service::Error::unreadable(format!("query string: {}", e.body_text())))
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
        axum::body::Bytes::from_request(req, state)
            .await
            .map(Body)
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    too_large()
                } else {
                    ApiError::bad(format!("unreadable request body: {}", e.body_text()))
                }
            })
    }
}

/// `Idempotency-Key` handling for POSTs that create: a repeated key (same tenant and route)
/// answers the first request's response instead of creating again. The use case gets the
/// [`IdempotencyKey`] (for the id of the record it creates); this side remembers and replays
/// the HTTP answer.
pub struct Idempotency {
    pub key: IdempotencyKey,
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
        Ok(Idempotency {
            key: IdempotencyKey::new(key, route, query, body),
        })
    }

    /// The stored answer for this key, if the same request was made before.
    pub async fn replay(
        &self,
        s: &AppState,
        tenant: &str,
    ) -> Result<Option<axum::response::Response>, ApiError> {
        let a = self
            .key
            .remembered(s.service.store.as_ref(), tenant)
            .await?;
        Ok(a.map(|a| respond(a.status, a.location, a.body, true)))
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
        self.key
            .remember(
                s.service.store.as_ref(),
                tenant,
                status,
                location.clone(),
                body.clone(),
            )
            .await?;
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
