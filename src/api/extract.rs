//! Reading the parts of an HTTP request every resource shares: path ids, query strings,
//! listing pages, the bounded body, and the `Idempotency-Key` header with the remembered
//! answer it replays.

use axum::http::Uri;
use uuid::Uuid;

use super::{ApiError, AppState};
use crate::service::{self, IdempotencyKey};
use crate::store::Cursor;

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
    /// Jobs and models: only one sweep's.
    pub sweep_id: Option<String>,
    /// Jobs and models: `trials` lists sweeps' trial jobs and models too.
    pub include: Option<String>,
}

impl PageQuery {
    /// `?sweep_id=&include=trials` of the job and model listings.
    pub fn list_filter(&self) -> Result<crate::store::ListFilter, ApiError> {
        let sweep_id = self
            .sweep_id
            .as_deref()
            .map(|s| {
                Uuid::parse_str(s).map_err(|_| {
                    ApiError::invalid("/sweep_id", format!("\"{s}\" is not a sweep id (a UUID)"))
                })
            })
            .transpose()?;
        let include_trials = match self.include.as_deref() {
            None => false,
            Some("trials") => true,
            Some(other) => {
                return Err(ApiError::invalid(
                    "/include",
                    format!("unknown value \"{other}\"; expected trials"),
                ));
            }
        };
        Ok(crate::store::ListFilter {
            status: None,
            sweep_id,
            include_trials,
        })
    }

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

    pub fn cursor(&self) -> Result<Option<Cursor>, ApiError> {
        self.cursor
            .as_deref()
            .map(|c| {
                Cursor::decode(c).ok_or_else(|| {
                    ApiError::invalid(
                        "/cursor",
                        format!("\"{c}\" is not a cursor this server gave"),
                    )
                })
            })
            .transpose()
    }
}

/// Refuses a query whose percent-decoded names or values are not UTF-8 (the form decoder
/// would replace the bad bytes with U+FFFD and carry on with a name the client never sent).
fn check_query_utf8(q: &str) -> Result<(), service::Error> {
    for part in q.split('&') {
        let mut bytes = Vec::with_capacity(part.len());
        let raw = part.as_bytes();
        let mut i = 0;
        while i < raw.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            match raw[i] {
                b'%' if i + 2 < raw.len() => match (hex(raw[i + 1]), hex(raw[i + 2])) {
                    (Some(h), Some(l)) => {
                        bytes.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => bytes.push(b'%'),
                },
                b => bytes.push(b),
            }
            i += 1;
        }
        if std::str::from_utf8(&bytes).is_err() {
            let name = part.split('=').next().unwrap_or("");
            return Err(service::Error::invalid(
                format!("/{name}"),
                "is not valid UTF-8 once percent-decoded",
            ));
        }
    }
    Ok(())
}

/// A boolean query parameter: `true`/`false`, `1`/`0` (what `?dry_run=1` means to most
/// clients), or `yes`/`no`.
pub fn query_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let s = <String as serde::Deserialize>::deserialize(d)?;
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(Some(true)),
        "false" | "0" | "no" => Ok(Some(false)),
        _ => Err(serde::de::Error::custom(format!(
            "\"{s}\" is not a boolean; use true or false (or 1 or 0)"
        ))),
    }
}

/// Query strings parsed into `T`; unreadable ones are the request's fault (a 400 with the
/// reason).
pub fn parse_query<T: serde::de::DeserializeOwned>(q: Option<&str>) -> Result<T, service::Error> {
    check_query_utf8(q.unwrap_or(""))?;
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
        Self::with_body_hash(
            headers,
            route,
            query,
            crate::digest::hash(&String::from_utf8_lossy(body)),
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
        Ok(Idempotency {
            key: IdempotencyKey::with_body_hash(key, route, query, body_hash),
        })
    }

    /// The stored answer for this key, if the same request was made before.
    pub async fn replay(
        &self,
        s: &AppState,
        tenant: &str,
    ) -> Result<Option<axum::response::Response>, ApiError> {
        let a = self.key.begin(s.service.store.as_ref(), tenant).await?;
        Ok(a.map(|a| respond(a.status, a.location, a.body, true)))
    }

    /// After `replay` said to go on: the key is released again when the request failed.
    pub async fn settle<T>(
        &self,
        s: &AppState,
        tenant: &str,
        result: Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        if result.is_err() {
            self.key.release(s.service.store.as_ref(), tenant).await;
        }
        result
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_that_decodes_to_invalid_utf8_is_refused_at_its_name() {
        assert!(check_query_utf8("name=caf%C3%A9&target=y").is_ok());
        assert!(check_query_utf8("name=100%").is_ok());
        match check_query_utf8("target=y&name=%ff%fe") {
            Err(service::Error::Invalid(errs)) => assert_eq!(errs[0].pointer, "/name"),
            other => panic!("{other:?}"),
        }
    }
}
