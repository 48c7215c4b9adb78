//! The embedded SQLite store, the zero-setup default. WAL with `synchronous = NORMAL`: a
//! committed transaction survives the process being killed at any instant (the WAL is
//! written before COMMIT returns); a power cut or kernel crash may lose the last commits
//! before a checkpoint, never the database's consistency (docs/reliability.md).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};
use uuid::Uuid;

use super::rows::{self, Columns, job};
use super::sql::{self, Arg, Backend, Dialect, for_sqlite};
use super::*;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

/// A dataset's record, in `tx`. Its own `data` stays empty; the bytes are in `dataset_parts`.
async fn insert_record(conn: &mut sqlx::SqliteConnection, d: &DatasetRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO datasets (id, name, created_at, rows, inputs, outputs, meta, size_bytes, data, tenant)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, x'', ?)",
    )
    .bind(d.id.to_string())
    .bind(&d.name)
    .bind(d.created_at)
    .bind(d.rows)
    .bind(d.inputs)
    .bind(d.outputs)
    .bind(d.meta.to_string())
    .bind(d.size_bytes)
    .bind(&d.tenant)
    .execute(conn)
    .await?;
    Ok(())
}

/// A dataset's record, then its parts in order, in one transaction on `conn`.
async fn insert_dataset_parts(
    conn: &mut sqlx::SqliteConnection,
    d: &DatasetRecord,
    parts: Parts,
) -> Result<()> {
    let mut tx = sqlx::Connection::begin(conn).await?;
    // The record first: a duplicate id fails before any part is written.
    insert_record(&mut tx, d).await?;
    let mut parts = futures::StreamExt::enumerate(parts);
    while let Some((i, part)) = futures::StreamExt::next(&mut parts).await {
        sqlx::query("INSERT INTO dataset_parts (dataset_id, part, data) VALUES (?, ?, ?)")
            .bind(d.id.to_string())
            .bind(i as i64)
            .bind(part)
            .execute(&mut *tx)
            .await?;
    }
    crate::crash::point("dataset_insert");
    tx.commit().await?;
    Ok(())
}

/// The WAL size past which a commit folds the log into the database (SQLite's automatic
/// checkpoint): SQLite's default of 1000 pages is 4 MiB in its default 4 KiB pages.
const AUTOCHECKPOINT_BYTES: i64 = 4 << 20;

/// Sets the connection's automatic checkpoint to [`AUTOCHECKPOINT_BYTES`] in the database's
/// own pages (see [`PAGE_SIZE`]; a database created by an earlier release keeps 4 KiB ones).
async fn set_autocheckpoint(conn: &mut sqlx::SqliteConnection) -> sqlx::Result<()> {
    let page: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(&mut *conn)
        .await?;
    let pages = (AUTOCHECKPOINT_BYTES / page.max(512)).max(16);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "PRAGMA wal_autocheckpoint = {pages}"
    )))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The page size of a database this release creates. Most bytes stored are datasets' parts
/// and models' states, megabytes each: in 16 KiB pages a large upload's write takes about 60%
/// of the time it takes in SQLite's default 4 KiB (fewer frames, checksums and write calls),
/// while a small commit (a job's epoch) writes a few 16 KiB pages to the log. A database
/// created with another page size keeps its own.
const PAGE_SIZE: u32 = 16 << 10;

