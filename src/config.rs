//! Command line and environment: one clap struct, every setting a flag and a `BACKPROP_…`
//! variable with a default that works on a laptop.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Backprop: train and serve small neural networks over HTTP.
#[derive(Parser, Debug)]
#[command(name = "backprop", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Log lines as human-readable text or as JSON objects.
    #[arg(long, env = "BACKPROP_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"], global = true)]
    pub log_format: String,
    /// Server settings when no subcommand is given (same as `serve`).
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP API and the training workers (the default; `--no-workers` for the API
    /// alone).
    Serve(Box<ServeArgs>),
    /// Run training workers only: no API, just /healthz, /readyz and /metrics on
    /// `--health-listen`. Needs a database the API nodes share (PostgreSQL).
    Worker(WorkerArgs),
    /// Apply database migrations and exit.
    Migrate(DbArgs),
    /// Manage API keys in the keys file (only hashes are stored).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Exit 0 when the server at `--listen` answers /healthz (for container health checks).
    Healthcheck(HealthcheckArgs),
    /// Write a consistent snapshot of a SQLite deployment (database and keys file) to one
    /// file, while its server keeps serving and training.
    Backup(BackupArgs),
    /// Put a backup into an empty data directory (then `serve` on it).
    Restore(RestoreArgs),
}

