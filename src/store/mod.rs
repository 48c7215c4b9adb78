//! Persistence: one `Store` trait, one implementation per database. The only place SQL
//! lives. Records here are plain data (a job's spec typed, with the engine's `TrainSpec`
//! inside); the use cases fill them and the HTTP layer shapes them into responses.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::nn::TrainSpec;

pub mod backup;
pub mod postgres;
mod queries;
mod rows;
mod sql;
pub mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Crashes (its node stopped while it ran, with no checkpoint saved in between) after which a
/// job fails instead of being queued again: a job that kills its node (out of memory, say)
/// must not take the whole cluster down one node at a time. A job that checkpoints between
/// crashes never reaches it: it was making progress, and someone else's job may have
/// stopped the node.
pub const MAX_CRASHES: i64 = 3;

/// The error of a job failed for its crashes.
const CRASHED_DETAIL: &str = "its node stopped 3 times while it ran, with no checkpoint saved in \
between: it is taken to be what stops the node (most often by needing more memory than the \
node has), and it will not be retried; give it fewer inputs (max_categories, columns typed \
\"ignore\"), fewer units or a smaller batch_size";

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
    /// A foreign key refused the write: a record it names was deleted meanwhile, or one it
    /// deletes is still referred to (a model a deployment was just pointed at).
    #[error("record in use: {0}")]
    InUse(String),
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
            // A full disk is an outage too: clear, temporary, and nothing half-written stays.
            sqlx::Error::Database(ref db) if is_disk_full(db.as_ref()) => {
                StoreError::Unavailable(format!("the database's disk is full ({e})"))
            }
            sqlx::Error::Database(ref db) if db.is_unique_violation() => {
                StoreError::Duplicate(e.to_string())
            }
            sqlx::Error::Database(ref db) if db.is_foreign_key_violation() => {
                StoreError::InUse(e.to_string())
            }
            other => StoreError::Database(other.to_string()),
        }
    }
}