/// [`Store::write_dataset`] on one connection. The record is written last, at the commit:
/// written first and completed at the end, its page went to the log early (when the cache
/// spilled) and again at the commit, and SQLite then re-read and re-summed every frame logged
/// after the first copy (a fifth of a large upload's write). The parts' reference to it is
/// checked at the commit (`defer_foreign_keys`), and the id is checked once the write lock
/// is held (`BEGIN IMMEDIATE`): no other writer can take it before the commit.
async fn write_dataset(
    conn: &mut sqlx::SqliteConnection,
    id: Uuid,
    tenant: &str,
    mut writes: DatasetWrites,
) -> Result<bool> {
    let mut tx = sqlx::Connection::begin_with(conn, "BEGIN IMMEDIATE").await?;
    sqlx::query("PRAGMA defer_foreign_keys = ON")
        .execute(&mut *tx)
        .await?;
    let taken: Option<i64> = sqlx::query_scalar("SELECT 1 FROM datasets WHERE id = ?")
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
    if taken.is_some() {
        return Err(StoreError::Duplicate(format!("dataset {id} exists")));
    }
    while let Some(write) = futures::StreamExt::next(&mut writes).await {
        match write {
            DatasetWrite::Part(i, part) => {
                sqlx::query("INSERT INTO dataset_parts (dataset_id, part, data) VALUES (?, ?, ?)")
                    .bind(id.to_string())
                    .bind(i)
                    .bind(part)
                    .execute(&mut *tx)
                    .await?;
            }
            DatasetWrite::Commit(d) => {
                check_commit(&d, id, tenant)?;
                insert_record(&mut tx, &d).await?;
                crate::crash::point("dataset_insert");
                tx.commit().await?;
                return Ok(true);
            }
        }
    }
    Ok(false)
}

impl SqliteStore {
    /// Runs `write` (a large dataset's transaction) on a connection without SQLite's automatic
    /// checkpoint, which would otherwise run inside its commit: the commit that takes the log
    /// past its threshold would copy the whole log into the database and sync both before the
    /// upload could answer. Every other commit keeps the automatic one, so the log stays
    /// small; after a write that succeeded, a checkpoint follows in the background.
    async fn without_autocheckpoint<T, F>(&self, write: F) -> Result<T>
    where
        F: for<'c> FnOnce(
            &'c mut sqlx::SqliteConnection,
        ) -> futures::future::BoxFuture<'c, Result<T>>,
    {
        let mut conn = self.pool.acquire().await?;
        sqlx::query("PRAGMA wal_autocheckpoint = 0")
            .execute(&mut *conn)
            .await?;
        let written = write(&mut conn).await;
        // Back to the automatic checkpoint every other commit has.
        let restored = set_autocheckpoint(&mut conn).await;
        if restored.is_err() {
            // Not reused without its checkpoints.
            let _ = conn.close().await;
        }
        if written.is_ok() {
            let pool = self.pool.clone();
            tokio::spawn(async move {
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&pool)
                    .await
                {
                    tracing::warn!(error = %e, "WAL checkpoint after a dataset failed; the next commits retry it");
                }
            });
        }
        written
    }

    /// Opens (creating if needed) the database at `url` (`sqlite://path`) and migrates it.
    pub async fn open(url: &str) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad database url: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // After a checkpoint the WAL file shrinks back to this: one large upload must
            // not leave a WAL of its size on disk for good.
            .pragma("journal_size_limit", (64 * 1024 * 1024).to_string())
            .page_size(PAGE_SIZE);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            // A connection must come back outside any transaction. After SQLITE_FULL (a full
            // disk) SQLite may roll a transaction back by itself; sqlx's ROLLBACK then fails
            // and it still counts the connection as in a transaction, so its next transaction
            // is a SAVEPOINT whose rollback leaves a transaction open, holding the write lock
            // for good ("database is locked" on every other connection). Such a connection is
            // closed (which rolls back) instead of reused; the ping runs after any rollback
            // the dropped transaction queued. tests/outage.rs fills a disk to prove it.
            .after_release(|conn, _| {
                Box::pin(async move {
                    use sqlx::Connection;
                    conn.ping().await?;
                    Ok(!conn.is_in_transaction())
                })
            })
            .after_connect(|conn, _| Box::pin(async move { set_autocheckpoint(conn).await }))
            .connect_with(opts)
            .await?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migrations: {e}")))?;
        Ok(SqliteStore { pool })
    }

    /// The URL of the database file in `dir`.
    pub fn url_in(dir: &Path) -> String {
        format!("sqlite://{}", dir.join("backprop.db").display())
    }
}

