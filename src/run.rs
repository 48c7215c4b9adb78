//! Wiring: opens the store, builds the training pool and the queue, and serves. `main.rs`
//! calls this; integration tests run the real binary.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::api::{self, AppState, Limits};
use crate::config::{DbArgs, QueueArgs, ServeArgs, WorkerArgs};
use crate::jobs::{Jobs, Settings};
use crate::service::{self, ModelCache, Service};
use crate::store::{PostgresStore, SqliteStore, Store, StoreError};

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

/// `backprop keys …`.
pub fn keys(cmd: crate::config::KeysCommand) -> Result<(), BoxError> {
    use crate::config::KeysCommand;
    match cmd {
        KeysCommand::Create { tenant, role, file } => {
            let role = crate::auth::Role::parse(&role)
                .ok_or("role must be admin, trainer or predictor")?;
            let (entry, secret) = crate::auth::create_key(&file.path(), &tenant, role)?;
            println!("{secret}");
            eprintln!(
                "key {} for tenant {} ({}); the secret above is shown only now",
                entry.id,
                entry.tenant,
                role.as_str()
            );
        }
        KeysCommand::List { file } => {
            let path = file.path();
            // A mistyped --data-dir must not look like "no keys": say where we looked.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
                && !dir.is_dir()
            {
                return Err(format!(
                    "no directory {} (set --data-dir or --keys-file to where the server keeps its keys)",
                    dir.display()
                )
                .into());
            }
            let keys = crate::auth::read_keys(&path)?.keys;
            println!("ID\tTENANT\tROLE\tCREATED\tSTATE");
            for k in &keys {
                let state = if k.revoked { "revoked" } else { "active" };
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    k.id,
                    k.tenant,
                    k.role.as_str(),
                    k.created_at,
                    state
                );
            }
            if keys.is_empty() {
                eprintln!(
                    "no keys in {} yet; `backprop keys create` makes one",
                    path.display()
                );
            }
        }
        KeysCommand::Revoke { id, file } => {
            crate::auth::revoke_key(&file.path(), &id)?;
            eprintln!("key {id} revoked; running servers stop accepting it within 2 s");
        }
    }
    Ok(())
}

/// `backprop backup`: a consistent snapshot of the SQLite database (and the keys file) while
/// a server may be using it. PostgreSQL has its own tools (docs/upgrading.md).
pub async fn backup(args: crate::config::BackupArgs) -> Result<(), BoxError> {
    let url = args.db.url();
    let Some(path) = url
        .strip_prefix("sqlite://")
        .or(url.strip_prefix("sqlite:"))
    else {
        return Err(format!(
            "backup handles SQLite deployments; back up PostgreSQL ({}) with pg_dump (docs/upgrading.md)",
            url.split('@').next_back().unwrap_or("")
        )
        .into());
    };
    let db = std::path::PathBuf::from(path.split('?').next().unwrap_or(path));
    let keys = args
        .keys_file
        .clone()
        .unwrap_or_else(|| args.db.data_dir.join("keys.json"));
    let s = crate::store::backup::backup(&db, &args.to, &[("keys.json", keys)]).await?;
    eprintln!("backed up {} to {}: {s}", db.display(), args.to.display());
    Ok(())
}

/// `backprop restore`: a backup into an empty data directory.
pub async fn restore(args: crate::config::RestoreArgs) -> Result<(), BoxError> {
    let known: Vec<i64> = crate::store::sqlite::MIGRATOR
        .iter()
        .map(|m| m.version)
        .collect();
    let s =
        crate::store::backup::restore(&args.from, &args.data_dir, "backprop.db", &known).await?;
    eprintln!(
        "restored {} into {}: {s}",
        args.from.display(),
        args.data_dir.display()
    );
    Ok(())
}

/// `backprop healthcheck`: one plain HTTP/1.1 GET of /healthz, so a container needs no curl.
pub async fn healthcheck(mut addr: std::net::SocketAddr) -> Result<(), BoxError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let check = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(
            format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(3), check)
        .await
        .map_err(|_| "health check timed out")??;
    if buf.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!(
            "unhealthy: {}",
            String::from_utf8_lossy(&buf[..buf.len().min(80)])
        )
        .into())
    }
}

