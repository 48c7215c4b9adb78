//! The use cases: what a request asks the service to do, between the HTTP face (`api`) and
//! the rooms that do the work (`store`, `jobs`, `data`, `nn`). Submitting a job (the
//! idempotent id, reading and validating the request, limits, quotas, the dry-run estimate),
//! predicting (the model cache, the bounded row reader, job snapshots), storing datasets and
//! importing models.
//!
//! Knows no HTTP: no status codes, no headers, no problem JSON. A use case takes parsed
//! arguments and the caller's tenant and returns records or an [`Error`] that says *what* went
//! wrong (invalid, not found, a conflict, over a limit); `api::error` alone decides how that is
//! answered. The role check stays with the handler (it needs the bearer key's role, an HTTP
//! concern), and so do the remembered answers of idempotent requests (they are HTTP answers).

use std::sync::Arc;

use crate::data::Limits as DataLimits;
use crate::jobs::Jobs;
use crate::store::Store;

pub mod batch;
pub mod datasets;
pub mod deployments;
pub mod error;
pub mod evaluate;
pub mod export;
pub mod idempotency;
pub mod inference;
pub mod jobs;
pub mod leaderboard;
pub mod lr_find;
pub mod models;
pub mod predict;
pub mod predict_csv;
pub mod read;
pub mod space;
pub mod sweeps;
pub mod warm;

pub use deployments::DeploymentCache;
pub use error::Error;
pub use idempotency::IdempotencyKey;
pub use predict::ModelCache;

pub type Result<T> = std::result::Result<T, Error>;

/// What a tenant's requests may ask for. `config.rs` takes its defaults from [`Limits::DEFAULT`].
#[derive(Clone, Debug)]
pub struct Limits {
    pub data: DataLimits,
    pub max_parameters: usize,
    pub max_epochs: u32,
    pub max_queued_jobs: i64,
    pub max_predict_rows: usize,
    pub max_layers: usize,
    /// Per-tenant quotas (0 = none).
    pub quota_queued_jobs: i64,
    pub quota_stored_bytes: i64,
    /// Bytes one training job may hold (0 = no limit): a job that would need more is refused.
    pub max_job_memory: u64,
}

impl Limits {
    /// The server's defaults (the flags' defaults in `config.rs`).
    pub const DEFAULT: Limits = Limits {
        data: DataLimits::DEFAULT,
        max_parameters: 50_000_000,
        max_epochs: 100_000,
        max_queued_jobs: 1000,
        max_predict_rows: 100_000,
        max_layers: 1000,
        quota_queued_jobs: 0,
        quota_stored_bytes: 0,
        max_job_memory: 0,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// The service: the store, the queue, the loaded models and the limits; cheap to clone.
#[derive(Clone)]
pub struct Service {
    pub store: Arc<dyn Store>,
    pub jobs: Jobs,
    pub models: Arc<ModelCache>,
    pub limits: Arc<Limits>,
    /// Deployment name → model, so a prediction by name reads no row per request.
    pub deployments: Arc<DeploymentCache>,
    /// Ended sweep jobs' validation curves, for cross-validated trials' shared epoch.
    pub curves: Arc<sweeps::CurveCache>,
}

impl Service {
    /// Refuses (as over quota) storing `extra` more bytes when that would put the tenant over
    /// its quota.
    pub async fn check_bytes_quota(&self, tenant: &str, extra: usize) -> Result<()> {
        let quota = self.limits.quota_stored_bytes;
        if quota > 0 {
            let used = self.store.usage(tenant).await?.stored_bytes;
            if used + extra as i64 > quota {
                return Err(Error::OverQuota {
                    detail: format!(
                        "tenant {tenant} stores {used} bytes; {extra} more would pass its quota of {quota} (delete datasets, models, or finished jobs whose saved state can continue them)"
                    ),
                    retry_after: 3600,
                });
            }
        }
        Ok(())
    }
}
