//! The PostgreSQL store, for several nodes sharing one database. Same semantics as the
//! SQLite store; what differs is how concurrent nodes are kept apart: claims skip rows
//! another node has locked (`FOR UPDATE SKIP LOCKED`), fenced writes lock the job row for
//! the length of their transaction, and leases are timed by the database's clock so the
//! nodes' clocks need not agree.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, Row};
use uuid::Uuid;

use super::rows::{self, Columns, job};
use super::sql::{self, Arg, Backend, Dialect};
use super::*;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…` or `postgresql://…`; `?options=-csearch_path%3Dx`
    /// selects a schema) and migrates the database.
    pub async fn open(url: &str) -> Result<Self> {
        let store = Self::connect(url)?;
        store.migrate().await?;
        Ok(store)
    }

    /// A pool for `url` that connects on first use, so a node starts while the database is
    /// away: until it answers, every call fails with `Unavailable` after `ACQUIRE_TIMEOUT`.
    pub fn connect(url: &str) -> Result<Self> {
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad database url: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(opts);
        Ok(PostgresStore { pool })
    }

    /// Applies pending migrations (`Unavailable` when the database does not answer).
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => StoreError::from(e),
            e => StoreError::Database(format!("migrations: {e}")),
        })
    }
}

/// How long a call waits for a connection before it fails as `Unavailable` (a 503): short,
/// so requests fail fast while the database is away instead of piling up behind the pool.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// True for the SQLSTATEs that mean "the server is not there for us" rather than "this
/// statement is wrong": connection exceptions (class 08), shutdown (57P01–57P03) and too
/// many connections (53300).
pub(crate) fn is_unavailable(e: &dyn sqlx::error::DatabaseError) -> bool {
    let Some(pg) = e.try_downcast_ref::<PgDatabaseError>() else {
        return false;
    };
    let code = pg.code();
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

/// Now, in Unix milliseconds, by the database's clock: leases are set and expired by the
/// same clock whichever node does it.
macro_rules! db_now_ms {
    () => {
        "(extract(epoch from clock_timestamp()) * 1000)::bigint"
    };
}

impl Columns for PgRow {
    rows::read_directly!();
    /// UUIDs are UUID.
    fn uuid(&self, c: &str) -> Result<Uuid> {
        Ok(self.try_get(c)?)
    }
    fn opt_uuid(&self, c: &str) -> Result<Option<Uuid>> {
        Ok(self.try_get(c)?)
    }
    /// JSON is JSONB.
    fn json(&self, c: &str) -> Result<serde_json::Value> {
        Ok(self.try_get(c)?)
    }
    fn opt_json(&self, c: &str) -> Result<Option<serde_json::Value>> {
        Ok(self.try_get(c)?)
    }
    /// Flags are BOOLEAN.
    fn flag(&self, c: &str) -> Result<bool> {
        Ok(self.try_get(c)?)
    }
}

type Query<'a> =
    sqlx::query::Query<'a, sqlx::Postgres, <sqlx::Postgres as sqlx::Database>::Arguments>;

/// A shared statement (see `sql`) with its arguments bound as this database holds them.
fn statement<'a>(sql: &str, args: Vec<Arg<'a>>) -> Query<'a> {
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
    for a in args {
        q = match a {
            Arg::Text(s) => q.bind(s),
            Arg::OptText(s) => q.bind(s),
            Arg::Int(i) => q.bind(i),
            Arg::OptInt(i) => q.bind(i),
            Arg::Int32(i) => q.bind(i),
            Arg::Json(v) => q.bind(v),
            Arg::OptJson(v) => q.bind(v),
            Arg::JsonRef(v) => q.bind(v),
            Arg::Flag(f) => q.bind(f),
            Arg::Uuid(u) => q.bind(u),
            Arg::OptUuid(u) => q.bind(u),
            Arg::Bytes(b) => q.bind(b),
        };
    }
    q
}

sql::backend!(PostgresStore, Postgres, PgRow, PgTx);

#[async_trait]
impl Dialect for PostgresStore {
    fn pool_use(&self) -> (u32, u32) {
        (self.pool.size(), self.pool.num_idle() as u32)
    }