/// SQLite's SQLITE_FULL (13) or PostgreSQL's disk_full (53100).
fn is_disk_full(e: &dyn sqlx::error::DatabaseError) -> bool {
    matches!(e.code().as_deref(), Some("13") | Some("53100"))
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub use crate::clock::now_ms;

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

/// A job's spec as stored: the engine's [`TrainSpec`] (every default filled in) and the
/// service's fields, in one flat JSON object — the shape `POST /v1/jobs` takes and
/// `GET /v1/jobs/{id}` shows as `spec`. Stored specs written by earlier releases read back
/// through [`JobSpec::from_value`] unchanged: the shape has not changed, only its type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "serde_json::Value", try_from = "serde_json::Value")]
pub struct JobSpec {
    pub train: TrainSpec,
    /// The dataset it trains on (inline datasets are stored first and named here).
    pub dataset_id: Option<Uuid>,
    pub priority: i32,
    pub name: Option<String>,
    /// A separate stored dataset to validate on (instead of a `validation_split`).
    pub validation_dataset_id: Option<Uuid>,
    /// A warm start: training begins from this model's weights.
    pub init_model_id: Option<Uuid>,
    /// The job this one continues (its history and training state were copied at creation).
    pub continues: Option<Uuid>,
    /// `"optimizer": {"learning_rate": "auto"}`: the learning-rate range test runs first and
    /// the job trains at the rate it suggests (`train.optimizer` then has no rate).
    pub auto_learning_rate: bool,
}

impl JobSpec {
    /// The fields of a job request that belong to the service, not to the engine's spec
    /// (`dataset` is an inline dataset, stored as `dataset_id`).
    pub const SERVICE_FIELDS: [&'static str; 6] = [
        "dataset_id",
        "dataset",
        "priority",
        "name",
        "validation_dataset_id",
        "init_model_id",
    ];
    /// Fields only the service writes (a request may not set them).
    pub const STORED_FIELDS: [&'static str; 1] = ["continues"];

    /// The stored JSON object.
    pub fn to_value(&self) -> serde_json::Value {
        let mut v = to_json(&self.train);
        if let Some(o) = v.as_object_mut() {
            if let Some(id) = self.dataset_id {
                o.insert("dataset_id".into(), serde_json::json!(id));
            }
            o.insert("priority".into(), serde_json::json!(self.priority));
            if let Some(n) = &self.name {
                o.insert("name".into(), serde_json::json!(n));
            }
            if let Some(id) = self.validation_dataset_id {
                o.insert("validation_dataset_id".into(), serde_json::json!(id));
            }
            if let Some(id) = self.init_model_id {
                o.insert("init_model_id".into(), serde_json::json!(id));
            }
            if let Some(id) = self.continues {
                o.insert("continues".into(), serde_json::json!(id));
            }
            if self.auto_learning_rate
                && let Some(opt) = o.get_mut("optimizer").and_then(|v| v.as_object_mut())
            {
                opt.insert("learning_rate".into(), serde_json::json!("auto"));
            }
        }
        v
    }

    /// Takes `"learning_rate": "auto"` out of an optimizer object: true when it was there.
    pub fn take_auto_learning_rate(spec: &mut serde_json::Map<String, serde_json::Value>) -> bool {
        match spec.get_mut("optimizer").and_then(|v| v.as_object_mut()) {
            Some(opt) if opt.get("learning_rate").and_then(|r| r.as_str()) == Some("auto") => {
                opt.remove("learning_rate");
                true
            }
            _ => false,
        }
    }

    /// Reads a stored spec back.
    pub fn from_value(v: serde_json::Value) -> std::result::Result<Self, String> {
        let serde_json::Value::Object(mut o) = v else {
            return Err("a job spec is a JSON object".into());
        };
        let dataset_id = match o.get("dataset_id") {
            None | Some(serde_json::Value::Null) => None,
            Some(id) => Some(
                id.as_str()
                    .and_then(|i| Uuid::parse_str(i).ok())
                    .ok_or_else(|| format!("dataset_id {id} is not a UUID"))?,
            ),
        };
        let priority = match o.get("priority") {
            None | Some(serde_json::Value::Null) => 0,
            Some(p) => p
                .as_i64()
                .and_then(|p| i32::try_from(p).ok())
                .ok_or_else(|| format!("priority {p} is not a 32-bit integer"))?,
        };
        let name = o.get("name").and_then(|n| n.as_str()).map(str::to_owned);
        let validation_dataset_id = match o.get("validation_dataset_id") {
            None | Some(serde_json::Value::Null) => None,
            Some(id) => Some(
                id.as_str()
                    .and_then(|i| Uuid::parse_str(i).ok())
                    .ok_or_else(|| format!("validation_dataset_id {id} is not a UUID"))?,
            ),
        };
        let uuid_of = |f: &str| match o.get(f) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(id) => id
                .as_str()
                .and_then(|i| Uuid::parse_str(i).ok())
                .map(Some)
                .ok_or_else(|| format!("{f} {id} is not a UUID")),
        };
        let init_model_id = uuid_of("init_model_id")?;
        let continues = uuid_of("continues")?;
        for f in Self::SERVICE_FIELDS.iter().chain(&Self::STORED_FIELDS) {
            o.remove(*f);
        }
        let auto_learning_rate = Self::take_auto_learning_rate(&mut o);
        let train =
            serde_json::from_value(serde_json::Value::Object(o)).map_err(|e| e.to_string())?;
        Ok(JobSpec {
            train,
            dataset_id,
            priority,
            name,
            validation_dataset_id,
            init_model_id,
            continues,
            auto_learning_rate,
        })
    }
}

impl From<JobSpec> for serde_json::Value {
    fn from(spec: JobSpec) -> Self {
        spec.to_value()
    }
}

impl TryFrom<serde_json::Value> for JobSpec {
    type Error = String;
    fn try_from(v: serde_json::Value) -> std::result::Result<Self, String> {
        JobSpec::from_value(v)
    }
}

/// Why a job failed, as a kind the service can act on; the HTTP layer decides how each kind
/// is shown (its problem type, title and status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The loss or the weights stopped being finite.
    TrainingDiverged,
    /// The engine refused the spec at run time.
    InvalidSpec,
    /// The job names no dataset.
    NoDataset,
    /// Its dataset was deleted before it ran.
    DatasetGone,
    /// Its dataset or checkpoint could not be decoded.
    CheckpointUnreadable,
    /// Its stored spec could not be read (written by releases before specs were typed).
    StoredSpecUnreadable,
    /// No thread could be started to train it.
    NoTrainingThread,
    /// The training thread ended without a result.
    TrainingCrashed,
    /// The store failed while the job started, for another reason than being away.
    DatabaseError,
    /// Its node stopped `MAX_CRASHES` times while it ran, with no checkpoint in between.
    TooManyAttempts,
    /// It needs more memory than one job may use here (or than could be reserved).
    TooLarge,
}

