//! The PostgreSQL store, for several nodes sharing one database. Same semantics as the
//! SQLite store; what differs is how concurrent nodes are kept apart: claims skip rows
//! another node has locked (`FOR UPDATE SKIP LOCKED`), fenced writes lock the job row for
//! the length of their transaction, and leases are timed by the database's clock so the
//! nodes' clocks need not agree.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, Row};
use uuid::Uuid;

use super::rows::{
    BATCH_COLS, Columns, DATASET_COLS, DEPLOYMENT_COLS, MODEL_COLS, batch, dataset, deployment,
    deployment_version, job, model, page, page_keyed, page_start, parts_capacity, sweep, trial,
};
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
    fn text(&self, c: &str) -> Result<String> {
        Ok(self.try_get(c)?)
    }
    fn opt_text(&self, c: &str) -> Result<Option<String>> {
        Ok(self.try_get(c)?)
    }
    fn int(&self, c: &str) -> Result<i64> {
        Ok(self.try_get(c)?)
    }
    fn opt_int(&self, c: &str) -> Result<Option<i64>> {
        Ok(self.try_get(c)?)
    }
    fn int32(&self, c: &str) -> Result<i32> {
        Ok(self.try_get(c)?)
    }
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

/// Locks the job row while `attempt` still owns it (running under that attempt), so a
/// concurrent requeue or claim waits for this transaction; false when it does not own it.
async fn lock_owned(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    id: Uuid,
    attempt: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "SELECT 1 FROM jobs WHERE id = $1 AND attempt = $2 AND status = 'running' FOR UPDATE",
    )
    .bind(id)
    .bind(attempt)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(r.is_some())
}