    async fn insert_dataset_parts(&self, d: &DatasetRecord, parts: Parts) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // The record first: a duplicate id fails before any part is written. Its own `data`
        // stays empty; the bytes are in `dataset_parts`.
        sqlx::query(
            "INSERT INTO datasets (id, name, created_at, rows, inputs, outputs, meta, size_bytes, data, tenant)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, ''::bytea, $9)",
        )
        .bind(d.id)
        .bind(&d.name)
        .bind(d.created_at)
        .bind(d.rows)
        .bind(d.inputs)
        .bind(d.outputs)
        .bind(&d.meta)
        .bind(d.size_bytes)
        .bind(&d.tenant)
        .execute(&mut *tx)
        .await?;
        let mut parts = futures::StreamExt::enumerate(parts);
        while let Some((i, part)) = futures::StreamExt::next(&mut parts).await {
            sqlx::query("INSERT INTO dataset_parts (dataset_id, part, data) VALUES ($1, $2, $3)")
                .bind(d.id)
                .bind(i as i32)
                .bind(part)
                .execute(&mut *tx)
                .await?;
        }
        crate::crash::point("dataset_insert");
        tx.commit().await?;
        Ok(())
    }

    async fn write_dataset(
        &self,
        id: Uuid,
        tenant: &str,
        mut writes: DatasetWrites,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        // The id is taken first, by a record the commit completes.
        sqlx::query(
            "INSERT INTO datasets (id, name, created_at, rows, inputs, outputs, meta, size_bytes, data, tenant)
             VALUES ($1, '', 0, 0, 0, 0, '{}'::jsonb, 0, ''::bytea, $2)",
        )
        .bind(id)
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
        while let Some(write) = futures::StreamExt::next(&mut writes).await {
            match write {
                DatasetWrite::Part(i, part) => {
                    let i = i32::try_from(i).map_err(|_| {
                        StoreError::Database(format!("part number {i} out of range"))
                    })?;
                    sqlx::query(
                        "INSERT INTO dataset_parts (dataset_id, part, data) VALUES ($1, $2, $3)",
                    )
                    .bind(id)
                    .bind(i)
                    .bind(part)
                    .execute(&mut *tx)
                    .await?;
                }
                DatasetWrite::Commit(d) => {
                    check_commit(&d, id, tenant)?;
                    sqlx::query(
                        "UPDATE datasets SET name = $1, created_at = $2, rows = $3, inputs = $4,
                         outputs = $5, meta = $6, size_bytes = $7 WHERE id = $8",
                    )
                    .bind(&d.name)
                    .bind(d.created_at)
                    .bind(d.rows)
                    .bind(d.inputs)
                    .bind(d.outputs)
                    .bind(&d.meta)
                    .bind(d.size_bytes)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    crate::crash::point("dataset_insert");
                    tx.commit().await?;
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    async fn usage(&self, tenant: &str) -> Result<Usage> {
        let r = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM jobs WHERE tenant = $1 AND status = 'queued') AS queued,
                    (SELECT COUNT(*) FROM jobs WHERE tenant = $1 AND status = 'running') AS running,
                    ((SELECT COALESCE(SUM(size_bytes), 0) FROM datasets WHERE tenant = $1)
                   + (SELECT COALESCE(SUM(octet_length(document::text)), 0) FROM models WHERE tenant = $1)
                   + (SELECT COALESCE(SUM(octet_length(f.state)), 0) FROM final_states f
                        JOIN jobs j ON j.id = f.job_id WHERE j.tenant = $1)
                   + (SELECT COALESCE(SUM(octet_length(c.state)), 0) FROM checkpoints c
                        JOIN jobs j ON j.id = c.job_id WHERE j.tenant = $1)
                   + (SELECT COALESCE(SUM(octet_length(e.record::text)), 0) FROM epochs e
                        JOIN jobs j ON j.id = e.job_id WHERE j.tenant = $1)
                   + (SELECT COALESCE(SUM(octet_length(c.csv)), 0) FROM batch_prediction_chunks c
                        JOIN batch_predictions b ON b.id = c.batch_id WHERE b.tenant = $1))::bigint AS bytes",
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
        // One statement: the inner SELECT locks the row it picks and skips rows other
        // claimers hold, so concurrent nodes take different jobs without waiting on each other.
        sqlx::query(concat!(
            "UPDATE jobs SET status = 'running', attempt = attempt + 1, worker = $1,
                    lease_expires_at = ",
            db_now_ms!(),
            " + $2, started_at = COALESCE(started_at, $3)
             WHERE id = (SELECT id FROM jobs WHERE status = 'queued'
                           AND ($4 <= 0 OR tenant NOT IN (SELECT tenant FROM jobs WHERE status = 'running'
                                                         GROUP BY tenant HAVING COUNT(*) >= $4))
                           AND ($5 OR crashes = 0)
                         ORDER BY (SELECT COUNT(*) FROM jobs r WHERE r.status = 'running' AND r.tenant = jobs.tenant),
                                  crashes, priority DESC, seq LIMIT 1 FOR UPDATE SKIP LOCKED)
               AND status = 'queued'
             RETURNING *"
        ))
        .bind(worker)
        .bind(lease_ms)
        .bind(now_ms())
        .bind(max_running_per_tenant)
        .bind(suspects)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| job(&r))
        .transpose()
    }

    async fn renew_lease(&self, id: Uuid, attempt: i64, lease_ms: i64) -> Result<bool> {
        let r = sqlx::query(concat!(
            "UPDATE jobs SET lease_expires_at = ",
            db_now_ms!(),
            " + $1 WHERE id = $2 AND attempt = $3 AND status = 'running'"
        ))
        .bind(lease_ms)
        .bind(id)
        .bind(attempt)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn requeue_running(&self, only_expired: bool) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(concat!(
            "UPDATE jobs SET
                status = CASE WHEN crashes + 1 >= $2 THEN 'failed' ELSE 'queued' END,
                finished_at = CASE WHEN crashes + 1 >= $2 THEN $3 ELSE finished_at END,
                error = CASE WHEN crashes + 1 >= $2 THEN jsonb_build_object(
                    'kind', $4::text, 'detail', $5::text)
                    ELSE error END,
                crashes = crashes + 1,
                worker = NULL, lease_expires_at = NULL
             WHERE status = 'running' AND (NOT $1 OR lease_expires_at < ",
            db_now_ms!(),
            ")
             RETURNING id, status"
        ))
        .bind(only_expired)
        .bind(MAX_CRASHES)
        .bind(now_ms())
        .bind(FailureKind::TooManyAttempts.as_str())
        .bind(CRASHED_DETAIL)
        .fetch_all(&mut *tx)
        .await?;
        let mut failed = Vec::new();
        for r in &rows {
            if r.try_get::<String, _>("status")? == "failed" {
                failed.push(r.try_get::<Uuid, _>("id")?);
            }
        }
        // A failed job never resumes: its checkpoint is dead weight (as after finish_job).
        sqlx::query("DELETE FROM checkpoints WHERE job_id = ANY($1)")
            .bind(&failed)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(rows.len() as u64)
    }
}