impl FailureKind {
    pub const ALL: [FailureKind; 11] = [
        FailureKind::TrainingDiverged,
        FailureKind::InvalidSpec,
        FailureKind::NoDataset,
        FailureKind::DatasetGone,
        FailureKind::CheckpointUnreadable,
        FailureKind::StoredSpecUnreadable,
        FailureKind::NoTrainingThread,
        FailureKind::TrainingCrashed,
        FailureKind::DatabaseError,
        FailureKind::TooManyAttempts,
        FailureKind::TooLarge,
    ];

    /// The stored name (`training_diverged`).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::TrainingDiverged => "training_diverged",
            FailureKind::InvalidSpec => "invalid_spec",
            FailureKind::NoDataset => "no_dataset",
            FailureKind::DatasetGone => "dataset_gone",
            FailureKind::CheckpointUnreadable => "checkpoint_unreadable",
            FailureKind::StoredSpecUnreadable => "stored_spec_unreadable",
            FailureKind::NoTrainingThread => "no_training_thread",
            FailureKind::TrainingCrashed => "training_crashed",
            FailureKind::DatabaseError => "database_error",
            FailureKind::TooManyAttempts => "too_many_attempts",
            FailureKind::TooLarge => "too_large",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// A failed job's error: its kind and what happened. Stored as `{"kind", "detail"}`. Rows
/// written by releases that stored a problem document (`{"type": "/problems/<slug>",
/// "title", "status", "detail"}`) read back as the kind of their slug.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "serde_json::Value", try_from = "serde_json::Value")]
pub struct Failure {
    pub kind: FailureKind,
    pub detail: String,
}

impl Failure {
    pub fn new(kind: FailureKind, detail: impl Into<String>) -> Self {
        Failure {
            kind,
            detail: detail.into(),
        }
    }

    /// The stored JSON object.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::json!({"kind": self.kind.as_str(), "detail": self.detail})
    }

    /// Reads a stored error: this release's `{"kind", "detail"}`, or an earlier release's
    /// problem document.
    pub fn from_value(v: &serde_json::Value) -> std::result::Result<Self, String> {
        let detail = v.get("detail").and_then(|d| d.as_str()).unwrap_or_default();
        let kind = match (v.get("kind"), v.get("type")) {
            (Some(k), _) => k.as_str().and_then(FailureKind::parse),
            (None, Some(t)) => t
                .as_str()
                .and_then(|t| t.strip_prefix("/problems/"))
                .and_then(|slug| FailureKind::parse(&slug.replace('-', "_"))),
            (None, None) => None,
        };
        let kind = kind.ok_or_else(|| format!("a job error of no known kind: {v}"))?;
        Ok(Failure::new(kind, detail))
    }
}

impl From<Failure> for serde_json::Value {
    fn from(f: Failure) -> Self {
        f.to_value()
    }
}