async fn insert_model_tx<'e, E: sqlx::Executor<'e, Database = Postgres>>(
    e: E,
    m: &ModelRecord,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO models (id, name, created_at, job_id, dataset_id, input_dim, output_dim, parameter_count, metrics, document, tenant)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(m.id)
    .bind(&m.name)
    .bind(m.created_at)
    .bind(m.job_id)
    .bind(m.dataset_id)
    .bind(m.input_dim)
    .bind(m.output_dim)
    .bind(m.parameter_count)
    .bind(&m.metrics)
    .bind(&m.document)
    .bind(&m.tenant)
    .execute(e)
    .await?;
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    fn pool_use(&self) -> (u32, u32) {
        (self.pool.size(), self.pool.num_idle() as u32)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
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

    async fn get_dataset(&self, id: Uuid) -> Result<Option<DatasetRecord>> {
        let q = format!("SELECT {DATASET_COLS} FROM datasets WHERE id = $1");
        sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| dataset(&r))
            .transpose()
    }

    async fn dataset_data(&self, id: Uuid) -> Result<Option<Vec<u8>>> {
        // One transaction: the record and its parts as of one moment.
        let mut tx = self.pool.begin().await?;
        let Some(r) = sqlx::query("SELECT data, size_bytes FROM datasets WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let data: Vec<u8> = r.try_get("data")?;
        if !data.is_empty() {
            return Ok(Some(data));
        }
        let mut out = Vec::with_capacity(parts_capacity(r.try_get("size_bytes")?));
        let mut rows =
            sqlx::query("SELECT data FROM dataset_parts WHERE dataset_id = $1 ORDER BY part")
                .bind(id)
                .fetch(&mut *tx);
        while let Some(row) = rows.try_next().await? {
            out.extend_from_slice(row.try_get::<&[u8], _>("data")?);
        }
        drop(rows);
        tx.commit().await?;
        Ok(Some(out))
    }

    async fn list_datasets(
        &self,
        tenant: &str,
        after: Option<Cursor>,
        limit: i64,
    ) -> Result<Page<DatasetRecord>> {
        let q = format!(
            "SELECT {DATASET_COLS} FROM datasets WHERE tenant = $1 AND seq < {} ORDER BY seq DESC LIMIT $4",
            page_start("datasets", "id", "$1", "$2", "$3")
        );
        let after = after.unwrap_or_else(Cursor::start);
        let rows = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(tenant)
            .bind(Uuid::parse_str(&after.key).ok())
            .bind(after.created_at)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM datasets WHERE tenant = $1")
            .bind(tenant)
            .fetch_one(&self.pool)
            .await?;
        page(&rows, dataset, limit, total)
    }

    async fn delete_dataset(&self, id: Uuid) -> Result<bool> {
        let r = sqlx::query(
            "DELETE FROM datasets WHERE id = $1 AND NOT EXISTS (
                SELECT 1 FROM jobs WHERE status IN ('queued', 'running')
                AND (dataset_id = $1 OR spec->>'validation_dataset_id' = $1::text))
             AND NOT EXISTS (
                SELECT 1 FROM sweeps WHERE status IN ('queued', 'running') AND dataset_id = $1)",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn jobs_using_dataset(&self, id: Uuid, limit: i64) -> Result<Vec<Uuid>> {
        let rows: Vec<(Uuid,)> = sqlx::query_as(
            "SELECT id FROM jobs WHERE status IN ('queued', 'running')
             AND (dataset_id = $1 OR spec->>'validation_dataset_id' = $1::text)
             ORDER BY created_at, id LIMIT $2",
        )
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    async fn insert_job(&self, j: &JobRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO jobs (id, status, priority, dataset_id, spec, epochs, created_at, tenant)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(j.id)
        .bind(j.status.as_str())
        .bind(j.priority)
        .bind(j.dataset_id)
        .bind(j.spec.to_value())
        .bind(j.epochs)
        .bind(j.created_at)
        .bind(&j.tenant)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_job(&self, id: Uuid) -> Result<Option<JobRecord>> {
        sqlx::query("SELECT * FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| job(&r))
            .transpose()
    }

    async fn list_jobs(
        &self,
        tenant: &str,
        status: Option<JobStatus>,
        after: Option<Cursor>,
        limit: i64,
    ) -> Result<Page<JobRecord>> {
        let q = format!(
            "SELECT * FROM jobs WHERE tenant = $1 AND seq < {} AND ($4::text IS NULL OR status = $4)
             ORDER BY seq DESC LIMIT $5",
            page_start("jobs", "id", "$1", "$2", "$3")
        );
        let after = after.unwrap_or_else(Cursor::start);
        let rows = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(tenant)
            .bind(Uuid::parse_str(&after.key).ok())
            .bind(after.created_at)
            .bind(status.map(|s| s.as_str()))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE tenant = $1 AND ($2::text IS NULL OR status = $2)",
        )
        .bind(tenant)
        .bind(status.map(|s| s.as_str()))
        .fetch_one(&self.pool)
        .await?;
        page(&rows, job, limit, total)
    }

    async fn delete_job(&self, id: Uuid) -> Result<bool> {
        let r = sqlx::query("DELETE FROM jobs WHERE id = $1 AND status <> 'running'")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn queue_position(&self, id: Uuid) -> Result<Option<i64>> {
        let r = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM jobs o WHERE o.status = 'queued' AND o.tenant = j.tenant
                       AND (o.priority > j.priority OR (o.priority = j.priority AND o.seq < j.seq))) AS pos
             FROM jobs j WHERE j.id = $1 AND j.status = 'queued'",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(r.map(|r| r.try_get("pos")).transpose()?)
    }

    async fn waiting_tenants(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT DISTINCT tenant FROM jobs WHERE status = 'queued'")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("tenant").map_err(Into::into))
            .collect()
    }

    async fn count_jobs(&self, status: JobStatus) -> Result<i64> {
        let r = sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE status = $1")
            .bind(status.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(r.try_get("n")?)
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

    async fn idempotent_answer(
        &self,
        tenant: &str,
        route: &str,
        key: &str,
    ) -> Result<Option<IdempotentAnswer>> {
        let r = sqlx::query(
            "SELECT fingerprint, status, location, body FROM idempotency
             WHERE tenant = $1 AND route = $2 AND key = $3 AND created_at > $4",
        )
        .bind(tenant)
        .bind(route)
        .bind(key)
        .bind(now_ms() - IDEMPOTENCY_TTL_MS)
        .fetch_optional(&self.pool)
        .await?;
        r.map(|r| {
            Ok(IdempotentAnswer {
                fingerprint: r.try_get("fingerprint")?,
                status: r.try_get::<i32, _>("status")? as u16,
                location: r.try_get("location")?,
                body: r.try_get("body")?,
            })
        })
        .transpose()
    }

    async fn remember_answer(
        &self,
        tenant: &str,
        route: &str,
        key: &str,
        a: &IdempotentAnswer,
    ) -> Result<()> {
        sqlx::query("DELETE FROM idempotency WHERE created_at <= $1")
            .bind(now_ms() - IDEMPOTENCY_TTL_MS)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO idempotency (tenant, route, key, fingerprint, status, location, body, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (tenant, route, key) DO UPDATE
                SET status = excluded.status, location = excluded.location, body = excluded.body
                WHERE idempotency.status = 0 AND idempotency.fingerprint = excluded.fingerprint",
        )
        .bind(tenant)
        .bind(route)
        .bind(key)
        .bind(&a.fingerprint)
        .bind(a.status as i32)
        .bind(&a.location)
        .bind(&a.body)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn forget_reservation(
        &self,
        tenant: &str,
        route: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<()> {
        sqlx::query(
            "DELETE FROM idempotency
             WHERE tenant = $1 AND route = $2 AND key = $3 AND fingerprint = $4 AND status = 0",
        )
        .bind(tenant)
        .bind(route)
        .bind(key)
        .bind(fingerprint)
        .execute(&self.pool)
        .await?;
        Ok(())
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

    async fn release_job(&self, id: Uuid, attempt: i64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE jobs SET status = 'queued', worker = NULL, lease_expires_at = NULL
             WHERE id = $1 AND attempt = $2 AND status = 'running'",
        )
        .bind(id)
        .bind(attempt)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn record_epoch(
        &self,
        id: Uuid,
        attempt: i64,
        record: &serde_json::Value,
        epoch: i64,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        // The UPDATE is the fence and holds the row lock until commit.
        let owned = sqlx::query(
            "UPDATE jobs SET epoch = $1, latest = $2 WHERE id = $3 AND attempt = $4 AND status = 'running'",
        )
        .bind(epoch)
        .bind(record)
        .bind(id)
        .bind(attempt)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if !owned {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO epochs (job_id, epoch, record) VALUES ($1, $2, $3)
             ON CONFLICT (job_id, epoch) DO UPDATE SET record = EXCLUDED.record",
        )
        .bind(id)
        .bind(epoch)
        .bind(record)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn history(&self, id: Uuid, since: i64, limit: i64) -> Result<Vec<serde_json::Value>> {
        let rows = sqlx::query(
            "SELECT record FROM epochs WHERE job_id = $1 AND epoch > $2 ORDER BY epoch LIMIT $3",
        )
        .bind(id)
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get("record"))
            .collect::<std::result::Result<_, _>>()?)
    }

    async fn save_checkpoint(
        &self,
        id: Uuid,
        attempt: i64,
        epoch: i64,
        state: &[u8],
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        if !lock_owned(&mut tx, id, attempt).await? {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO checkpoints (job_id, epoch, state, saved_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (job_id) DO UPDATE
                SET epoch = EXCLUDED.epoch, state = EXCLUDED.state, saved_at = EXCLUDED.saved_at",
        )
        .bind(id)
        .bind(epoch)
        .bind(state)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        // Progress since the claim: whatever stopped the node before, it was not this job.
        sqlx::query("UPDATE jobs SET crashes = 0 WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        crate::crash::point("checkpoint_write");
        tx.commit().await?;
        Ok(true)
    }

    async fn load_checkpoint(&self, id: Uuid) -> Result<Option<(i64, Vec<u8>)>> {
        let r = sqlx::query("SELECT epoch, state FROM checkpoints WHERE job_id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(
            r.map(|r| Ok::<_, sqlx::Error>((r.try_get("epoch")?, r.try_get("state")?)))
                .transpose()?,
        )
    }

    async fn truncate_history(&self, id: Uuid, attempt: i64, epoch: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        if !lock_owned(&mut tx, id, attempt).await? {
            return Ok(false);
        }
        sqlx::query("DELETE FROM epochs WHERE job_id = $1 AND epoch > $2")
            .bind(id)
            .bind(epoch)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE jobs SET epoch = $2,
                    latest = (SELECT record FROM epochs WHERE job_id = $1 ORDER BY epoch DESC LIMIT 1)
             WHERE id = $1",
        )
        .bind(id)
        .bind(epoch)
        .execute(&mut *tx)
        .await?;
        crate::crash::point("history_truncate");
        tx.commit().await?;
        Ok(true)
    }

    async fn finish_job(&self, id: Uuid, attempt: i64, finish: Finish) -> Result<bool> {
        let (status, model_id, error, reason) = match &finish {
            Finish::Succeeded { model, stop_reason } => (
                "succeeded",
                Some(model.id),
                None,
                Some(stop_reason.as_str()),
            ),
            Finish::Failed(f) => ("failed", None, Some(f.to_value()), None),
            Finish::Cancelled => ("cancelled", None, None, Some("cancelled")),
        };
        let mut tx = self.pool.begin().await?;
        let owned = sqlx::query(
            "UPDATE jobs SET status = $1, model_id = $2, error = $3, stop_reason = $4, finished_at = $5,
                    worker = NULL, lease_expires_at = NULL
             WHERE id = $6 AND attempt = $7 AND status = 'running'",
        )
        .bind(status)
        .bind(model_id)
        .bind(error)
        .bind(reason)
        .bind(now_ms())
        .bind(id)
        .bind(attempt)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if !owned {
            return Ok(false);
        }
        if let Finish::Succeeded { model, .. } = &finish {
            insert_model_tx(&mut *tx, model).await?;
            // Kept so the job can be continued for more epochs (POST /v1/jobs/{id}/continue).
            sqlx::query(
                "INSERT INTO final_states (job_id, epoch, state)
                 SELECT job_id, epoch, state FROM checkpoints WHERE job_id = $1
                 ON CONFLICT (job_id) DO UPDATE SET epoch = EXCLUDED.epoch, state = EXCLUDED.state",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM checkpoints WHERE job_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        crate::crash::point("model_save");
        tx.commit().await?;
        Ok(true)
    }

    async fn request_cancel(&self, id: Uuid) -> Result<Option<JobRecord>> {
        // Matches any job with this id, so RETURNING gives the job after in one statement.
        sqlx::query(
            "UPDATE jobs SET status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
                    stop_reason = CASE WHEN status = 'queued' THEN 'cancelled' ELSE stop_reason END,
                    finished_at = CASE WHEN status = 'queued' THEN $1 ELSE finished_at END,
                    cancel_requested = CASE WHEN status IN ('queued', 'running') THEN true
                                            ELSE cancel_requested END
             WHERE id = $2
             RETURNING *",
        )
        .bind(now_ms())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| job(&r))
        .transpose()
    }

    async fn request_stop(&self, id: Uuid) -> Result<Option<JobRecord>> {
        sqlx::query(
            "UPDATE jobs SET stop_requested = (stop_requested OR status IN ('queued', 'running'))
             WHERE id = $1
             RETURNING *",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| job(&r))
        .transpose()
    }

    async fn insert_model(&self, m: &ModelRecord) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        insert_model_tx(&mut *tx, m).await?;
        crate::crash::point("model_insert");
        tx.commit().await?;
        Ok(())
    }

    async fn get_model(&self, id: Uuid) -> Result<Option<ModelRecord>> {
        let q = format!("SELECT {MODEL_COLS} FROM models WHERE id = $1");
        sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| model(&r))
            .transpose()
    }

    async fn list_models(
        &self,
        tenant: &str,
        after: Option<Cursor>,
        limit: i64,
    ) -> Result<Page<ModelRecord>> {
        let q = format!(
            "SELECT {MODEL_COLS} FROM models WHERE tenant = $1 AND seq < {} ORDER BY seq DESC LIMIT $4",
            page_start("models", "id", "$1", "$2", "$3")
        );
        let after = after.unwrap_or_else(Cursor::start);
        let rows = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(tenant)
            .bind(Uuid::parse_str(&after.key).ok())
            .bind(after.created_at)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM models WHERE tenant = $1")
            .bind(tenant)
            .fetch_one(&self.pool)
            .await?;
        page(&rows, model, limit, total)
    }

    async fn delete_model(&self, id: Uuid) -> Result<bool> {
        let r = sqlx::query(
            "DELETE FROM models WHERE id = $1 AND NOT EXISTS (
                SELECT 1 FROM jobs WHERE status IN ('queued', 'running')
                AND spec->>'init_model_id' = $1::text)",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    // ---- issue 14: continued jobs, learning-rate range tests, sweeps ----
    async fn insert_job_from(
        &self,
        j: &JobRecord,
        from: Option<&Continuation>,
        trial: Option<&TrialRecord>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO jobs (id, status, priority, dataset_id, spec, epochs, created_at, tenant)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(j.id)
        .bind(j.status.as_str())
        .bind(j.priority)
        .bind(j.dataset_id)
        .bind(j.spec.to_value())
        .bind(j.epochs)
        .bind(j.created_at)
        .bind(&j.tenant)
        .execute(&mut *tx)
        .await?;
        if let Some(c) = from {
            sqlx::query(
                "INSERT INTO epochs (job_id, epoch, record)
                 SELECT $1, epoch, record FROM epochs WHERE job_id = $2 AND epoch <= $3",
            )
            .bind(j.id)
            .bind(c.job_id)
            .bind(c.epoch)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE jobs SET epoch = $1,
                        latest = (SELECT record FROM epochs WHERE job_id = $2 AND epoch = $1)
                 WHERE id = $2",
            )
            .bind(c.epoch)
            .bind(j.id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO checkpoints (job_id, epoch, state, saved_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(j.id)
            .bind(c.epoch)
            .bind(&c.state)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        }
        if let Some(t) = trial {
            sqlx::query(
                "INSERT INTO sweep_trials (sweep_id, trial, rung, job_id, params) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(t.sweep_id)
            .bind(t.trial)
            .bind(t.rung)
            .bind(t.job_id)
            .bind(&t.params)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn final_state(&self, id: Uuid) -> Result<Option<(i64, Vec<u8>)>> {
        let r = sqlx::query("SELECT epoch, state FROM final_states WHERE job_id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(
            r.map(|r| Ok::<_, sqlx::Error>((r.try_get("epoch")?, r.try_get("state")?)))
                .transpose()?,
        )
    }

    async fn record_lr_range_test(
        &self,
        id: Uuid,
        attempt: i64,
        result: &serde_json::Value,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        if !lock_owned(&mut tx, id, attempt).await? {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO lr_range_tests (job_id, result) VALUES ($1, $2)
             ON CONFLICT (job_id) DO UPDATE SET result = EXCLUDED.result",
        )
        .bind(id)
        .bind(result)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn lr_range_test(&self, id: Uuid) -> Result<Option<serde_json::Value>> {
        sqlx::query("SELECT result FROM lr_range_tests WHERE job_id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.json("result"))
            .transpose()
    }

    async fn jobs_using_model(&self, id: Uuid, limit: i64) -> Result<Vec<Uuid>> {
        let rows: Vec<(Uuid,)> = sqlx::query_as(
            "SELECT id FROM jobs WHERE status IN ('queued', 'running')
             AND spec->>'init_model_id' = $1::text
             ORDER BY created_at, id LIMIT $2",
        )
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    async fn insert_sweep(&self, s: &SweepRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO sweeps (id, tenant, dataset_id, status, spec, best, created_at, finished_at, cancel_requested)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(s.id)
        .bind(&s.tenant)
        .bind(s.dataset_id)
        .bind(s.status.as_str())
        .bind(&s.spec)
        .bind(&s.best)
        .bind(s.created_at)
        .bind(s.finished_at)
        .bind(s.cancel_requested)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_sweep(&self, id: Uuid) -> Result<Option<SweepRecord>> {
        sqlx::query("SELECT * FROM sweeps WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| sweep(&r))
            .transpose()
    }

    async fn list_sweeps(
        &self,
        tenant: &str,
        after: Option<Cursor>,
        limit: i64,
    ) -> Result<Page<SweepRecord>> {
        let after = after.unwrap_or_else(Cursor::start);
        let q = format!(
            "SELECT * FROM sweeps WHERE tenant = $1 AND seq < {} ORDER BY seq DESC LIMIT $4",
            page_start("sweeps", "id", "$1", "$2", "$3")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(tenant)
            .bind(Uuid::parse_str(&after.key).ok())
            .bind(after.created_at)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sweeps WHERE tenant = $1")
            .bind(tenant)
            .fetch_one(&self.pool)
            .await?;
        page(&rows, sweep, limit, total)
    }

    async fn unfinished_sweeps(&self) -> Result<Vec<SweepRecord>> {
        let rows =
            sqlx::query("SELECT * FROM sweeps WHERE status IN ('queued', 'running') ORDER BY seq")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(sweep).collect()
    }

    async fn update_sweep(
        &self,
        id: Uuid,
        status: JobStatus,
        best: Option<&serde_json::Value>,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE sweeps SET status = $1, best = $2, finished_at = $3
             WHERE id = $4 AND status IN ('queued', 'running')",
        )
        .bind(status.as_str())
        .bind(best)
        .bind(status.is_terminal().then(now_ms))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn request_sweep_cancel(&self, id: Uuid) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE sweeps SET cancel_requested = true WHERE id = $1 AND status IN ('queued', 'running')",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn sweep_trials(&self, id: Uuid) -> Result<Vec<TrialRecord>> {
        let rows =
            sqlx::query("SELECT * FROM sweep_trials WHERE sweep_id = $1 ORDER BY trial, rung")
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(trial).collect()
    }

    async fn delete_sweep(&self, id: Uuid) -> Result<bool> {
        let r = sqlx::query("DELETE FROM sweeps WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn deploy(
        &self,
        tenant: &str,
        name: &str,
        model_id: Uuid,
        expected: Option<i64>,
        now: i64,
    ) -> Result<Option<DeploymentRecord>> {
        let mut tx = self.pool.begin().await?;
        // The upsert locks the deployment's row until COMMIT: two switches of one name queue
        // up, and each gets its own version.
        let row = match expected {
            None => {
                let q = format!(
                    "INSERT INTO deployments (tenant, name, version, model_id, created_at, updated_at)
                     VALUES ($1, $2, 1, $3, $4, $4)
                     ON CONFLICT (tenant, name) DO UPDATE
                        SET version = deployments.version + 1, model_id = excluded.model_id,
                            updated_at = excluded.updated_at
                     RETURNING {DEPLOYMENT_COLS}"
                );
                sqlx::query(sqlx::AssertSqlSafe(q))
                    .bind(tenant)
                    .bind(name)
                    .bind(model_id)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?
            }
            Some(v) => {
                let q = format!(
                    "UPDATE deployments SET version = version + 1, model_id = $3, updated_at = $4
                     WHERE tenant = $1 AND name = $2 AND version = $5
                     RETURNING {DEPLOYMENT_COLS}"
                );
                sqlx::query(sqlx::AssertSqlSafe(q))
                    .bind(tenant)
                    .bind(name)
                    .bind(model_id)
                    .bind(now)
                    .bind(v)
                    .fetch_optional(&mut *tx)
                    .await?
            }
        };
        let Some(row) = row else {
            return Ok(None);
        };
        let d = deployment(&row)?;
        sqlx::query(
            "INSERT INTO deployment_versions (tenant, name, version, model_id, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(tenant)
        .bind(name)
        .bind(d.version)
        .bind(model_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(d))
    }

    async fn get_deployment(&self, tenant: &str, name: &str) -> Result<Option<DeploymentRecord>> {
        let q =
            format!("SELECT {DEPLOYMENT_COLS} FROM deployments WHERE tenant = $1 AND name = $2");
        sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(tenant)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| deployment(&r))
            .transpose()
    }

    async fn list_deployments(
        &self,
        tenant: &str,
        after: Option<Cursor>,
        limit: i64,
    ) -> Result<Page<DeploymentRecord>> {
        let after = after.unwrap_or_else(Cursor::start);
        let q = format!(
            "SELECT {DEPLOYMENT_COLS} FROM deployments WHERE tenant = $1 AND seq < {} ORDER BY seq DESC LIMIT $4",
            page_start("deployments", "name", "$1", "$2", "$3")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(tenant)
            .bind(after.key.as_str())
            .bind(after.created_at)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deployments WHERE tenant = $1")
            .bind(tenant)
            .fetch_one(&self.pool)
            .await?;
        page_keyed(&rows, deployment, limit, total, |r| r.text("name"))
    }

    async fn deployment_versions(
        &self,
        tenant: &str,
        name: &str,
        limit: i64,
    ) -> Result<Vec<DeploymentVersion>> {
        let rows = sqlx::query(
            "SELECT version, model_id, created_at FROM deployment_versions
             WHERE tenant = $1 AND name = $2 ORDER BY version DESC LIMIT $3",
        )
        .bind(tenant)
        .bind(name)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(deployment_version).collect()
    }

    async fn deployment_version(
        &self,
        tenant: &str,
        name: &str,
        version: i64,
    ) -> Result<Option<DeploymentVersion>> {
        sqlx::query(
            "SELECT version, model_id, created_at FROM deployment_versions
             WHERE tenant = $1 AND name = $2 AND version = $3",
        )
        .bind(tenant)
        .bind(name)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| deployment_version(&r))
        .transpose()
    }

    async fn delete_deployment(&self, tenant: &str, name: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query("DELETE FROM deployments WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM deployment_versions WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() > 0)
    }

    async fn deployments_of_model(&self, model_id: Uuid) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT name FROM deployments WHERE model_id = $1 ORDER BY name LIMIT 10",
        )
        .bind(model_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn insert_batch(&self, b: &BatchRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO batch_predictions (id, tenant, model_id, dataset_id, status, rows_total, rows_done, error, created_at, updated_at, finished_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(b.id)
        .bind(&b.tenant)
        .bind(b.model_id)
        .bind(b.dataset_id)
        .bind(&b.status)
        .bind(b.rows_total)
        .bind(b.rows_done)
        .bind(&b.error)
        .bind(b.created_at)
        .bind(b.updated_at)
        .bind(b.finished_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_batch(&self, id: Uuid) -> Result<Option<BatchRecord>> {
        let q = format!("SELECT {BATCH_COLS} FROM batch_predictions WHERE id = $1");
        sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| batch(&r))
            .transpose()
    }

    async fn append_batch_chunk(
        &self,
        id: Uuid,
        seq: i64,
        csv: &str,
        rows_done: i64,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE batch_predictions SET rows_done = $1, updated_at = $2
             WHERE id = $3 AND status = 'running'",
        )
        .bind(rows_done)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("INSERT INTO batch_prediction_chunks (batch_id, seq, csv) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(seq)
            .bind(csv)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn finish_batch(
        &self,
        id: Uuid,
        status: &str,
        error: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE batch_predictions SET status = $1, error = $2, finished_at = $3, updated_at = $3
             WHERE id = $4 AND status = 'running'",
        )
        .bind(status)
        .bind(error)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn batch_chunk(&self, id: Uuid, seq: i64) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT csv FROM batch_prediction_chunks WHERE batch_id = $1 AND seq = $2",
        )
        .bind(id)
        .bind(seq)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn sweeps_using_dataset(&self, id: Uuid, limit: i64) -> Result<Vec<Uuid>> {
        let rows: Vec<(Uuid,)> = sqlx::query_as(
            "SELECT id FROM sweeps WHERE status IN ('queued', 'running') AND dataset_id = $1
             ORDER BY seq LIMIT $2",
        )
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
}