#[derive(Args, Debug, Clone)]
pub struct BackupArgs {
    /// The backup file to write (must not exist).
    #[arg(long)]
    pub to: PathBuf,
    #[command(flatten)]
    pub db: DbArgs,
    /// The keys file to carry in the backup (default: `keys.json` in the data directory).
    #[arg(long, env = "BACKPROP_KEYS_FILE")]
    pub keys_file: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct RestoreArgs {
    /// The backup file `backprop backup` wrote.
    #[arg(long)]
    pub from: PathBuf,
    /// The data directory to restore into: missing or empty.
    #[arg(long, env = "BACKPROP_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a key; prints its secret once.
    Create {
        /// The tenant the key acts for: everything it creates belongs to this tenant, and it
        /// sees nothing of other tenants.
        #[arg(long)]
        tenant: String,
        /// What the key may do: admin and trainer everything in the tenant, predictor only
        /// read models and predict.
        #[arg(long, value_parser = ["admin", "trainer", "predictor"])]
        role: String,
        #[command(flatten)]
        file: KeysFileArgs,
    },
    /// List keys (never their secrets).
    List {
        #[command(flatten)]
        file: KeysFileArgs,
    },
    /// Revoke a key by id.
    Revoke {
        /// The key's id, as `backprop keys list` shows it (not its secret).
        id: String,
        #[command(flatten)]
        file: KeysFileArgs,
    },
}

#[derive(Args, Debug, Clone)]
pub struct KeysFileArgs {
    /// Directory holding the default keys file (`keys.json`).
    #[arg(long, env = "BACKPROP_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// The keys file (default: `keys.json` in the data directory).
    #[arg(long, env = "BACKPROP_KEYS_FILE")]
    pub keys_file: Option<PathBuf>,
}

impl KeysFileArgs {
    pub fn path(&self) -> PathBuf {
        self.keys_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keys.json"))
    }
}

#[derive(Args, Debug, Clone)]
pub struct HealthcheckArgs {
    /// The server's listen address (0.0.0.0 is checked on 127.0.0.1).
    #[arg(long, env = "BACKPROP_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}

#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// Directory for the embedded SQLite database (`backprop.db`).
    #[arg(long, env = "BACKPROP_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Database URL (`sqlite://path`, or `postgres://…` for several nodes sharing one
    /// database); overrides the data directory's SQLite file.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "BACKPROP_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub db: DbArgs,
    /// API keys as `tenant:role:secret,…` (role: admin, trainer or predictor).
    #[arg(long, env = "BACKPROP_API_KEYS", hide_env_values = true)]
    pub api_keys: Option<String>,
    /// The keys file managed by `backprop keys` (default: `keys.json` in the data directory).
    #[arg(long, env = "BACKPROP_KEYS_FILE")]
    pub keys_file: Option<PathBuf>,
    /// Serve without API keys on a non-loopback address (otherwise refused).
    #[arg(long, env = "BACKPROP_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// A bearer token `/metrics` requires (open without).
    #[arg(long, env = "BACKPROP_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Serve the API only: never claim jobs (`backprop worker` nodes train them).
    #[arg(long, env = "BACKPROP_NO_WORKERS")]
    pub no_workers: bool,
    #[command(flatten)]
    pub queue: QueueArgs,
    /// Queued jobs beyond which new submissions get 429.
    #[arg(long, env = "BACKPROP_MAX_QUEUED_JOBS", default_value_t = crate::service::Limits::DEFAULT.max_queued_jobs)]
    pub max_queued_jobs: i64,
    /// Largest request body, bytes (dataset uploads included).
    #[arg(long, env = "BACKPROP_MAX_BODY_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Most rows in a dataset.
    #[arg(long, env = "BACKPROP_MAX_ROWS", default_value_t = crate::data::Limits::DEFAULT.max_rows)]
    pub max_rows: usize,
    /// Most columns in a dataset.
    #[arg(long, env = "BACKPROP_MAX_COLUMNS", default_value_t = crate::data::Limits::DEFAULT.max_columns)]
    pub max_columns: usize,
    /// Most cells (rows × columns) in a dataset.
    #[arg(long, env = "BACKPROP_MAX_CELLS", default_value_t = crate::data::Limits::DEFAULT.max_cells)]
    pub max_cells: usize,
    /// Most trainable parameters in a model.
    #[arg(long, env = "BACKPROP_MAX_PARAMETERS", default_value_t = crate::service::Limits::DEFAULT.max_parameters)]
    pub max_parameters: usize,
    /// Most epochs in a job.
    #[arg(long, env = "BACKPROP_MAX_EPOCHS", default_value_t = crate::service::Limits::DEFAULT.max_epochs)]
    pub max_epochs: u32,
    /// Most rows in one predict request.
    #[arg(long, env = "BACKPROP_MAX_PREDICT_ROWS", default_value_t = crate::service::Limits::DEFAULT.max_predict_rows)]
    pub max_predict_rows: usize,
    /// Most layers in a job spec or an imported model.
    #[arg(long, env = "BACKPROP_MAX_LAYERS", default_value_t = crate::service::Limits::DEFAULT.max_layers)]
    pub max_layers: usize,
    /// Event streams (`/v1/jobs/{id}/events`) open at once; beyond it new ones get 503.
    #[arg(long, env = "BACKPROP_MAX_SSE_CLIENTS", default_value_t = 512)]
    pub max_sse_clients: usize,
    /// Seconds a client may take to send a request's headers before the connection is closed
    /// (slow clients must not hold connections open).
    #[arg(
        long,
        env = "BACKPROP_HEADER_READ_TIMEOUT_SECS",
        default_value_t = 10.0
    )]
    pub header_read_timeout_secs: f64,
    /// Queued jobs one tenant may have (0 = no limit); beyond it submissions get 429.
    #[arg(long, env = "BACKPROP_QUOTA_QUEUED_JOBS", default_value_t = crate::service::Limits::DEFAULT.quota_queued_jobs)]
    pub quota_queued_jobs: i64,
    /// Bytes one tenant may store (0 = no limit): datasets, models, batch-prediction
    /// results, checkpoints, finished jobs' saved final states and histories; beyond it new
    /// datasets, models and batch predictions get 429.
    #[arg(long, env = "BACKPROP_QUOTA_STORED_BYTES", default_value_t = crate::service::Limits::DEFAULT.quota_stored_bytes)]
    pub quota_stored_bytes: i64,
    /// Requests per second one API key may make on average (a token bucket; 0 = no limit);
    /// beyond it `/v1` requests get 429 with Retry-After.
    #[arg(long, env = "BACKPROP_RATE_LIMIT", default_value_t = 0.0)]
    pub rate_limit: f64,
    /// Requests one API key may make at once before `--rate-limit` applies (the bucket's size).
    #[arg(long, env = "BACKPROP_RATE_LIMIT_BURST", default_value_t = 20)]
    pub rate_limit_burst: u32,
    /// Event streams one tenant may hold open (0 = no limit but `--max-sse-clients`); beyond
    /// it 429.
    #[arg(long, env = "BACKPROP_MAX_SSE_CLIENTS_PER_TENANT", default_value_t = 0)]
    pub max_sse_clients_per_tenant: usize,
    /// Seconds a request may take before it is answered 503 (the event stream is exempt).
    #[arg(long, env = "BACKPROP_REQUEST_TIMEOUT_SECS", default_value_t = 60.0)]
    pub request_timeout_secs: f64,
    /// Origins allowed to call the API from a browser (comma-separated); CORS is off without.
    #[arg(long, env = "BACKPROP_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Models kept loaded for predictions.
    #[arg(long, env = "BACKPROP_MODEL_CACHE", default_value_t = 256)]
    pub model_cache: usize,
}