impl TryFrom<serde_json::Value> for Failure {
    type Error = String;
    fn try_from(v: serde_json::Value) -> std::result::Result<Self, String> {
        Failure::from_value(&v)
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
    pub spec: JobSpec,
    pub epochs: i64,
    /// Epochs finished.
    pub epoch: i64,
    pub latest: Option<serde_json::Value>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub model_id: Option<Uuid>,
    pub error: Option<Failure>,
    pub stop_reason: Option<String>,
    pub attempt: i64,
    /// Times its node stopped while it ran with no checkpoint saved since it was claimed (a
    /// checkpoint sets it back to 0): a job with one runs alone on its node, and at
    /// [`MAX_CRASHES`] it fails.
    pub crashes: i64,
    pub cancel_requested: bool,
    pub stop_requested: bool,
    /// The sweep that made it, and what it is to that sweep.
    pub sweep: Option<SweepLink>,
}

/// What a job, or the model it made, is to the sweep that made it: one trial's job (at a
/// rung, on a validation fold), or the refit of the chosen trial.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepLink {
    pub sweep_id: Uuid,
    pub role: SweepRole,
    pub trial: i64,
    /// A trial's rung (`None` for a refit).
    pub rung: Option<i64>,
    /// A trial's validation fold (`None` for a refit).
    pub fold: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepRole {
    /// A trial's job (or its model): left out of listings while its sweep exists, unless
    /// asked for.
    Trial,
    /// The chosen trial trained again on every training row: the sweep's model, listed.
    Refit,
}

impl SweepRole {
    pub fn as_str(self) -> &'static str {
        match self {
            SweepRole::Trial => "trial",
            SweepRole::Refit => "refit",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "trial" => Some(SweepRole::Trial),
            "refit" => Some(SweepRole::Refit),
            _ => None,
        }
    }
}

/// Which of a tenant's jobs or models a listing shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListFilter {
    /// Jobs only.
    pub status: Option<JobStatus>,
    /// Only those of this sweep (its trials included).
    pub sweep_id: Option<Uuid>,
    /// Sweeps' trial jobs and models too (left out by default while their sweep exists).
    pub include_trials: bool,
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
    /// The sweep whose job made it (as that job's).
    pub sweep: Option<SweepLink>,
}

/// A tenant's jobs and bytes, for quotas.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub queued: i64,
    pub running: i64,
    pub stored_bytes: i64,
}

/// The first answer to a request with an `Idempotency-Key` (`status` 0: the key is reserved
/// by a request still being answered, or one that died before it answered).
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
        model: Box<ModelRecord>,
        stop_reason: String,
    },
    Failed(Failure),
    Cancelled,
}

/// Where a listing page ended: its last record's key (its id, or a deployment's name) and
/// creation time. Clients see it as an opaque string ([`Cursor::encode`]); it says nothing they
/// cannot read in the record itself (a server-wide sequence number would tell one tenant how
/// busy the others are).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub key: String,
    pub created_at: i64,
}

impl Cursor {
    /// The first page: no record ends it.
    pub fn start() -> Cursor {
        Cursor {
            key: String::new(),
            created_at: i64::MAX,
        }
    }

    /// Hex digits: the creation time's 8 bytes (big-endian), then the key's bytes.
    pub fn encode(&self) -> String {
        let mut b = self.created_at.to_be_bytes().to_vec();
        b.extend_from_slice(self.key.as_bytes());
        crate::digest::hex(&b)
    }

    /// A cursor [`encode`](Self::encode) wrote; `None` for anything else.
    pub fn decode(s: &str) -> Option<Cursor> {
        if s.len() < 16 || s.len() > 2 * (8 + 128) || !s.len().is_multiple_of(2) {
            return None;
        }
        let bytes: Vec<u8> = (0..s.len() / 2)
            .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
            .collect::<Option<_>>()?;
        Some(Cursor {
            created_at: i64::from_be_bytes(bytes[..8].try_into().ok()?),
            key: String::from_utf8(bytes[8..].to_vec()).ok()?,
        })
    }
}

/// A page of a listing, newest first; `next` is the cursor for the following page.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
    /// Records the whole listing holds (of the tenant, with the filter), all pages together.
    pub total: i64,
}

/// A named deployment (issue 13): a tenant's stable name for one model at a time. `version`
/// counts the times it was pointed (1 for the first); `deployment_versions` keeps each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    pub seq: i64,
    pub tenant: String,
    pub name: String,
    pub version: i64,
    pub model_id: Uuid,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One version of a deployment: the model it pointed at from `created_at`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeploymentVersion {
    pub version: i64,
    pub model_id: Uuid,
    pub created_at: i64,
}

