//! `Idempotency-Key`s of creating requests: the id of the record a keyed request creates
//! (derived from the key, so a retry after a crash finds the first record instead of making a
//! second), and the remembered first answer. What the answer *is* (status, body) is the HTTP
//! layer's business; here it is stored and checked against the request's fingerprint.

use uuid::Uuid;

use super::{Error, Result};
use crate::clock::now_ms;
use crate::digest::hash;
use crate::store::{IDEMPOTENCY_TTL_MS, IdempotentAnswer, Store};

/// The status of a key reserved by a request that has not answered yet.
const RESERVED: u16 = 0;

/// A creating request's key (if it has one), route and fingerprint.
pub struct IdempotencyKey {
    key: Option<String>,
    fingerprint: String,
    route: &'static str,
}

impl IdempotencyKey {
    /// Whether the client sent a key.
    pub fn is_keyed(&self) -> bool {
        self.key.is_some()
    }

    /// `key` as the client sent it (already checked to be 1 to 255 visible characters);
    /// `query` and `body` make the fingerprint a repeated key must match.
    pub fn new(key: Option<String>, route: &'static str, query: Option<&str>, body: &[u8]) -> Self {
        Self::with_body_hash(key, route, query, hash(&String::from_utf8_lossy(body)))
    }

    /// As [`new`](Self::new) for a body read as a stream: `body_hash` is the SHA-256 of its
    /// bytes (the same as `new` computes for a UTF-8 body).
    pub fn with_body_hash(
        key: Option<String>,
        route: &'static str,
        query: Option<&str>,
        body_hash: [u8; 32],
    ) -> Self {
        let mut h = hash(query.unwrap_or("")).to_vec();
        h.extend_from_slice(&body_hash);
        IdempotencyKey {
            key,
            fingerprint: crate::digest::hex(&h),
            route,
        }
    }

    /// Reserves the key for this request (when it has one) and answers what a repeated key
    /// calls for: `Some(answer)` to replay when the same request was answered before; `None`
    /// to go on (a fresh key, or the same request again whose first attempt has not answered
    /// — it may still be running, or have died: its record id is derived from the key, so
    /// the two cannot both create); a conflict when the key belongs to a different request,
    /// answered or not. The reservation carries the fingerprint from the first moment, so
    /// two different bodies sent at once under one key cannot both be taken.
    pub async fn begin(&self, store: &dyn Store, tenant: &str) -> Result<Option<IdempotentAnswer>> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        let reservation = IdempotentAnswer {
            fingerprint: self.fingerprint.clone(),
            status: RESERVED,
            location: None,
            body: serde_json::Value::Null,
        };
        store
            .remember_answer(tenant, self.route, key, &reservation)
            .await?;
        let Some(a) = store.idempotent_answer(tenant, self.route, key).await? else {
            return Ok(None);
        };
        if a.fingerprint != self.fingerprint {
            return Err(Error::Conflict(format!(
                "Idempotency-Key \"{key}\" was used for a different request in the last 24 hours"
            )));
        }
        Ok((a.status != RESERVED).then_some(a))
    }

    /// Gives the key back after this request failed without creating anything (a refused
    /// body, a quota), so the client may send a corrected request under the same key.
    pub async fn release(&self, store: &dyn Store, tenant: &str) {
        if let Some(key) = &self.key
            && let Err(e) = store
                .forget_reservation(tenant, self.route, key, &self.fingerprint)
                .await
        {
            // It stays reserved for this body; the same request still goes through.
            tracing::warn!(error = %e, "could not release an idempotency key");
        }
    }

    /// Remembers the answer (when a key was given).
    pub async fn remember(
        &self,
        store: &dyn Store,
        tenant: &str,
        status: u16,
        location: Option<String>,
        body: serde_json::Value,
    ) -> Result<()> {
        if let Some(key) = &self.key {
            let a = IdempotentAnswer {
                fingerprint: self.fingerprint.clone(),
                status,
                location,
                body,
            };
            store.remember_answer(tenant, self.route, key, &a).await?;
        }
        Ok(())
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
        let h = hash(&format!("{tenant}\0{}\0{key}\0{what}", self.route));
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&h[..16]);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    /// True when a record found under `record_id`, created at `created_at`, is this key's
    /// first request (keys are remembered for a day; after that a key may be used again,
    /// and the new record needs a new id).
    pub fn is_retry_of(&self, created_at: i64) -> bool {
        self.key.is_some() && created_at > now_ms() - IDEMPOTENCY_TTL_MS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A retry after a crash must find the first request's record: the id is a function of
    /// tenant, route, key and kind of record, and nothing else.
    #[test]
    fn a_keyed_request_creates_the_same_id_every_time() {
        let k = |key: Option<&str>, body: &[u8]| {
            IdempotencyKey::new(key.map(str::to_owned), "POST /v1/jobs", None, body)
        };
        let a = k(Some("key-1"), b"{}");
        let b = k(Some("key-1"), b"{\"other\": 1}");
        assert_eq!(a.record_id("t", "job"), b.record_id("t", "job"));
        assert_ne!(a.record_id("t", "job"), a.record_id("u", "job"));
        assert_ne!(a.record_id("t", "job"), a.record_id("t", "dataset"));
        assert_ne!(
            a.record_id("t", "job"),
            k(Some("key-2"), b"{}").record_id("t", "job")
        );
        let unkeyed = k(None, b"{}");
        assert_ne!(unkeyed.record_id("t", "job"), unkeyed.record_id("t", "job"));
        assert!(!unkeyed.is_retry_of(now_ms()));
        assert!(a.is_retry_of(now_ms()));
        assert!(!a.is_retry_of(now_ms() - IDEMPOTENCY_TTL_MS - 1));
        assert_ne!(a.fingerprint, b.fingerprint);
    }
}