impl Columns for SqliteRow {
    rows::read_directly!();
    /// UUIDs are TEXT.
    fn uuid(&self, c: &str) -> Result<Uuid> {
        let s: String = self.try_get(c)?;
        Uuid::parse_str(&s).map_err(|e| StoreError::Corrupt(format!("{c}: {e}")))
    }
    fn opt_uuid(&self, c: &str) -> Result<Option<Uuid>> {
        let s: Option<String> = self.try_get(c)?;
        s.map(|s| Uuid::parse_str(&s).map_err(|e| StoreError::Corrupt(format!("{c}: {e}"))))
            .transpose()
    }
    /// JSON is TEXT.
    fn json(&self, c: &str) -> Result<serde_json::Value> {
        let s: String = self.try_get(c)?;
        Ok(serde_json::from_str(&s)?)
    }
    fn opt_json(&self, c: &str) -> Result<Option<serde_json::Value>> {
        let s: Option<String> = self.try_get(c)?;
        s.map(|s| serde_json::from_str(&s).map_err(StoreError::from))
            .transpose()
    }
    /// Flags are INTEGER 0/1.
    fn flag(&self, c: &str) -> Result<bool> {
        Ok(self.try_get::<i64, _>(c)? != 0)
    }
}

type Query<'a> = sqlx::query::Query<'a, sqlx::Sqlite, <sqlx::Sqlite as sqlx::Database>::Arguments>;

/// A shared statement (see `sql`) with its arguments bound as this database holds them.
fn statement<'a>(sql: &str, args: Vec<Arg<'a>>) -> Query<'a> {
    let mut q = sqlx::query(sqlx::AssertSqlSafe(for_sqlite(sql)));
    for a in args {
        q = match a {
            Arg::Text(s) => q.bind(s),
            Arg::OptText(s) => q.bind(s),
            Arg::Int(i) => q.bind(i),
            Arg::OptInt(i) => q.bind(i),
            Arg::Int32(i) => q.bind(i),
            Arg::Json(v) => q.bind(v.to_string()),
            Arg::OptJson(v) => q.bind(v.map(|v| v.to_string())),
            Arg::JsonRef(v) => q.bind(v.to_string()),
            Arg::Flag(f) => q.bind(i64::from(f)),
            Arg::Uuid(u) => q.bind(u.to_string()),
            Arg::OptUuid(u) => q.bind(u.map(|u| u.to_string())),
            Arg::Bytes(b) => q.bind(b),
        };
    }
    q
}

sql::backend!(SqliteStore, sqlx::Sqlite, SqliteRow, SqliteTx);

#[async_trait]
impl Dialect for SqliteStore {
    fn pool_use(&self) -> (u32, u32) {
        (self.pool.size(), self.pool.num_idle() as u32)
    }

    async fn insert_dataset_parts(&self, d: &DatasetRecord, parts: Parts) -> Result<()> {
        let d = d.clone();
        self.without_autocheckpoint(move |conn| {
            Box::pin(async move { insert_dataset_parts(conn, &d, parts).await })
        })
        .await
    }

    async fn write_dataset(&self, id: Uuid, tenant: &str, writes: DatasetWrites) -> Result<bool> {
        let tenant = tenant.to_owned();
        self.without_autocheckpoint(move |conn| {
            Box::pin(async move { write_dataset(conn, id, &tenant, writes).await })
        })
        .await
    }