/// Opens the store of a long-running node. A PostgreSQL server that does not answer yet
/// does not stop the node: it starts (/healthz 200, everything else 503) and the returned
/// future finishes the migration once the database is back. Any other error is fatal.
async fn open_node_store(db: &DbArgs) -> Result<(Arc<dyn Store>, Option<PostgresStore>), BoxError> {
    let url = db.url();
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Ok((open_store(db).await?, None));
    }
    let pg = PostgresStore::connect(&url)?;
    match pg.migrate().await {
        Ok(()) => Ok((Arc::new(pg), None)),
        Err(StoreError::Unavailable(e)) => {
            tracing::warn!(error = %e, "database unavailable; starting anyway and retrying");
            Ok((Arc::new(pg.clone()), Some(pg)))
        }
        Err(e) => Err(e.into()),
    }
}

/// Waits for a database that was away at start and migrates it (every 2 s until it works).
async fn migrate_when_back(pg: PostgresStore) {
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        match pg.migrate().await {
            Ok(()) => {
                tracing::info!("database available; migrations applied");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "database still unavailable"),
        }
    }
}

/// Builds the queue. With `start`, it also requeues orphaned jobs and starts the dispatcher
/// (once the database answers); without, the handle only relays cancels and live events
/// (`serve --no-workers`).
fn start_queue(
    store: Arc<dyn Store>,
    pending: Option<PostgresStore>,
    q: &QueueArgs,
    sqlite: bool,
    start: bool,
) -> Result<(Jobs, Option<tokio::task::JoinHandle<()>>, usize), BoxError> {
    if q.lease_secs.is_nan() || q.lease_secs < 0.5 {
        return Err(format!("--lease-secs must be at least 0.5, got {}", q.lease_secs).into());
    }
    let threads = match (start, q.threads) {
        (false, _) => 1,
        (true, 0) => std::thread::available_parallelism().map_or(1, |n| n.get()),
        (true, n) => n,
    };
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("train-pool-{i}"))
            .start_handler(|_| lower_thread_priority())
            .build()?,
    );
    let jobs = Jobs::new(
        store.clone(),
        pool,
        Settings {
            max_concurrent: q.max_concurrent_jobs.max(1),
            checkpoint_every: Duration::from_secs_f64(q.checkpoint_secs.max(0.0)),
            lease: Duration::from_secs_f64(q.lease_secs),
            worker: format!("{}-{}", hostname(), std::process::id()),
            max_running_per_tenant: q.quota_running_jobs,
            max_job_memory: q.job_memory_limit(),
        },
    );
    if !start {
        if pending.is_none() && sqlite {
            tracing::warn!(
                "--no-workers on SQLite: jobs run only if a `backprop worker` uses the same file"
            );
        }
        return Ok((jobs, None, 0));
    }
    let dispatcher = {
        let jobs = jobs.clone();
        tokio::spawn(async move {
            if let Some(pg) = pending {
                migrate_when_back(pg).await;
            }
            // With SQLite this process is the only node, so every running job is an orphan
            // of its previous life. A shared PostgreSQL has other nodes whose jobs are
            // running for real: only expired leases are orphans (the dispatcher keeps
            // looking for them).
            match store.requeue_running(!sqlite).await {
                Ok(0) => {}
                Ok(requeued) => tracing::info!(
                    requeued,
                    "jobs that were running when their node stopped are queued again (or failed, past the attempt cap)"
                ),
                Err(e) => tracing::warn!(error = %e, "requeueing orphaned jobs failed"),
            }
            let dispatcher = jobs.start();
            let _ = dispatcher.await;
        })
    };
    Ok((jobs, Some(dispatcher), threads))
}

/// SIGINT or SIGTERM, as a watch channel any number of tasks can wait on.
fn shutdown_channel() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = tx.send(true);
    });
    rx
}

