//! Wiring: opens the store, builds the training pool and the queue, and serves. `main.rs`
//! calls this; integration tests run the real binary.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::api::{self, AppState, Limits, ModelCache};
use crate::config::{DbArgs, ServeArgs};
use crate::jobs::{Jobs, Settings};
use crate::store::{PostgresStore, SqliteStore, Store};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// True when `url` names an embedded SQLite database, which only this process uses.
fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

/// Opens the database named by `db`, by the URL's scheme: `sqlite:` (creating the data
/// directory when it is the default file) or `postgres://` / `postgresql://`.
pub async fn open_store(db: &DbArgs) -> Result<Arc<dyn Store>, BoxError> {
    let url = db.url();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PostgresStore::open(&url).await?));
    }
    if is_sqlite(&url) {
        if db.database_url.is_none() {
            std::fs::create_dir_all(&db.data_dir).map_err(|e| {
                format!(
                    "cannot create data directory {}: {e}",
                    db.data_dir.display()
                )
            })?;
        }
        return Ok(Arc::new(SqliteStore::open(&url).await?));
    }
    Err(format!(
        "unsupported database URL \"{url}\": expected sqlite://, postgres:// or postgresql://"
    )
    .into())
}

/// `backprop migrate`.
pub async fn migrate(db: &DbArgs) -> Result<(), BoxError> {
    open_store(db).await?;
    tracing::info!(url = %db.url(), "migrations applied");
    Ok(())
}

/// `backprop serve`: runs until SIGINT or SIGTERM, then stops taking jobs, checkpoints the
/// running ones back into the queue and exits.
pub async fn serve(args: ServeArgs) -> Result<(), BoxError> {
    let store = open_store(&args.db).await?;
    // With SQLite this process is the only node, so every running job is an orphan of its
    // previous life. A shared PostgreSQL has other nodes whose jobs are running for real:
    // only expired leases are orphans (the dispatcher keeps looking for them).
    let only_expired = !is_sqlite(&args.db.url());
    let requeued = store.requeue_running(only_expired).await?;
    if requeued > 0 {
        tracing::info!(
            requeued,
            "jobs that were running when their node stopped are queued again (or failed, past the attempt cap)"
        );
    }
    let threads = if args.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        args.threads
    };
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("train-pool-{i}"))
            .build()?,
    );
    let jobs = Jobs::new(
        store.clone(),
        pool,
        Settings {
            max_concurrent: args.max_concurrent_jobs.max(1),
            checkpoint_every: Duration::from_secs_f64(args.checkpoint_secs.max(0.0)),
            lease: Duration::from_secs(30),
            worker: format!("{}-{}", hostname(), std::process::id()),
        },
    );
    let dispatcher = jobs.start();
    let state = AppState {
        store,
        jobs: jobs.clone(),
        models: Arc::new(ModelCache::new(args.model_cache)),
        limits: Arc::new(Limits {
            data: crate::data::Limits {
                max_rows: args.max_rows,
                max_columns: args.max_columns,
                max_cells: args.max_cells,
            },
            max_body_bytes: args.max_body_bytes,
            max_parameters: args.max_parameters,
            max_epochs: args.max_epochs,
            max_queued_jobs: args.max_queued_jobs,
            max_predict_rows: args.max_predict_rows,
        }),
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    tracing::info!(listen = %listener.local_addr()?, threads, "backprop serving");
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = tx.send(true);
    });
    let mut rx2 = rx.clone();
    let server = api::serve(listener, state, async move {
        let _ = rx2.wait_for(|v| *v).await;
    });
    let mut rx3 = rx;
    let shutdown_jobs = async {
        let _ = rx3.wait_for(|v| *v).await;
        tracing::info!("shutting down: checkpointing running jobs");
        jobs.shutdown(Duration::from_secs(8)).await;
        dispatcher.abort();
    };
    let (served, ()) = tokio::join!(server, shutdown_jobs);
    served?;
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "node".into())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
