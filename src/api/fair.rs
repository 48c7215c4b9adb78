//! Fair sharing of one node between keys and tenants: a token bucket per API key for
//! `/v1` requests (`--rate-limit` per second on average, `--rate-limit-burst` at once; off by
//! default), answered 429 with `Retry-After` when empty; and a cap on the event streams one
//! tenant holds open (`--max-sse-clients-per-tenant`, or by default a fair share once the
//! node's `--max-sse-clients` are three quarters taken), so one tenant cannot take every
//! stream. (Shares of the training slots are the queue's: `Store::claim_next_job`
//! takes the job of the tenant with the fewest running jobs first.) No SQL here.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use super::{ApiError, AppState};

/// Whose bucket a request draws from.
type Bucket = [u8; 32];

pub struct Fairness {
    limiter: Option<DefaultKeyedRateLimiter<Bucket>>,
    clock: DefaultClock,
    rate: f64,
    burst: u32,
    max_streams_per_tenant: usize,
    /// The node's event streams (`--max-sse-clients`), for the default shares.
    node_streams: usize,
    streams: Mutex<HashMap<String, usize>>,
}

impl Fairness {
    /// `rate` requests per second per key on average (0 = no limit) with `burst` at once;
    /// `max_streams_per_tenant` event streams per tenant (0 = no limit beyond the node's).
    pub fn new(
        rate: f64,
        burst: u32,
        max_streams_per_tenant: usize,
        node_streams: usize,
    ) -> Result<Fairness, String> {
        if !(rate.is_finite() && rate >= 0.0) {
            return Err(format!(
                "--rate-limit must be a number of requests per second, 0 or more; got {rate}"
            ));
        }
        let limiter = if rate > 0.0 {
            let burst_nz = NonZeroU32::new(burst)
                .ok_or("--rate-limit-burst must be at least 1 when --rate-limit is set")?;
            // One token every 1/rate seconds (at most one a nanosecond).
            let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
            let quota = Quota::with_period(period)
                .ok_or("--rate-limit is too large")?
                .allow_burst(burst_nz);
            Some(DefaultKeyedRateLimiter::hashmap(quota))
        } else {
            None
        };
        Ok(Fairness {
            limiter,
            clock: DefaultClock::default(),
            rate,
            burst,
            max_streams_per_tenant,
            node_streams,
            streams: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a token from `bucket`, or says when the next one comes.
    fn take(&self, bucket: &Bucket) -> Result<(), ApiError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check_key(bucket).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            metrics::counter!("backprop_rate_limited_total").increment(1);
            ApiError::TooMany {
                detail: format!(
                    "this API key made more than {} requests at once or {} per second on average \
                     (--rate-limit-burst, --rate-limit); retry after {:.1} s",
                    self.burst,
                    self.rate,
                    wait.as_secs_f64()
                ),
                retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
            }
        })
    }

    /// Holds one of `tenant`'s event-stream places until the returned guard drops.
    pub fn open_stream(self: &Arc<Self>, tenant: &str) -> Result<StreamPlace, ApiError> {
        let mut open = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = open.values().sum();
        let holders = open.len() + usize::from(!open.contains_key(tenant));
        let n = open.entry(tenant.to_string()).or_insert(0);
        // Without a set share, one tenant may hold at most three quarters of the node's
        // places, and once three quarters are taken only tenants below their fair share (the
        // places over the tenants holding streams) get more: no tenant can take them all.
        let most = self.node_streams - self.node_streams / 4;
        let over_default_share = self.max_streams_per_tenant == 0
            && self.node_streams > 0
            && (*n >= most.max(1) || (total >= most && *n >= (self.node_streams / holders).max(1)));
        if over_default_share {
            metrics::counter!("backprop_event_streams_refused_total").increment(1);
            return Err(ApiError::TooMany {
                detail: format!(
                    "tenant {tenant} has {n} event streams open, its share of this node's {} while other tenants need places (--max-sse-clients-per-tenant sets a fixed share); close one, poll GET /v1/jobs/{{id}}, or retry later",
                    self.node_streams
                ),
                retry_after: 5,
            });
        }
        if self.max_streams_per_tenant > 0 && *n >= self.max_streams_per_tenant {
            metrics::counter!("backprop_event_streams_refused_total").increment(1);
            return Err(ApiError::TooMany {
                detail: format!(
                    "tenant {tenant} has {n} event streams open, its share \
                     (--max-sse-clients-per-tenant); close one, poll GET /v1/jobs/{{id}}, or retry later"
                ),
                retry_after: 5,
            });
        }
        *n += 1;
        Ok(StreamPlace(self.clone(), tenant.to_string()))
    }
}

