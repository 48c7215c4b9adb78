//! Persistence: one `Store` trait, one implementation per database. The only place SQL
//! lives. Records here are plain data; the HTTP layer shapes them into responses.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub mod postgres;
pub mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Claims after which a job whose worker died is failed instead of queued again: a job that
/// kills its node (out of memory, say) must not take the whole cluster down one node at a time.
pub const MAX_ATTEMPTS: i64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// A record with this id exists already (two requests with one idempotency key at once).
    #[error("duplicate record: {0}")]
    Duplicate(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Database(ref db) if postgres::is_unavailable(db.as_ref()) => {
                StoreError::Unavailable(e.to_string())
            }
            sqlx::Error::Database(ref db) if db.is_unique_violation() => {
                StoreError::Duplicate(e.to_string())
            }
            other => StoreError::Database(other.to_string()),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `value` as JSON, with f32 fields written at their own precision (0.01, not
/// 0.009999999776482582), which a plain `serde_json::to_value` would not do.
pub fn to_json<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_string(value)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// A dataset's description (its data is a separate blob).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetRecord {
    pub id: Uuid,
    pub tenant: String,
    pub name: String,
    pub created_at: i64,
    pub rows: i64,
    pub inputs: i64,
    pub outputs: i64,
    /// Feature names, target names, classes: kept as the JSON the API shows.
    pub meta: serde_json::Value,
    pub size_bytes: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [&'static str; 5] = ["queued", "running", "succeeded", "failed", "cancelled"];

    pub fn as_str(self) -> &'static str {
        Self::ALL[self as usize]
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: Uuid,
    pub tenant: String,
    pub seq: i64,
    pub status: JobStatus,
    pub priority: i32,
    pub dataset_id: Option<Uuid>,
    /// The normalised spec: the request with every default filled in.
    pub spec: serde_json::Value,
    pub epochs: i64,
    /// Epochs finished.
    pub epoch: i64,
    pub latest: Option<serde_json::Value>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub model_id: Option<Uuid>,
    pub error: Option<serde_json::Value>,
    pub stop_reason: Option<String>,
    pub attempt: i64,
    pub cancel_requested: bool,
    pub stop_requested: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    pub id: Uuid,
    pub tenant: String,
    pub name: Option<String>,
    pub created_at: i64,
    pub job_id: Option<Uuid>,
    pub dataset_id: Option<Uuid>,
    pub input_dim: i64,
    pub output_dim: i64,
    pub parameter_count: i64,
    pub metrics: serde_json::Value,
    /// The portable model document (what export returns).
    pub document: serde_json::Value,
}

/// A tenant's jobs and bytes, for quotas.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub queued: i64,
    pub running: i64,
    pub stored_bytes: i64,
}

/// The first answer to a request with an `Idempotency-Key`.
#[derive(Clone, Debug, PartialEq)]
pub struct IdempotentAnswer {
    pub fingerprint: String,
    pub status: u16,
    pub location: Option<String>,
    pub body: serde_json::Value,
}

/// How long idempotency keys are kept.
pub const IDEMPOTENCY_TTL_MS: i64 = 24 * 3600 * 1000;

/// How a job ends.
#[derive(Clone, Debug)]
pub enum Finish {
    Succeeded {
        model: ModelRecord,
        stop_reason: String,
    },
    Failed {
        error: serde_json::Value,
    },
    Cancelled,
}

/// A page of a listing, newest first; `next` is the cursor for the following page.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<i64>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn ping(&self) -> Result<()>;
    /// Connections of the pool: (open, idle).
    fn pool_use(&self) -> (u32, u32);

    /// Takes the stored bytes by value: a large dataset is then not copied once more on its
    /// way into the database.
    async fn insert_dataset(&self, d: &DatasetRecord, data: Vec<u8>) -> Result<()>;
    async fn get_dataset(&self, id: Uuid) -> Result<Option<DatasetRecord>>;
    async fn dataset_data(&self, id: Uuid) -> Result<Option<Vec<u8>>>;
    async fn list_datasets(
        &self,
        tenant: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Page<DatasetRecord>>;
    async fn delete_dataset(&self, id: Uuid) -> Result<bool>;

    async fn insert_job(&self, j: &JobRecord) -> Result<()>;
    async fn get_job(&self, id: Uuid) -> Result<Option<JobRecord>>;
    async fn list_jobs(
        &self,
        tenant: &str,
        status: Option<JobStatus>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Page<JobRecord>>;
    /// Deletes a job that is not running, with its history and checkpoint.
    async fn delete_job(&self, id: Uuid) -> Result<bool>;
    /// Queued jobs ahead of this one (0 = next to run).
    async fn queue_position(&self, id: Uuid) -> Result<Option<i64>>;
    async fn count_jobs(&self, status: JobStatus) -> Result<i64>;
    /// What a tenant holds now, for quotas.
    async fn usage(&self, tenant: &str) -> Result<Usage>;
    /// The stored answer to an earlier request with this idempotency key, if any
    /// (answers older than a day are forgotten).
    async fn idempotent_answer(
        &self,
        tenant: &str,
        route: &str,
        key: &str,
    ) -> Result<Option<IdempotentAnswer>>;
    /// Remembers the answer to a request with an idempotency key (the first one wins).
    async fn remember_answer(
        &self,
        tenant: &str,
        route: &str,
        key: &str,
        answer: &IdempotentAnswer,
    ) -> Result<()>;

    /// Atomically takes the next queued job (highest priority, then oldest), marks it running
    /// under a new attempt and a lease for `worker`, and returns it. With
    /// `max_running_per_tenant` > 0, jobs of tenants that already run that many wait.
    async fn claim_next_job(
        &self,
        worker: &str,
        lease_ms: i64,
        max_running_per_tenant: i64,
    ) -> Result<Option<JobRecord>>;
    /// Extends the lease; false when this worker's attempt no longer owns the job.
    async fn renew_lease(&self, id: Uuid, attempt: i64, lease_ms: i64) -> Result<bool>;
    /// Puts jobs whose lease expired (or all running jobs, at a single node's start) back in
    /// the queue, except those already claimed `MAX_ATTEMPTS` times: they fail with a
    /// `/problems/too-many-attempts` error. Returns how many jobs stopped running (both kinds).
    async fn requeue_running(&self, only_expired: bool) -> Result<u64>;
    /// Puts one job this worker holds back in the queue (graceful shutdown).
    async fn release_job(&self, id: Uuid, attempt: i64) -> Result<bool>;

    /// Records a finished epoch (replacing a record of the same epoch from an earlier
    /// attempt); fenced: false when `attempt` no longer owns the job.
    async fn record_epoch(
        &self,
        id: Uuid,
        attempt: i64,
        record: &serde_json::Value,
        epoch: i64,
    ) -> Result<bool>;
    async fn history(&self, id: Uuid, since: i64) -> Result<Vec<serde_json::Value>>;
    /// Saves the state after `epoch`, replacing the previous checkpoint; fenced by attempt.
    async fn save_checkpoint(
        &self,
        id: Uuid,
        attempt: i64,
        epoch: i64,
        state: &[u8],
    ) -> Result<bool>;
    async fn load_checkpoint(&self, id: Uuid) -> Result<Option<(i64, Vec<u8>)>>;
    /// Removes history records after `epoch` (they will be recomputed identically).
    async fn truncate_history(&self, id: Uuid, attempt: i64, epoch: i64) -> Result<bool>;
    /// Ends a job; fenced by attempt. With `Succeeded` the model is stored in the same
    /// transaction.
    async fn finish_job(&self, id: Uuid, attempt: i64, finish: Finish) -> Result<bool>;
    /// Flags a job for cancel; a queued job is cancelled at once. Returns the job after.
    async fn request_cancel(&self, id: Uuid) -> Result<Option<JobRecord>>;
    async fn request_stop(&self, id: Uuid) -> Result<Option<JobRecord>>;

    async fn insert_model(&self, m: &ModelRecord) -> Result<()>;
    async fn get_model(&self, id: Uuid) -> Result<Option<ModelRecord>>;
    async fn list_models(
        &self,
        tenant: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Page<ModelRecord>>;
    async fn delete_model(&self, id: Uuid) -> Result<bool>;
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn migration_files(backend: &str) -> Vec<String> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(backend);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| {
                e.expect("directory entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    /// One schema history for both backends: a migration added to one folder only would
    /// leave a node on the other backend with a different schema under the same version.
    #[test]
    fn both_backends_have_the_same_migrations() {
        let sqlite = migration_files("sqlite");
        assert!(!sqlite.is_empty(), "no SQLite migrations found");
        assert_eq!(sqlite, migration_files("postgres"));
        let versions = |m: &sqlx::migrate::Migrator| {
            m.iter()
                .map(|m| (m.version, m.description.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            versions(&super::sqlite::MIGRATOR),
            versions(&super::postgres::MIGRATOR)
        );
    }
}