/// How this node's workers take and run jobs (`serve` without `--no-workers`, and `worker`).
#[derive(Args, Debug, Clone)]
pub struct QueueArgs {
    /// Threads of the training pool (0 = one per core).
    #[arg(long, env = "BACKPROP_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// Jobs that train at the same time on this node; the rest wait in the queue.
    #[arg(long, env = "BACKPROP_MAX_CONCURRENT_JOBS", default_value_t = 2)]
    pub max_concurrent_jobs: usize,
    /// Seconds between checkpoints of a running job (at epoch ends).
    #[arg(long, env = "BACKPROP_CHECKPOINT_SECS", default_value_t = 2.0)]
    pub checkpoint_secs: f64,
    /// Seconds a claimed job's lease lasts without renewal: a node that dies loses its jobs
    /// to other nodes after this long (expired leases are reaped every lease/2).
    #[arg(long, env = "BACKPROP_LEASE_SECS", default_value_t = 30.0)]
    pub lease_secs: f64,
    /// Jobs one tenant may train at once (0 = no limit); the rest wait in the queue.
    #[arg(long, env = "BACKPROP_QUOTA_RUNNING_JOBS", default_value_t = 0)]
    pub quota_running_jobs: i64,
    /// Memory one training job may hold (`8G`, `512M`, bytes; 0 = no limit): a job whose
    /// estimate is larger is refused at submission and again when a worker claims it. `auto`:
    /// three quarters of the memory the process may use (its cgroup limit, else the
    /// machine's), shared by `--max-concurrent-jobs`.
    #[arg(long, env = "BACKPROP_MAX_JOB_MEMORY", default_value = "auto", value_parser = parse_job_memory)]
    pub max_job_memory: JobMemoryLimit,
}

/// `--max-job-memory`: a number of bytes, or `auto`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum JobMemoryLimit {
    Auto,
    Bytes(u64),
}

impl QueueArgs {
    /// The bytes one job may hold on this node (0 = no limit).
    pub fn job_memory_limit(&self) -> u64 {
        match self.max_job_memory {
            JobMemoryLimit::Auto => crate::memory::default_job_limit(self.max_concurrent_jobs),
            JobMemoryLimit::Bytes(b) => b,
        }
    }
}

fn parse_job_memory(s: &str) -> Result<JobMemoryLimit, String> {
    if s.eq_ignore_ascii_case("auto") {
        Ok(JobMemoryLimit::Auto)
    } else {
        crate::memory::parse_bytes(s).map(JobMemoryLimit::Bytes)
    }
}

#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    /// Address of the health endpoint (/healthz, /readyz, /metrics); there is no API.
    #[arg(long, env = "BACKPROP_HEALTH_LISTEN", default_value = "127.0.0.1:8081")]
    pub health_listen: SocketAddr,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub queue: QueueArgs,
    /// A bearer token `/metrics` requires (open without).
    #[arg(long, env = "BACKPROP_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
}

impl DbArgs {
    /// The database URL in force: `DATABASE_URL` or the data directory's SQLite file.
    pub fn url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| crate::store::SqliteStore::url_in(&self.data_dir))
    }
}