/// A batch prediction of a stored dataset: `status` is `running`, `succeeded` or `failed`;
/// `updated_at` moves with every chunk written (a heartbeat).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchRecord {
    pub id: Uuid,
    pub tenant: String,
    pub model_id: Uuid,
    pub dataset_id: Uuid,
    pub status: String,
    pub rows_total: i64,
    pub rows_done: i64,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

// ---- issue 14: continued jobs, learning-rate range tests, sweeps ----

/// Where a continued job starts: its source job, the epoch it continues after (the source's
/// history up to it is copied), and the training state it resumes from (its checkpoint).
#[derive(Clone, Debug, PartialEq)]
pub struct Continuation {
    pub job_id: Uuid,
    pub epoch: i64,
    pub state: Vec<u8>,
}

/// A sweep: many jobs of one base spec over a search space. `spec` is the normalised request
/// (`service::sweeps::SweepSpec`'s JSON); `best` the best trial so far.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepRecord {
    pub id: Uuid,
    pub tenant: String,
    pub seq: i64,
    pub dataset_id: Uuid,
    pub status: JobStatus,
    pub spec: serde_json::Value,
    pub best: Option<serde_json::Value>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub cancel_requested: bool,
}

/// One job of a sweep's trial: rung 0 is its first job, a later rung the job continuing it.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialRecord {
    pub sweep_id: Uuid,
    pub trial: i64,
    pub rung: i64,
    pub job_id: Uuid,
    pub params: serde_json::Value,
}

/// A dataset's stored bytes in the order they join, made as they are taken (or made ahead,
/// elsewhere, while the ones before them are written).
pub type Parts = futures::stream::BoxStream<'static, Vec<u8>>;

/// One step of a dataset stored as it arrives ([`Store::write_dataset`]).
#[derive(Debug)]
pub enum DatasetWrite {
    /// A part of the stored bytes, numbered by its place in their order.
    Part(i64, Vec<u8>),
    /// The dataset's record: it is written and everything committed.
    Commit(DatasetRecord),
}

/// The steps of [`Store::write_dataset`].
pub type DatasetWrites = futures::stream::BoxStream<'static, DatasetWrite>;