/// One open event stream of a tenant; gives its place back when dropped.
pub struct StreamPlace(Arc<Fairness>, String);

impl Drop for StreamPlace {
    fn drop(&mut self) {
        let mut open = self.0.streams.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.1);
            }
        }
    }
}

/// Middleware: `/v1` and `/v2` requests (every API and inference protocol: TF Serving's
/// `:predict` is under `/v1`, the Open Inference Protocol under `/v2`) with a valid key (or
/// any, on an open server) draw from that key's bucket. A missing or wrong key passes on to
/// its 401, and the health, metrics and dashboard routes are not limited.
pub async fn limit(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if s.fair.limiter.is_some() && is_limited(req.uri().path()) {
        let bucket = if s.keys.is_open() {
            Some(crate::digest::hash(crate::auth::OPEN_TENANT))
        } else {
            super::auth::bearer_in(req.headers())
                .filter(|secret| s.keys.authenticate(secret).is_some())
                .map(crate::digest::hash)
        };
        if let Some(b) = bucket
            && let Err(e) = s.fair.take(&b)
        {
            return e.into_response();
        }
    }
    next.run(req).await
}

/// The routes `--rate-limit` applies to: the API and both inference protocols, not the
/// probes.
fn is_limited(path: &str) -> bool {
    path.starts_with("/v1/") || (path.starts_with("/v2") && !path.starts_with("/v2/health/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_inference_protocol_is_limited_and_probes_are_not() {
        for limited in [
            "/v1/jobs",
            "/v2/models/m/infer",
            "/v2",
            "/v1/models/m:predict",
        ] {
            assert!(is_limited(limited), "{limited}");
        }
        for free in [
            "/healthz",
            "/v2/health/live",
            "/v2/health/ready",
            "/metrics",
            "/",
        ] {
            assert!(!is_limited(free), "{free}");
        }
    }

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_with_the_wait() {
        let f = Fairness::new(2.0, 3, 0, 512).unwrap();
        let k = [1u8; 32];
        for _ in 0..3 {
            assert!(f.take(&k).is_ok());
        }
        match f.take(&k) {
            Err(ApiError::TooMany {
                retry_after,
                detail,
            }) => {
                // One token every 0.5 s: the wait rounds up to 1 s.
                assert_eq!(retry_after, 1);
                assert!(detail.contains("--rate-limit"), "{detail}");
            }
            other => panic!("expected 429, got {:?}", other.map(|_| ())),
        }
        // Another key has its own bucket.
        assert!(f.take(&[2u8; 32]).is_ok());
    }

    #[test]
    fn no_rate_means_no_limit_and_bad_settings_are_refused() {
        let f = Fairness::new(0.0, 0, 0, 512).unwrap();
        for _ in 0..1000 {
            assert!(f.take(&[0u8; 32]).is_ok());
        }
        assert!(Fairness::new(-1.0, 5, 0, 512).is_err());
        assert!(Fairness::new(f64::NAN, 5, 0, 512).is_err());
        assert!(Fairness::new(1.0, 0, 0, 512).is_err());
    }

    #[test]
    fn a_tenant_holds_at_most_its_streams_and_gets_them_back() {
        let f = Arc::new(Fairness::new(0.0, 0, 2, 512).unwrap());
        let a1 = f.open_stream("a").unwrap();
        let _a2 = f.open_stream("a").unwrap();
        assert!(matches!(f.open_stream("a"), Err(ApiError::TooMany { .. })));
        let _b = f
            .open_stream("b")
            .expect("another tenant has its own share");
        drop(a1);
        assert!(f.open_stream("a").is_ok());
    }

    /// Issue 23: by default one tenant held all 512 streams and another's got 503. It may
    /// take three quarters of the node alone; the rest go to tenants below their share.
    #[test]
    fn by_default_the_last_quarter_of_the_streams_is_kept_for_other_tenants() {
        let f = Arc::new(Fairness::new(0.0, 0, 0, 8).unwrap());
        let b: Vec<_> = (0..6).map(|_| f.open_stream("b").unwrap()).collect();
        assert!(matches!(f.open_stream("b"), Err(ApiError::TooMany { .. })));
        let a: Vec<_> = (0..2).map(|_| f.open_stream("a").unwrap()).collect();
        // Two tenants hold streams: b's share is 4, it holds 6; a's is 4, it holds 2.
        drop(b);
        let _b2: Vec<_> = (0..4).map(|_| f.open_stream("b").unwrap()).collect();
        assert_eq!(a.len(), 2);
    }
}