async fn signalled(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// Stops claiming, checkpoints the running jobs back into the queue (they resume on any
/// node) and stops the dispatcher; within 8 s, so the process exits within 10.
async fn stop_queue(jobs: &Jobs, dispatcher: Option<tokio::task::JoinHandle<()>>) {
    if dispatcher.is_some() {
        tracing::info!("shutting down: checkpointing running jobs");
    }
    jobs.shutdown(Duration::from_secs(8)).await;
    if let Some(d) = dispatcher {
        d.abort();
    }
}

/// `backprop serve`: runs until SIGINT or SIGTERM, then stops taking jobs, checkpoints the
/// running ones back into the queue and exits. With `--no-workers` it serves the API only.
pub async fn serve(args: ServeArgs) -> Result<(), BoxError> {
    let keys_file = args
        .keys_file
        .clone()
        .unwrap_or_else(|| args.db.data_dir.join("keys.json"));
    let keys = Arc::new(crate::auth::Keyring::new(
        args.api_keys.as_deref(),
        Some(keys_file),
    )?);
    if keys.is_open() && !args.listen.ip().is_loopback() && !args.insecure_no_auth {
        return Err(format!(
            "refusing to serve {} without API keys: set BACKPROP_API_KEYS or create keys with \
             `backprop keys create`, or pass --insecure-no-auth",
            args.listen
        )
        .into());
    }
    if keys.is_open() {
        tracing::warn!("no API keys configured: the API is open (local use)");
    } else {
        let (from_env, from_file) = keys.counts();
        tracing::info!(
            from_env,
            from_file,
            "{} API keys loaded ({from_env} from BACKPROP_API_KEYS, {from_file} from the keys file)",
            from_env + from_file
        );
    }
    {
        let keys = keys.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                if let Err(e) = keys.reload() {
                    tracing::warn!(error = %e, "keys file unreadable; keeping the keys loaded before");
                }
            }
        });
    }
    let (store, pending) = open_node_store(&args.db).await?;
    let sqlite = is_sqlite(&args.db.url());
    let (jobs, dispatcher, threads) = match (args.no_workers, pending) {
        (true, Some(pg)) => {
            tokio::spawn(migrate_when_back(pg));
            start_queue(store.clone(), None, &args.queue, sqlite, false)?
        }
        (no_workers, pending) => {
            start_queue(store.clone(), pending, &args.queue, sqlite, !no_workers)?
        }
    };
    let state = AppState {
        service: Service {
            store,
            jobs: jobs.clone(),
            models: Arc::new(ModelCache::new(args.model_cache)),
            deployments: Arc::new(service::DeploymentCache::default()),
            curves: Arc::default(),
            limits: Arc::new(service::Limits {
                data: crate::data::Limits {
                    max_rows: args.max_rows,
                    max_columns: args.max_columns,
                    max_cells: args.max_cells,
                },
                max_parameters: args.max_parameters,
                max_epochs: args.max_epochs,
                max_queued_jobs: args.max_queued_jobs,
                max_predict_rows: args.max_predict_rows,
                max_layers: args.max_layers,
                quota_queued_jobs: args.quota_queued_jobs,
                quota_stored_bytes: args.quota_stored_bytes,
                max_job_memory: args.queue.job_memory_limit(),
            }),
        },
        limits: Arc::new(Limits {
            max_body_bytes: args.max_body_bytes,
            max_sse_clients: args.max_sse_clients,
            request_timeout: Duration::from_secs_f64(args.request_timeout_secs.max(0.001)),
            header_read_timeout: Duration::from_secs_f64(args.header_read_timeout_secs.max(0.001)),
            cors_origins: args.cors_origins.clone(),
        }),
        metrics: install_metrics(),
        keys,
        metrics_token: args.metrics_token.clone(),
        fair: Arc::new(crate::api::fair::Fairness::new(
            args.rate_limit,
            args.rate_limit_burst,
            args.max_sse_clients_per_tenant,
            args.max_sse_clients,
        )?),
        event_streams: Arc::new(tokio::sync::Semaphore::new(
            args.max_sse_clients
                .min(tokio::sync::Semaphore::MAX_PERMITS),
        )),
    };
    // Sweeps advance on every API node (their trials are ordinary jobs in the queue).
    tokio::spawn(state.service.clone().drive_sweeps());
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let role = if args.no_workers {
        "api"
    } else {
        "api+workers"
    };
    tracing::info!(listen = %listener.local_addr()?, role, threads, "backprop serving");
    let rx = shutdown_channel();
    let server = api::serve(listener, state, signalled(rx.clone()));
    let shutdown_jobs = async {
        signalled(rx).await;
        stop_queue(&jobs, dispatcher).await;
    };
    let (served, ()) = tokio::join!(server, shutdown_jobs);
    served?;
    Ok(())
}