/// Refuses a `Commit` whose record is not the dataset `write_dataset` was writing (`id` of
/// `tenant`): a caller's mistake, which commits nothing.
fn check_commit(d: &DatasetRecord, id: Uuid, tenant: &str) -> Result<()> {
    if d.id != id || d.tenant != tenant {
        return Err(StoreError::Database(format!(
            "the record of dataset {} (tenant {}) commits dataset {id} (tenant {tenant})",
            d.id, d.tenant
        )));
    }
    Ok(())
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn ping(&self) -> Result<()>;
    /// Connections of the pool: (open, idle).
    fn pool_use(&self) -> (u32, u32);

    /// Stores a dataset's record and its bytes, part by part, in one transaction: each part is
    /// made (see `data::ColumnParts`) only shortly before it is written, so a large
    /// dataset is never held in memory twice on its way into the database.
    async fn insert_dataset_parts(&self, d: &DatasetRecord, parts: Parts) -> Result<()>;

    /// Stores a dataset whose bytes come before its record is known (an upload written while
    /// it arrives), in one transaction: the id `id` of `tenant` is taken at once (a duplicate
    /// fails before any part is written), each part is written as `writes` yields it (in any
    /// order of part numbers; they join in number order), and a `Commit` writes the record
    /// (with this id and tenant) and commits: `Ok(true)`. `writes` ending without a commit
    /// rolls everything back: `Ok(false)`. No reader sees any of it before the commit.
    async fn write_dataset(&self, id: Uuid, tenant: &str, writes: DatasetWrites) -> Result<bool>;

    /// [`Store::insert_dataset_parts`] with the bytes in one part.
    async fn insert_dataset(&self, d: &DatasetRecord, data: Vec<u8>) -> Result<()> {
        self.insert_dataset_parts(d, Box::pin(futures::stream::iter([data])))
            .await
    }

    /// A dataset's stored bytes, its parts joined (or, for a dataset stored by a release
    /// before parts, the one blob it kept in its record).
    async fn get_dataset(&self, id: Uuid) -> Result<Option<DatasetRecord>>;
    async fn dataset_data(&self, id: Uuid) -> Result<Option<Vec<u8>>>;
    async fn list_datasets(
        &self,
        tenant: &str,
        after: Option<Cursor>,
        limit: i64,
    ) -> Result<Page<DatasetRecord>>;
    /// Deletes a dataset unless a queued or running job trains on it (or validates on it):
    /// false when nothing was deleted, for either reason. The check and the delete are one
    /// statement, so a job cannot start on a dataset between them.
    async fn delete_dataset(&self, id: Uuid) -> Result<bool>;
    /// Queued and running jobs that train or validate on dataset `id` (oldest first, at most
    /// `limit`): what a delete of the dataset would break.
    async fn jobs_using_dataset(&self, id: Uuid, limit: i64) -> Result<Vec<Uuid>>;

    async fn insert_job(&self, j: &JobRecord) -> Result<()>;
    async fn get_job(&self, id: Uuid) -> Result<Option<JobRecord>>;
    async fn list_jobs(
        &self,
        tenant: &str,
        filter: &ListFilter,
        after: Option<Cursor>,
        limit: i64,
    ) -> Result<Page<JobRecord>>;
    /// Deletes a job that is not running, with its history and checkpoint.
    async fn delete_job(&self, id: Uuid) -> Result<bool>;
    /// The tenant's own queued jobs ahead of this one (0 = its next to run; other tenants'
    /// jobs are not counted, so the number tells nothing of their activity).
    async fn queue_position(&self, id: Uuid) -> Result<Option<i64>>;
    async fn count_jobs(&self, status: JobStatus) -> Result<i64>;
    /// The tenants with queued jobs (who wait for a training slot).
    async fn waiting_tenants(&self) -> Result<Vec<String>>;
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
    /// Remembers the answer to a request with an idempotency key. A key is first reserved by
    /// its request (an answer with status 0 and that request's fingerprint, inserted only when
    /// the key is free); the request's real answer then replaces its own reservation, and
    /// nothing replaces an answer already given (the first one wins).
    async fn remember_answer(
        &self,
        tenant: &str,
        route: &str,
        key: &str,
        answer: &IdempotentAnswer,
    ) -> Result<()>;
    /// Drops a request's reservation of a key (status 0, its fingerprint) when the request
    /// failed without creating anything, so that the key may be used again.
    async fn forget_reservation(
        &self,
        tenant: &str,
        route: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<()>;

    /// Atomically takes the next queued job, marks it running under a new attempt and a lease
    /// for `worker`, and returns it. The next job is the tenant's with the fewest running jobs
    /// (fair shares of the training slots: one tenant's burst waits behind another's first
    /// job), then the highest priority, then the oldest. With
    /// `max_running_per_tenant` > 0, jobs of tenants that already run that many wait. Jobs
    /// with a crash to their name are taken only when `suspects` (the node runs nothing, so
    /// that a job that stops it stops nothing else), fewest crashes first.
    async fn claim_next_job(
        &self,
        worker: &str,
        lease_ms: i64,
        max_running_per_tenant: i64,
        suspects: bool,
    ) -> Result<Option<JobRecord>>;
    /// Extends the lease; false when this worker's attempt no longer owns the job.
    async fn renew_lease(&self, id: Uuid, attempt: i64, lease_ms: i64) -> Result<bool>;
    /// Puts jobs whose lease expired (or all running jobs, at a single node's start) back in
    /// the queue, each with one more crash to its name (a crash after a checkpoint counts
    /// from 0 again); a job at [`MAX_CRASHES`] fails as [`FailureKind::TooManyAttempts`].
    /// Returns how many jobs stopped running (both kinds).
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
    /// At most `limit` epoch records after epoch `since`, in order.
    async fn history(&self, id: Uuid, since: i64, limit: i64) -> Result<Vec<serde_json::Value>>;
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
        filter: &ListFilter,
        after: Option<Cursor>,
        limit: i64,
    ) -> Result<Page<ModelRecord>>;
    /// The tenant's models trained on dataset `dataset_id` (trials included), newest first,
    /// at most `limit`, without their documents (`document` is null): what a leaderboard
    /// ranks.
    async fn models_of_dataset(
        &self,
        tenant: &str,
        dataset_id: Uuid,
        limit: i64,
    ) -> Result<Vec<ModelRecord>>;

    /// Replaces a model's metrics (a sweep's refit gets its out-of-fold evaluation once it
    /// has been scored); false when there is no such model.
    async fn update_model_metrics(&self, id: Uuid, metrics: &serde_json::Value) -> Result<bool>;

    // Upgrades a migration cannot do in SQL alone.
    /// The tasks migrations left for the code (`sweep_links`), not done yet.
    async fn upgrade_tasks(&self) -> Result<Vec<String>>;
    async fn finish_upgrade_task(&self, name: &str) -> Result<()>;
    /// Every sweep, oldest first (for upgrades).
    async fn all_sweeps(&self) -> Result<Vec<SweepRecord>>;
    /// Links job `job_id` and its model to a sweep, unless they are linked already.
    async fn link_to_sweep(&self, job_id: Uuid, link: &SweepLink) -> Result<()>;
    /// Deletes a model unless a queued or running job starts from it (`init_model_id`):
    /// false when nothing was deleted, for either reason.
    async fn delete_model(&self, id: Uuid) -> Result<bool>;

    // Named deployments.
    /// Points `tenant`'s deployment `name` at `model_id` as its next version (version 1 when
    /// it is new), with that version's history row, in one transaction. With `expected`, only
    /// when the deployment is at that version now (`None` otherwise: someone moved it).
    async fn deploy(
        &self,
        tenant: &str,
        name: &str,
        model_id: Uuid,
        expected: Option<i64>,
        now: i64,
    ) -> Result<Option<DeploymentRecord>>;
    async fn get_deployment(&self, tenant: &str, name: &str) -> Result<Option<DeploymentRecord>>;
    async fn list_deployments(
        &self,
        tenant: &str,
        after: Option<Cursor>,
        limit: i64,
    ) -> Result<Page<DeploymentRecord>>;
    /// The deployment's versions, newest first, at most `limit`.
    async fn deployment_versions(
        &self,
        tenant: &str,
        name: &str,
        limit: i64,
    ) -> Result<Vec<DeploymentVersion>>;
    async fn deployment_version(
        &self,
        tenant: &str,
        name: &str,
        version: i64,
    ) -> Result<Option<DeploymentVersion>>;
    /// Removes the name and its history (never a model).
    async fn delete_deployment(&self, tenant: &str, name: &str) -> Result<bool>;
    /// Names of the deployments now pointing at `model_id` (at most 10).
    async fn deployments_of_model(&self, model_id: Uuid) -> Result<Vec<String>>;

    // Batch predictions.
    async fn insert_batch(&self, b: &BatchRecord) -> Result<()>;
    async fn get_batch(&self, id: Uuid) -> Result<Option<BatchRecord>>;
    /// Stores chunk `seq` of a running batch's CSV and its progress, in one transaction;
    /// false when the batch is no longer running.
    async fn append_batch_chunk(
        &self,
        id: Uuid,
        seq: i64,
        csv: &str,
        rows_done: i64,
        now: i64,
    ) -> Result<bool>;
    /// Ends a running batch (`succeeded`, or `failed` with `error`); false when it was not
    /// running.
    async fn finish_batch(
        &self,
        id: Uuid,
        status: &str,
        error: Option<&str>,
        now: i64,
    ) -> Result<bool>;
    async fn batch_chunk(&self, id: Uuid, seq: i64) -> Result<Option<String>>;

    // ---- issue 14: continued jobs, learning-rate range tests, sweeps ----
    /// Inserts a queued job, in one transaction with: a continuation's history (the source
    /// job's epochs up to `from.epoch`, which also become the job's progress) and checkpoint
    /// (`from.state`), and the sweep trial it is.
    async fn insert_job_from(
        &self,
        j: &JobRecord,
        from: Option<&Continuation>,
        trial: Option<&TrialRecord>,
    ) -> Result<()>;
    /// A succeeded job's training state after its last epoch (`finish_job` keeps it).
    async fn final_state(&self, id: Uuid) -> Result<Option<(i64, Vec<u8>)>>;
    /// Records the learning-rate range test a job ran first; fenced by attempt.
    async fn record_lr_range_test(
        &self,
        id: Uuid,
        attempt: i64,
        result: &serde_json::Value,
    ) -> Result<bool>;
    async fn lr_range_test(&self, id: Uuid) -> Result<Option<serde_json::Value>>;
    /// Queued and running jobs that start from model `id` (oldest first, at most `limit`).
    async fn jobs_using_model(&self, id: Uuid, limit: i64) -> Result<Vec<Uuid>>;
    async fn insert_sweep(&self, s: &SweepRecord) -> Result<()>;
    async fn get_sweep(&self, id: Uuid) -> Result<Option<SweepRecord>>;
    async fn list_sweeps(
        &self,
        tenant: &str,
        after: Option<Cursor>,
        limit: i64,
    ) -> Result<Page<SweepRecord>>;
    /// Every tenant's queued and running sweeps, oldest first: what the sweepers advance.
    async fn unfinished_sweeps(&self) -> Result<Vec<SweepRecord>>;
    /// Sets an unfinished sweep's status and best trial (and its end, for a terminal
    /// status); false when the sweep has ended already (a sweep ends once).
    async fn update_sweep(
        &self,
        id: Uuid,
        status: JobStatus,
        best: Option<&serde_json::Value>,
    ) -> Result<bool>;
    async fn request_sweep_cancel(&self, id: Uuid) -> Result<bool>;
    /// The sweep's trial jobs, by trial and rung.
    async fn sweep_trials(&self, id: Uuid) -> Result<Vec<TrialRecord>>;
    /// Deletes a sweep record and its trial rows (its jobs are deleted one by one first).
    async fn delete_sweep(&self, id: Uuid) -> Result<bool>;
    /// Unfinished sweeps that train on dataset `id` (oldest first, at most `limit`).
    async fn sweeps_using_dataset(&self, id: Uuid, limit: i64) -> Result<Vec<Uuid>>;
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{Failure, FailureKind, JobSpec};

    /// A spec as `main` stored it before specs were typed (TrainSpec's JSON with every
    /// default, plus the service fields) reads back and is written again unchanged.
    #[test]
    fn a_stored_job_spec_keeps_its_shape() {
        let stored = super::to_json(&serde_json::json!({
            "layers": [{"units": 4, "activation": "relu"}, {"units": 1}],
            "loss": "mse", "epochs": 3, "seed": 7,
        }));
        let train: crate::nn::TrainSpec = serde_json::from_value(stored).unwrap();
        let mut old = super::to_json(&train);
        old["dataset_id"] = serde_json::json!("6f9619ff-8b86-d011-b42d-00c04fc964ff");
        old["priority"] = serde_json::json!(-3);
        old["name"] = serde_json::json!("nightly");
        let spec = JobSpec::from_value(old.clone()).unwrap();
        assert_eq!(spec.train, train);
        assert_eq!(spec.priority, -3);
        assert_eq!(spec.name.as_deref(), Some("nightly"));
        assert_eq!(spec.to_value(), old);
        // An engine field the spec does not know is still refused, as the worker refused it.
        let mut bad = old;
        bad["learning_rat"] = serde_json::json!(0.1);
        assert!(JobSpec::from_value(bad).is_err());
    }

    #[test]
    fn a_job_error_reads_back_as_its_kind_in_either_form() {
        let new = serde_json::json!({"kind": "training_diverged", "detail": "NaN"});
        let old = serde_json::json!({"type": "/problems/training-diverged",
            "title": "Training diverged", "status": 422, "detail": "NaN"});
        let f = Failure::new(FailureKind::TrainingDiverged, "NaN");
        assert_eq!(Failure::from_value(&new), Ok(f.clone()));
        assert_eq!(Failure::from_value(&old), Ok(f.clone()));
        assert_eq!(f.to_value(), new);
        assert!(Failure::from_value(&serde_json::json!({"title": "x"})).is_err());
    }

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