    async fn usage(&self, tenant: &str) -> Result<Usage> {
        let r = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM jobs WHERE tenant = ?1 AND status = 'queued') AS queued,
                    (SELECT COUNT(*) FROM jobs WHERE tenant = ?1 AND status = 'running') AS running,
                    (SELECT COALESCE(SUM(size_bytes), 0) FROM datasets WHERE tenant = ?1)
                  + (SELECT COALESCE(SUM(LENGTH(document)), 0) FROM models WHERE tenant = ?1)
                  + (SELECT COALESCE(SUM(LENGTH(f.state)), 0) FROM final_states f
                       JOIN jobs j ON j.id = f.job_id WHERE j.tenant = ?1)
                  + (SELECT COALESCE(SUM(LENGTH(c.state)), 0) FROM checkpoints c
                       JOIN jobs j ON j.id = c.job_id WHERE j.tenant = ?1)
                  + (SELECT COALESCE(SUM(LENGTH(e.record)), 0) FROM epochs e
                       JOIN jobs j ON j.id = e.job_id WHERE j.tenant = ?1)
                  + (SELECT COALESCE(SUM(LENGTH(c.csv)), 0) FROM batch_prediction_chunks c
                       JOIN batch_predictions b ON b.id = c.batch_id WHERE b.tenant = ?1) AS bytes",
        )
        .bind(tenant)
        .fetch_one(&self.pool)
        .await?;
        Ok(Usage {
            queued: r.try_get("queued")?,
            running: r.try_get("running")?,
            stored_bytes: r.try_get("bytes")?,
        })
    }

    async fn claim_next_job(
        &self,
        worker: &str,
        lease_ms: i64,
        max_running_per_tenant: i64,
        suspects: bool,
    ) -> Result<Option<JobRecord>> {
        let now = now_ms();
        // One statement: SQLite serialises writers, so two claimers cannot take the same row.
        sqlx::query(
            "UPDATE jobs SET status = 'running', attempt = attempt + 1, worker = ?, lease_expires_at = ?,
                    started_at = COALESCE(started_at, ?)
             WHERE id = (SELECT id FROM jobs WHERE status = 'queued'
                           AND (? <= 0 OR tenant NOT IN (SELECT tenant FROM jobs WHERE status = 'running'
                                                        GROUP BY tenant HAVING COUNT(*) >= ?))
                           AND (? OR crashes = 0)
                         ORDER BY (SELECT COUNT(*) FROM jobs r WHERE r.status = 'running' AND r.tenant = jobs.tenant),
                                  crashes, priority DESC, seq LIMIT 1)
               AND status = 'queued'
             RETURNING *",
        )
        .bind(worker)
        .bind(now + lease_ms)
        .bind(now)
        .bind(max_running_per_tenant)
        .bind(max_running_per_tenant)
        .bind(suspects)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| job(&r))
        .transpose()
    }

    async fn renew_lease(&self, id: Uuid, attempt: i64, lease_ms: i64) -> Result<bool> {
        let r = sqlx::query("UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND attempt = ? AND status = 'running'")
            .bind(now_ms() + lease_ms)
            .bind(id.to_string())
            .bind(attempt)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn requeue_running(&self, only_expired: bool) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "UPDATE jobs SET
                status = CASE WHEN crashes + 1 >= ?2 THEN 'failed' ELSE 'queued' END,
                finished_at = CASE WHEN crashes + 1 >= ?2 THEN ?3 ELSE finished_at END,
                error = CASE WHEN crashes + 1 >= ?2 THEN json_object('kind', ?4, 'detail', ?5)
                    ELSE error END,
                crashes = crashes + 1,
                worker = NULL, lease_expires_at = NULL
             WHERE status = 'running' AND (?1 = 0 OR lease_expires_at < ?3)
             RETURNING id, status",
        )
        .bind(only_expired as i64)
        .bind(MAX_CRASHES)
        .bind(now_ms())
        .bind(FailureKind::TooManyAttempts.as_str())
        .bind(CRASHED_DETAIL)
        .fetch_all(&mut *tx)
        .await?;
        for r in &rows {
            // A failed job never resumes: its checkpoint is dead weight (as after finish_job).
            if r.try_get::<String, _>("status")? == "failed" {
                sqlx::query("DELETE FROM checkpoints WHERE job_id = ?")
                    .bind(r.try_get::<String, _>("id")?)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(rows.len() as u64)
    }
}