/// `backprop worker`: claims and trains jobs from the shared database, with no API; a small
/// listener answers /healthz, /readyz and /metrics. SIGTERM releases its running jobs back to
/// the queue (from their last checkpoint) for other nodes to take at once.
pub async fn worker(args: WorkerArgs) -> Result<(), BoxError> {
    let (store, pending) = open_node_store(&args.db).await?;
    let sqlite = is_sqlite(&args.db.url());
    let (jobs, dispatcher, threads) =
        start_queue(store.clone(), pending, &args.queue, sqlite, true)?;
    let probe = crate::probe::Probe {
        store,
        jobs: jobs.clone(),
        metrics: install_metrics(),
        metrics_token: args.metrics_token.clone(),
    };
    let listener = TcpListener::bind(args.health_listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.health_listen))?;
    tracing::info!(health = %listener.local_addr()?, role = "workers", threads, "backprop working");
    let rx = shutdown_channel();
    let health = axum::serve(listener, crate::probe::app(probe))
        .with_graceful_shutdown(signalled(rx.clone()))
        .into_future();
    let shutdown_jobs = async {
        signalled(rx).await;
        stop_queue(&jobs, dispatcher).await;
    };
    let (served, ()) = tokio::join!(health, shutdown_jobs);
    served?;
    Ok(())
}

/// Installs the process-wide Prometheus recorder (once; later calls reuse nothing).
fn install_metrics() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    const LATENCY: &[f64] = &[
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    const LONG: &[f64] = &[
        0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0,
    ];
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("backprop_http_request_duration_seconds".into()),
            LATENCY,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("backprop_predict_duration_seconds".into()),
                LATENCY,
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("backprop_epoch_duration_seconds".into()),
                LONG,
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full("backprop_queue_wait_seconds".into()), LONG)
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("backprop_predict_rows".into()),
                &[1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0],
            )
        });
    match builder.and_then(|b| b.install_recorder()) {
        Ok(h) => {
            describe_metrics();
            // Histogram samples pile up in the recorder until they are drained into their
            // buckets, which `install_recorder` leaves to us: without this a node nobody
            // scrapes grows by every request's latency (bench/soak.py found ~1 MB/min).
            let upkeep = h.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    upkeep.run_upkeep();
                }
            });
            Some(h)
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics disabled");
            None
        }
    }
}

/// The `# HELP` line of every metric (the exporter writes one for each described metric).
fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "backprop_http_requests_total",
        "HTTP requests answered, by method, route template and status"
    );
    describe_histogram!(
        "backprop_http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request, by method and route template"
    );
    describe_gauge!(
        "backprop_jobs",
        "Jobs in the database by status (all tenants, all nodes)"
    );
    describe_gauge!(
        "backprop_jobs_running_here",
        "Jobs this node is training now"
    );
    describe_gauge!(
        "backprop_db_connections",
        "Database pool connections by state (open, idle)"
    );
    describe_histogram!(
        "backprop_queue_wait_seconds",
        Unit::Seconds,
        "Time a job waited in the queue before a worker claimed it"
    );
    describe_counter!(
        "backprop_jobs_finished_total",
        "Training attempts that ended, by outcome"
    );
    describe_histogram!(
        "backprop_epoch_duration_seconds",
        Unit::Seconds,
        "Time one training epoch took"
    );
    describe_counter!(
        "backprop_training_samples_total",
        "Training rows processed (rows x epochs)"
    );
    describe_counter!("backprop_epochs_total", "Training epochs completed");
    describe_counter!(
        "backprop_event_streams_refused_total",
        "Event streams refused because --max-sse-clients were open"
    );
    describe_counter!(
        "backprop_model_cache_total",
        "Model lookups for predictions, by result (hit, miss)"
    );
    describe_histogram!(
        "backprop_predict_duration_seconds",
        Unit::Seconds,
        "Time of the forward pass of a predict request"
    );
    describe_histogram!("backprop_predict_rows", "Rows in one predict request");
}

/// Training threads run at a lower priority (nice 10) than the HTTP threads, so a predict
/// request gets a core at once even when training keeps every core busy.
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on the calling thread's own id has no memory effects.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
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
