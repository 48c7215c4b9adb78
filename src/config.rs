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
    /// Server settings when no subcommand is given (same as `serve`).
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP API and the training workers (the default).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate(DbArgs),
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
    /// Threads of the training pool (0 = one per core).
    #[arg(long, env = "BACKPROP_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// Jobs that train at the same time; the rest wait in the queue.
    #[arg(long, env = "BACKPROP_MAX_CONCURRENT_JOBS", default_value_t = 2)]
    pub max_concurrent_jobs: usize,
    /// Queued jobs beyond which new submissions get 429.
    #[arg(long, env = "BACKPROP_MAX_QUEUED_JOBS", default_value_t = 1000)]
    pub max_queued_jobs: i64,
    /// Largest request body, bytes (dataset uploads included).
    #[arg(long, env = "BACKPROP_MAX_BODY_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Most rows in a dataset.
    #[arg(long, env = "BACKPROP_MAX_ROWS", default_value_t = 1_000_000)]
    pub max_rows: usize,
    /// Most columns in a dataset.
    #[arg(long, env = "BACKPROP_MAX_COLUMNS", default_value_t = 10_000)]
    pub max_columns: usize,
    /// Most cells (rows × columns) in a dataset.
    #[arg(long, env = "BACKPROP_MAX_CELLS", default_value_t = 100_000_000)]
    pub max_cells: usize,
    /// Most trainable parameters in a model.
    #[arg(long, env = "BACKPROP_MAX_PARAMETERS", default_value_t = 50_000_000)]
    pub max_parameters: usize,
    /// Most epochs in a job.
    #[arg(long, env = "BACKPROP_MAX_EPOCHS", default_value_t = 100_000)]
    pub max_epochs: u32,
    /// Most rows in one predict request.
    #[arg(long, env = "BACKPROP_MAX_PREDICT_ROWS", default_value_t = 100_000)]
    pub max_predict_rows: usize,
    /// Seconds between checkpoints of a running job (at epoch ends).
    #[arg(long, env = "BACKPROP_CHECKPOINT_SECS", default_value_t = 2.0)]
    pub checkpoint_secs: f64,
    /// Models kept loaded for predictions.
    #[arg(long, env = "BACKPROP_MODEL_CACHE", default_value_t = 256)]
    pub model_cache: usize,
}

impl DbArgs {
    /// The database URL in force: `DATABASE_URL` or the data directory's SQLite file.
    pub fn url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| crate::store::SqliteStore::url_in(&self.data_dir))
    }
}
