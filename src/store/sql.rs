//! SQL both databases accept, written once. A statement is written in PostgreSQL's form —
//! `$1`-style placeholders, a cast on a parameter where PostgreSQL needs its type
//! (`$2::text IS NULL`) — and values are [`Arg`]s; each backend ([`Backend`]) runs it as its
//! database takes it: SQLite gets `?1` for `$1` (numbered parameters bind exactly the same)
//! and no casts, and each backend binds an `Arg` as its columns hold it (a UUID is TEXT in
//! SQLite and UUID in PostgreSQL, JSON TEXT and JSONB, a flag INTEGER and BOOLEAN), as
//! [`Columns`] reads them back. `->>` reads a JSON field in both.
//!
//! The store methods whose SQL is the same in both live here as functions over a
//! `Backend`; each backend's `Store` impl calls them. What truly differs (connection setup,
//! migrations, claiming a job: `FOR UPDATE SKIP LOCKED` against SQLite's single writer,
//! fenced writes, blobs written as they arrive) stays in its own file.

use async_trait::async_trait;

use super::{Continuation, DatasetWrites, Finish, Parts, Store, Usage};
use uuid::Uuid;

use super::rows::{
    BATCH_COLS, Columns, DATASET_COLS, DEPLOYMENT_COLS, MODEL_COLS, batch, dataset, deployment,
    deployment_version as version_row, job, model, page, page_keyed, page_start, sweep, trial,
};
use super::{
    BatchRecord, Cursor, DatasetRecord, DeploymentRecord, DeploymentVersion, IDEMPOTENCY_TTL_MS,
    IdempotentAnswer, JobRecord, JobStatus, ModelRecord, Page, Result, SweepRecord, TrialRecord,
};
use crate::clock::now_ms;

/// A value bound to a statement.
#[derive(Clone, Debug)]
pub(super) enum Arg {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    OptInt(Option<i64>),
    Int32(i32),
    Uuid(Uuid),
    OptUuid(Option<Uuid>),
    Json(serde_json::Value),
    OptJson(Option<serde_json::Value>),
    Flag(bool),
}

/// Runs a statement written as this module writes them (see the module header).
#[async_trait]
pub(super) trait Backend: Send + Sync {
    type Row: Columns + Send;
    async fn all(&self, sql: &str, args: Vec<Arg>) -> Result<Vec<Self::Row>>;
    async fn opt(&self, sql: &str, args: Vec<Arg>) -> Result<Option<Self::Row>>;
    async fn one(&self, sql: &str, args: Vec<Arg>) -> Result<Self::Row>;
    /// The rows the statement changed.
    async fn run(&self, sql: &str, args: Vec<Arg>) -> Result<u64>;
    /// Runs `statements` in one transaction, in order, and commits; with `all_or_none`, the
    /// first that changes no row rolls the transaction back. The rows each one changed (as
    /// far as it got).
    async fn run_all(
        &self,
        statements: Vec<(&'static str, Vec<Arg>)>,
        all_or_none: bool,
    ) -> Result<Vec<u64>>;
}

/// The `Backend` impl of a store whose pool runs `statement`'s queries (each backend file
/// defines `statement`, binding `Arg`s its way): the same code for both, but for the types.
macro_rules! backend {
    ($store:ty, $row:ty) => {
        #[async_trait]
        impl Backend for $store {
            type Row = $row;
            async fn all(&self, sql: &str, args: Vec<Arg>) -> Result<Vec<$row>> {
                Ok(statement(sql, args).fetch_all(&self.pool).await?)
            }
            async fn opt(&self, sql: &str, args: Vec<Arg>) -> Result<Option<$row>> {
                Ok(statement(sql, args).fetch_optional(&self.pool).await?)
            }
            async fn one(&self, sql: &str, args: Vec<Arg>) -> Result<$row> {
                Ok(statement(sql, args).fetch_one(&self.pool).await?)
            }
            async fn run(&self, sql: &str, args: Vec<Arg>) -> Result<u64> {
                Ok(statement(sql, args)
                    .execute(&self.pool)
                    .await?
                    .rows_affected())
            }
            async fn run_all(
                &self,
                statements: Vec<(&'static str, Vec<Arg>)>,
                all_or_none: bool,
            ) -> Result<Vec<u64>> {
                let mut tx = self.pool.begin().await?;
                let mut changed = Vec::with_capacity(statements.len());
                for (sql, args) in statements {
                    let n = statement(sql, args)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    changed.push(n);
                    if all_or_none && n == 0 {
                        // Dropped without a commit: rolled back.
                        return Ok(changed);
                    }
                }
                tx.commit().await?;
                Ok(changed)
            }
        }
    };
}
pub(super) use backend;

/// A statement as SQLite takes it: `?N` for `$N`, casts on parameters dropped.
pub(super) fn for_sqlite(sql: &str) -> String {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            out.push('?');
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                out.push(b[i] as char);
                i += 1;
            }
            if sql[i..].starts_with("::") {
                i += 2;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
            }
        } else {
            let ch = sql[i..].chars().next().expect("a char at a char boundary");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn ids<R: Columns>(rows: &[R]) -> Result<Vec<Uuid>> {
    rows.iter().map(|r| r.uuid("id")).collect()
}

fn epoch_and_state<R: Columns>(r: Option<R>) -> Result<Option<(i64, Vec<u8>)>> {
    r.map(|r| Ok((r.int("epoch")?, r.bytes("state")?)))
        .transpose()
}

/// A tenant's page of `table` (newest first) and the count of all its rows there.
async fn page_of<B: Backend, T>(
    b: &B,
    select: &str,
    table: &str,
    tenant: &str,
    after: Option<Cursor>,
    limit: i64,
    item: fn(&B::Row) -> Result<T>,
) -> Result<Page<T>> {
    let after = after.unwrap_or_else(Cursor::start);
    let q = format!(
        "SELECT {select} FROM {table} WHERE tenant = $1 AND seq < {} ORDER BY seq DESC LIMIT $4",
        page_start(table, "id", "$1", "$2", "$3")
    );
    let rows = b
        .all(
            &q,
            vec![
                Arg::Text(tenant.to_owned()),
                Arg::OptUuid(Uuid::parse_str(&after.key).ok()),
                Arg::Int(after.created_at),
                Arg::Int(limit),
            ],
        )
        .await?;
    let total = count(
        b,
        &format!("SELECT COUNT(*) AS n FROM {table} WHERE tenant = $1"),
        tenant,
    )
    .await?;
    page(&rows, item, limit, total)
}

async fn count<B: Backend>(b: &B, sql: &str, tenant: &str) -> Result<i64> {
    b.one(sql, vec![Arg::Text(tenant.to_owned())])
        .await?
        .int("n")
}

pub(super) async fn get_dataset<B: Backend>(b: &B, id: Uuid) -> Result<Option<DatasetRecord>> {
    let q = format!("SELECT {DATASET_COLS} FROM datasets WHERE id = $1");
    b.opt(&q, vec![Arg::Uuid(id)])
        .await?
        .map(|r| dataset(&r))
        .transpose()
}

pub(super) async fn list_datasets<B: Backend>(
    b: &B,
    tenant: &str,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Page<DatasetRecord>> {
    page_of(b, DATASET_COLS, "datasets", tenant, after, limit, dataset).await
}

pub(super) async fn delete_dataset<B: Backend>(b: &B, id: Uuid) -> Result<bool> {
    let n = b
        .run(
            "DELETE FROM datasets WHERE id = $1 AND NOT EXISTS (
                SELECT 1 FROM jobs WHERE status IN ('queued', 'running')
                AND (dataset_id = $1 OR spec->>'validation_dataset_id' = $1::text))
             AND NOT EXISTS (
                SELECT 1 FROM sweeps WHERE status IN ('queued', 'running') AND dataset_id = $1)",
            vec![Arg::Uuid(id)],
        )
        .await?;
    Ok(n > 0)
}

pub(super) async fn jobs_using_dataset<B: Backend>(
    b: &B,
    id: Uuid,
    limit: i64,
) -> Result<Vec<Uuid>> {
    let rows = b
        .all(
            "SELECT id FROM jobs WHERE status IN ('queued', 'running')
             AND (dataset_id = $1 OR spec->>'validation_dataset_id' = $1::text)
             ORDER BY created_at, id LIMIT $2",
            vec![Arg::Uuid(id), Arg::Int(limit)],
        )
        .await?;
    ids(&rows)
}

pub(super) async fn get_job<B: Backend>(b: &B, id: Uuid) -> Result<Option<JobRecord>> {
    b.opt("SELECT * FROM jobs WHERE id = $1", vec![Arg::Uuid(id)])
        .await?
        .map(|r| job(&r))
        .transpose()
}

pub(super) async fn list_jobs<B: Backend>(
    b: &B,
    tenant: &str,
    status: Option<JobStatus>,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Page<JobRecord>> {
    let after = after.unwrap_or_else(Cursor::start);
    let status = status.map(|s| s.as_str().to_owned());
    let q = format!(
        "SELECT * FROM jobs WHERE tenant = $1 AND seq < {} AND ($4::text IS NULL OR status = $4)
         ORDER BY seq DESC LIMIT $5",
        page_start("jobs", "id", "$1", "$2", "$3")
    );
    let rows = b
        .all(
            &q,
            vec![
                Arg::Text(tenant.to_owned()),
                Arg::OptUuid(Uuid::parse_str(&after.key).ok()),
                Arg::Int(after.created_at),
                Arg::OptText(status.clone()),
                Arg::Int(limit),
            ],
        )
        .await?;
    let total = b
        .one(
            "SELECT COUNT(*) AS n FROM jobs WHERE tenant = $1 AND ($2::text IS NULL OR status = $2)",
            vec![Arg::Text(tenant.to_owned()), Arg::OptText(status)],
        )
        .await?
        .int("n")?;
    page(&rows, job, limit, total)
}

pub(super) async fn delete_job<B: Backend>(b: &B, id: Uuid) -> Result<bool> {
    let n = b
        .run(
            "DELETE FROM jobs WHERE id = $1 AND status <> 'running'",
            vec![Arg::Uuid(id)],
        )
        .await?;
    Ok(n > 0)
}

pub(super) async fn queue_position<B: Backend>(b: &B, id: Uuid) -> Result<Option<i64>> {
    b.opt(
        "SELECT (SELECT COUNT(*) FROM jobs o WHERE o.status = 'queued' AND o.tenant = j.tenant
                   AND (o.priority > j.priority OR (o.priority = j.priority AND o.seq < j.seq))) AS pos
         FROM jobs j WHERE j.id = $1 AND j.status = 'queued'",
        vec![Arg::Uuid(id)],
    )
    .await?
    .map(|r| r.int("pos"))
    .transpose()
}

pub(super) async fn waiting_tenants<B: Backend>(b: &B) -> Result<Vec<String>> {
    let rows = b
        .all(
            "SELECT DISTINCT tenant FROM jobs WHERE status = 'queued'",
            vec![],
        )
        .await?;
    rows.iter().map(|r| r.text("tenant")).collect()
}

pub(super) async fn count_jobs<B: Backend>(b: &B, status: JobStatus) -> Result<i64> {
    b.one(
        "SELECT COUNT(*) AS n FROM jobs WHERE status = $1",
        vec![Arg::Text(status.as_str().to_owned())],
    )
    .await?
    .int("n")
}

pub(super) async fn load_checkpoint<B: Backend>(b: &B, id: Uuid) -> Result<Option<(i64, Vec<u8>)>> {
    let r = b
        .opt(
            "SELECT epoch, state FROM checkpoints WHERE job_id = $1",
            vec![Arg::Uuid(id)],
        )
        .await?;
    epoch_and_state(r)
}

pub(super) async fn final_state<B: Backend>(b: &B, id: Uuid) -> Result<Option<(i64, Vec<u8>)>> {
    let r = b
        .opt(
            "SELECT epoch, state FROM final_states WHERE job_id = $1",
            vec![Arg::Uuid(id)],
        )
        .await?;
    epoch_and_state(r)
}

pub(super) async fn lr_range_test<B: Backend>(
    b: &B,
    id: Uuid,
) -> Result<Option<serde_json::Value>> {
    b.opt(
        "SELECT result FROM lr_range_tests WHERE job_id = $1",
        vec![Arg::Uuid(id)],
    )
    .await?
    .map(|r| r.json("result"))
    .transpose()
}

pub(super) async fn get_model<B: Backend>(b: &B, id: Uuid) -> Result<Option<ModelRecord>> {
    let q = format!("SELECT {MODEL_COLS} FROM models WHERE id = $1");
    b.opt(&q, vec![Arg::Uuid(id)])
        .await?
        .map(|r| model(&r))
        .transpose()
}

pub(super) async fn list_models<B: Backend>(
    b: &B,
    tenant: &str,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Page<ModelRecord>> {
    page_of(b, MODEL_COLS, "models", tenant, after, limit, model).await
}

pub(super) async fn delete_model<B: Backend>(b: &B, id: Uuid) -> Result<bool> {
    let n = b
        .run(
            "DELETE FROM models WHERE id = $1 AND NOT EXISTS (
                SELECT 1 FROM jobs WHERE status IN ('queued', 'running')
                AND spec->>'init_model_id' = $1::text)",
            vec![Arg::Uuid(id)],
        )
        .await?;
    Ok(n > 0)
}

pub(super) async fn jobs_using_model<B: Backend>(b: &B, id: Uuid, limit: i64) -> Result<Vec<Uuid>> {
    let rows = b
        .all(
            "SELECT id FROM jobs WHERE status IN ('queued', 'running')
             AND spec->>'init_model_id' = $1::text
             ORDER BY created_at, id LIMIT $2",
            vec![Arg::Uuid(id), Arg::Int(limit)],
        )
        .await?;
    ids(&rows)
}

pub(super) async fn get_sweep<B: Backend>(b: &B, id: Uuid) -> Result<Option<SweepRecord>> {
    b.opt("SELECT * FROM sweeps WHERE id = $1", vec![Arg::Uuid(id)])
        .await?
        .map(|r| sweep(&r))
        .transpose()
}

pub(super) async fn list_sweeps<B: Backend>(
    b: &B,
    tenant: &str,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Page<SweepRecord>> {
    page_of(b, "*", "sweeps", tenant, after, limit, sweep).await
}

pub(super) async fn unfinished_sweeps<B: Backend>(b: &B) -> Result<Vec<SweepRecord>> {
    let rows = b
        .all(
            "SELECT * FROM sweeps WHERE status IN ('queued', 'running') ORDER BY seq",
            vec![],
        )
        .await?;
    rows.iter().map(sweep).collect()
}

pub(super) async fn sweep_trials<B: Backend>(b: &B, id: Uuid) -> Result<Vec<TrialRecord>> {
    let rows = b
        .all(
            "SELECT * FROM sweep_trials WHERE sweep_id = $1 ORDER BY trial, rung",
            vec![Arg::Uuid(id)],
        )
        .await?;
    rows.iter().map(trial).collect()
}

pub(super) async fn sweeps_using_dataset<B: Backend>(
    b: &B,
    id: Uuid,
    limit: i64,
) -> Result<Vec<Uuid>> {
    let rows = b
        .all(
            "SELECT id FROM sweeps WHERE status IN ('queued', 'running') AND dataset_id = $1
             ORDER BY seq LIMIT $2",
            vec![Arg::Uuid(id), Arg::Int(limit)],
        )
        .await?;
    ids(&rows)
}

pub(super) async fn get_deployment<B: Backend>(
    b: &B,
    tenant: &str,
    name: &str,
) -> Result<Option<DeploymentRecord>> {
    let q = format!("SELECT {DEPLOYMENT_COLS} FROM deployments WHERE tenant = $1 AND name = $2");
    b.opt(
        &q,
        vec![Arg::Text(tenant.to_owned()), Arg::Text(name.to_owned())],
    )
    .await?
    .map(|r| deployment(&r))
    .transpose()
}

pub(super) async fn list_deployments<B: Backend>(
    b: &B,
    tenant: &str,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Page<DeploymentRecord>> {
    let after = after.unwrap_or_else(Cursor::start);
    let q = format!(
        "SELECT {DEPLOYMENT_COLS} FROM deployments WHERE tenant = $1 AND seq < {} ORDER BY seq DESC LIMIT $4",
        page_start("deployments", "name", "$1", "$2", "$3")
    );
    let rows = b
        .all(
            &q,
            vec![
                Arg::Text(tenant.to_owned()),
                Arg::Text(after.key.clone()),
                Arg::Int(after.created_at),
                Arg::Int(limit),
            ],
        )
        .await?;
    let total = count(
        b,
        "SELECT COUNT(*) AS n FROM deployments WHERE tenant = $1",
        tenant,
    )
    .await?;
    page_keyed(&rows, deployment, limit, total, |r| r.text("name"))
}

pub(super) async fn deployment_versions<B: Backend>(
    b: &B,
    tenant: &str,
    name: &str,
    limit: i64,
) -> Result<Vec<DeploymentVersion>> {
    let rows = b
        .all(
            "SELECT version, model_id, created_at FROM deployment_versions
             WHERE tenant = $1 AND name = $2 ORDER BY version DESC LIMIT $3",
            vec![
                Arg::Text(tenant.to_owned()),
                Arg::Text(name.to_owned()),
                Arg::Int(limit),
            ],
        )
        .await?;
    rows.iter().map(version_row).collect()
}

pub(super) async fn deployment_version<B: Backend>(
    b: &B,
    tenant: &str,
    name: &str,
    version: i64,
) -> Result<Option<DeploymentVersion>> {
    b.opt(
        "SELECT version, model_id, created_at FROM deployment_versions
         WHERE tenant = $1 AND name = $2 AND version = $3",
        vec![
            Arg::Text(tenant.to_owned()),
            Arg::Text(name.to_owned()),
            Arg::Int(version),
        ],
    )
    .await?
    .map(|r| version_row(&r))
    .transpose()
}

pub(super) async fn deployments_of_model<B: Backend>(b: &B, model_id: Uuid) -> Result<Vec<String>> {
    let rows = b
        .all(
            "SELECT name FROM deployments WHERE model_id = $1 ORDER BY name LIMIT 10",
            vec![Arg::Uuid(model_id)],
        )
        .await?;
    rows.iter().map(|r| r.text("name")).collect()
}

pub(super) async fn get_batch<B: Backend>(b: &B, id: Uuid) -> Result<Option<BatchRecord>> {
    let q = format!("SELECT {BATCH_COLS} FROM batch_predictions WHERE id = $1");
    b.opt(&q, vec![Arg::Uuid(id)])
        .await?
        .map(|r| batch(&r))
        .transpose()
}

pub(super) async fn batch_chunk<B: Backend>(b: &B, id: Uuid, seq: i64) -> Result<Option<String>> {
    b.opt(
        "SELECT csv FROM batch_prediction_chunks WHERE batch_id = $1 AND seq = $2",
        vec![Arg::Uuid(id), Arg::Int(seq)],
    )
    .await?
    .map(|r| r.text("csv"))
    .transpose()
}

pub(super) async fn insert_job<B: Backend>(b: &B, j: &JobRecord) -> Result<()> {
    b.run(
        "INSERT INTO jobs (id, status, priority, dataset_id, spec, epochs, created_at, tenant)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        vec![
            Arg::Uuid(j.id),
            Arg::Text(j.status.as_str().to_owned()),
            Arg::Int32(j.priority),
            Arg::OptUuid(j.dataset_id),
            Arg::Json(j.spec.to_value()),
            Arg::Int(j.epochs),
            Arg::Int(j.created_at),
            Arg::Text(j.tenant.clone()),
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn release_job<B: Backend>(b: &B, id: Uuid, attempt: i64) -> Result<bool> {
    let n = b
        .run(
            "UPDATE jobs SET status = 'queued', worker = NULL, lease_expires_at = NULL
             WHERE id = $1 AND attempt = $2 AND status = 'running'",
            vec![Arg::Uuid(id), Arg::Int(attempt)],
        )
        .await?;
    Ok(n > 0)
}

pub(super) async fn history<B: Backend>(
    b: &B,
    id: Uuid,
    since: i64,
    limit: i64,
) -> Result<Vec<serde_json::Value>> {
    let rows = b
        .all(
            "SELECT record FROM epochs WHERE job_id = $1 AND epoch > $2 ORDER BY epoch LIMIT $3",
            vec![Arg::Uuid(id), Arg::Int(since), Arg::Int(limit)],
        )
        .await?;
    rows.iter().map(|r| r.json("record")).collect()
}

pub(super) async fn idempotent_answer<B: Backend>(
    b: &B,
    tenant: &str,
    route: &str,
    key: &str,
) -> Result<Option<IdempotentAnswer>> {
    b.opt(
        "SELECT fingerprint, status, location, body FROM idempotency
         WHERE tenant = $1 AND route = $2 AND key = $3 AND created_at > $4",
        vec![
            Arg::Text(tenant.to_owned()),
            Arg::Text(route.to_owned()),
            Arg::Text(key.to_owned()),
            Arg::Int(now_ms() - IDEMPOTENCY_TTL_MS),
        ],
    )
    .await?
    .map(|r| {
        Ok(IdempotentAnswer {
            fingerprint: r.text("fingerprint")?,
            status: r.int32("status")? as u16,
            location: r.opt_text("location")?,
            body: r.json("body")?,
        })
    })
    .transpose()
}

pub(super) async fn forget_reservation<B: Backend>(
    b: &B,
    tenant: &str,
    route: &str,
    key: &str,
    fingerprint: &str,
) -> Result<()> {
    b.run(
        "DELETE FROM idempotency
         WHERE tenant = $1 AND route = $2 AND key = $3 AND fingerprint = $4 AND status = 0",
        vec![
            Arg::Text(tenant.to_owned()),
            Arg::Text(route.to_owned()),
            Arg::Text(key.to_owned()),
            Arg::Text(fingerprint.to_owned()),
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn insert_sweep<B: Backend>(b: &B, s: &SweepRecord) -> Result<()> {
    b.run(
        "INSERT INTO sweeps (id, tenant, dataset_id, status, spec, best, created_at, finished_at, cancel_requested)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        vec![
            Arg::Uuid(s.id),
            Arg::Text(s.tenant.clone()),
            Arg::Uuid(s.dataset_id),
            Arg::Text(s.status.as_str().to_owned()),
            Arg::Json(s.spec.clone()),
            Arg::OptJson(s.best.clone()),
            Arg::Int(s.created_at),
            Arg::OptInt(s.finished_at),
            Arg::Flag(s.cancel_requested),
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn update_sweep<B: Backend>(
    b: &B,
    id: Uuid,
    status: JobStatus,
    best: Option<&serde_json::Value>,
) -> Result<bool> {
    let n = b
        .run(
            "UPDATE sweeps SET status = $1, best = $2, finished_at = $3
             WHERE id = $4 AND status IN ('queued', 'running')",
            vec![
                Arg::Text(status.as_str().to_owned()),
                Arg::OptJson(best.cloned()),
                Arg::OptInt(status.is_terminal().then(now_ms)),
                Arg::Uuid(id),
            ],
        )
        .await?;
    Ok(n > 0)
}

pub(super) async fn request_sweep_cancel<B: Backend>(b: &B, id: Uuid) -> Result<bool> {
    let n = b
        .run(
            "UPDATE sweeps SET cancel_requested = $2 WHERE id = $1 AND status IN ('queued', 'running')",
            vec![Arg::Uuid(id), Arg::Flag(true)],
        )
        .await?;
    Ok(n > 0)
}

pub(super) async fn delete_sweep<B: Backend>(b: &B, id: Uuid) -> Result<bool> {
    Ok(
        b.run("DELETE FROM sweeps WHERE id = $1", vec![Arg::Uuid(id)])
            .await?
            > 0,
    )
}

pub(super) async fn insert_batch<B: Backend>(b: &B, r: &BatchRecord) -> Result<()> {
    b.run(
        "INSERT INTO batch_predictions (id, tenant, model_id, dataset_id, status, rows_total, rows_done, error, created_at, updated_at, finished_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        vec![
            Arg::Uuid(r.id),
            Arg::Text(r.tenant.clone()),
            Arg::Uuid(r.model_id),
            Arg::Uuid(r.dataset_id),
            Arg::Text(r.status.clone()),
            Arg::Int(r.rows_total),
            Arg::Int(r.rows_done),
            Arg::OptText(r.error.clone()),
            Arg::Int(r.created_at),
            Arg::Int(r.updated_at),
            Arg::OptInt(r.finished_at),
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn finish_batch<B: Backend>(
    b: &B,
    id: Uuid,
    status: &str,
    error: Option<&str>,
    now: i64,
) -> Result<bool> {
    let n = b
        .run(
            "UPDATE batch_predictions SET status = $1, error = $2, finished_at = $3, updated_at = $3
             WHERE id = $4 AND status = 'running'",
            vec![
                Arg::Text(status.to_owned()),
                Arg::OptText(error.map(str::to_owned)),
                Arg::Int(now),
                Arg::Uuid(id),
            ],
        )
        .await?;
    Ok(n > 0)
}

pub(super) async fn request_cancel<B: Backend>(b: &B, id: Uuid) -> Result<Option<JobRecord>> {
    // Matches any job with this id, so RETURNING gives the job after in one statement.
    b.opt(
        "UPDATE jobs SET status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
                stop_reason = CASE WHEN status = 'queued' THEN 'cancelled' ELSE stop_reason END,
                finished_at = CASE WHEN status = 'queued' THEN $1 ELSE finished_at END,
                cancel_requested = CASE WHEN status IN ('queued', 'running') THEN $3
                                        ELSE cancel_requested END
         WHERE id = $2
         RETURNING *",
        vec![Arg::Int(now_ms()), Arg::Uuid(id), Arg::Flag(true)],
    )
    .await?
    .map(|r| job(&r))
    .transpose()
}

pub(super) async fn request_stop<B: Backend>(b: &B, id: Uuid) -> Result<Option<JobRecord>> {
    b.opt(
        "UPDATE jobs SET stop_requested = (stop_requested OR status IN ('queued', 'running'))
         WHERE id = $1
         RETURNING *",
        vec![Arg::Uuid(id)],
    )
    .await?
    .map(|r| job(&r))
    .transpose()
}

pub(super) async fn delete_deployment<B: Backend>(b: &B, tenant: &str, name: &str) -> Result<bool> {
    let args = || vec![Arg::Text(tenant.to_owned()), Arg::Text(name.to_owned())];
    let n = b
        .run_all(
            vec![
                (
                    "DELETE FROM deployments WHERE tenant = $1 AND name = $2",
                    args(),
                ),
                (
                    "DELETE FROM deployment_versions WHERE tenant = $1 AND name = $2",
                    args(),
                ),
            ],
            false,
        )
        .await?;
    Ok(n[0] > 0)
}

pub(super) async fn append_batch_chunk<B: Backend>(
    b: &B,
    id: Uuid,
    seq: i64,
    csv: &str,
    rows_done: i64,
    now: i64,
) -> Result<bool> {
    let n = b
        .run_all(
            vec![
                (
                    "UPDATE batch_predictions SET rows_done = $1, updated_at = $2
                     WHERE id = $3 AND status = 'running'",
                    vec![Arg::Int(rows_done), Arg::Int(now), Arg::Uuid(id)],
                ),
                (
                    "INSERT INTO batch_prediction_chunks (batch_id, seq, csv) VALUES ($1, $2, $3)",
                    vec![Arg::Uuid(id), Arg::Int(seq), Arg::Text(csv.to_owned())],
                ),
            ],
            true,
        )
        .await?;
    Ok(n.len() == 2)
}

/// What each database does its own way: connection details, claiming and fencing, blobs
/// written as they arrive, the storage accounting. Everything else is the `Store` below,
/// written once over [`Backend`].
#[async_trait]
pub(super) trait Dialect: Backend + 'static {
    async fn ping(&self) -> Result<()>;
    async fn insert_dataset_parts(&self, d: &DatasetRecord, parts: Parts) -> Result<()>;
    async fn write_dataset(&self, id: Uuid, tenant: &str, writes: DatasetWrites) -> Result<bool>;
    async fn dataset_data(&self, id: Uuid) -> Result<Option<Vec<u8>>>;
    async fn usage(&self, tenant: &str) -> Result<Usage>;
    async fn remember_answer(
        &self,
        tenant: &str,
        route: &str,
        key: &str,
        a: &IdempotentAnswer,
    ) -> Result<()>;
    async fn claim_next_job(
        &self,
        worker: &str,
        lease_ms: i64,
        max_running_per_tenant: i64,
        suspects: bool,
    ) -> Result<Option<JobRecord>>;
    async fn renew_lease(&self, id: Uuid, attempt: i64, lease_ms: i64) -> Result<bool>;
    async fn requeue_running(&self, only_expired: bool) -> Result<u64>;
    async fn record_epoch(
        &self,
        id: Uuid,
        attempt: i64,
        record: &serde_json::Value,
        epoch: i64,
    ) -> Result<bool>;
    async fn save_checkpoint(
        &self,
        id: Uuid,
        attempt: i64,
        epoch: i64,
        state: &[u8],
    ) -> Result<bool>;
    async fn truncate_history(&self, id: Uuid, attempt: i64, epoch: i64) -> Result<bool>;
    async fn finish_job(&self, id: Uuid, attempt: i64, finish: Finish) -> Result<bool>;
    async fn insert_model(&self, m: &ModelRecord) -> Result<()>;
    async fn deploy(
        &self,
        tenant: &str,
        name: &str,
        model_id: Uuid,
        expected: Option<i64>,
        now: i64,
    ) -> Result<Option<DeploymentRecord>>;
    async fn insert_job_from(
        &self,
        j: &JobRecord,
        from: Option<&Continuation>,
        trial: Option<&TrialRecord>,
    ) -> Result<()>;
    async fn record_lr_range_test(
        &self,
        id: Uuid,
        attempt: i64,
        result: &serde_json::Value,
    ) -> Result<bool>;
    fn pool_use(&self) -> (u32, u32);
}

#[async_trait]
impl<T: Dialect> Store for T {
    async fn ping(&self) -> Result<()> {
        Dialect::ping(self).await
    }

    async fn insert_dataset_parts(&self, d: &DatasetRecord, parts: Parts) -> Result<()> {
        Dialect::insert_dataset_parts(self, d, parts).await
    }

    async fn write_dataset(&self, id: Uuid, tenant: &str, writes: DatasetWrites) -> Result<bool> {
        Dialect::write_dataset(self, id, tenant, writes).await
    }

    async fn get_dataset(&self, id: Uuid) -> Result<Option<DatasetRecord>> {
        get_dataset(self, id).await
    }

    async fn dataset_data(&self, id: Uuid) -> Result<Option<Vec<u8>>> {
        Dialect::dataset_data(self, id).await
    }

    async fn list_datasets(
        &self,
        tenant: &str,
        after: Option<Cursor>,
        limit: i64,
    ) -> Result<Page<DatasetRecord>> {
        list_datasets(self, tenant, after, limit).await
    }

    async fn delete_dataset(&self, id: Uuid) -> Result<bool> {
        delete_dataset(self, id).await
    }

    async fn jobs_using_dataset(&self, id: Uuid, limit: i64) -> Result<Vec<Uuid>> {
        jobs_using_dataset(self, id, limit).await
    }

    async fn insert_job(&self, j: &JobRecord) -> Result<()> {
        insert_job(self, j).await
    }

    async fn get_job(&self, id: Uuid) -> Result<Option<JobRecord>> {
        get_job(self, id).await
    }

    async fn list_jobs(
        &self,
        tenant: &str,
        status: Option<JobStatus>,
        after: Option<Cursor>,
        limit: i64,
    ) -> Result<Page<JobRecord>> {
        list_jobs(self, tenant, status, after, limit).await
    }

    async fn delete_job(&self, id: Uuid) -> Result<bool> {
        delete_job(self, id).await
    }

    async fn queue_position(&self, id: Uuid) -> Result<Option<i64>> {
        queue_position(self, id).await
    }

    async fn count_jobs(&self, status: JobStatus) -> Result<i64> {
        count_jobs(self, status).await
    }

    async fn waiting_tenants(&self) -> Result<Vec<String>> {
        waiting_tenants(self).await
    }

    async fn usage(&self, tenant: &str) -> Result<Usage> {
        Dialect::usage(self, tenant).await
    }

    async fn idempotent_answer(
        &self,
        tenant: &str,
        route: &str,
        key: &str,
    ) -> Result<Option<IdempotentAnswer>> {
        idempotent_answer(self, tenant, route, key).await
    }

    async fn remember_answer(
        &self,
        tenant: &str,
        route: &str,
        key: &str,
        a: &IdempotentAnswer,
    ) -> Result<()> {
        Dialect::remember_answer(self, tenant, route, key, a).await
    }

    async fn forget_reservation(
        &self,
        tenant: &str,
        route: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<()> {
        forget_reservation(self, tenant, route, key, fingerprint).await
    }

    async fn claim_next_job(
        &self,
        worker: &str,
        lease_ms: i64,
        max_running_per_tenant: i64,
        suspects: bool,
    ) -> Result<Option<JobRecord>> {
        Dialect::claim_next_job(self, worker, lease_ms, max_running_per_tenant, suspects).await
    }

    async fn renew_lease(&self, id: Uuid, attempt: i64, lease_ms: i64) -> Result<bool> {
        Dialect::renew_lease(self, id, attempt, lease_ms).await
    }

    async fn requeue_running(&self, only_expired: bool) -> Result<u64> {
        Dialect::requeue_running(self, only_expired).await
    }

    async fn release_job(&self, id: Uuid, attempt: i64) -> Result<bool> {
        release_job(self, id, attempt).await
    }

    async fn record_epoch(
        &self,
        id: Uuid,
        attempt: i64,
        record: &serde_json::Value,
        epoch: i64,
    ) -> Result<bool> {
        Dialect::record_epoch(self, id, attempt, record, epoch).await
    }

    async fn history(&self, id: Uuid, since: i64, limit: i64) -> Result<Vec<serde_json::Value>> {
        history(self, id, since, limit).await
    }

    async fn save_checkpoint(
        &self,
        id: Uuid,
        attempt: i64,
        epoch: i64,
        state: &[u8],
    ) -> Result<bool> {
        Dialect::save_checkpoint(self, id, attempt, epoch, state).await
    }

    async fn load_checkpoint(&self, id: Uuid) -> Result<Option<(i64, Vec<u8>)>> {
        load_checkpoint(self, id).await
    }

    async fn truncate_history(&self, id: Uuid, attempt: i64, epoch: i64) -> Result<bool> {
        Dialect::truncate_history(self, id, attempt, epoch).await
    }

    async fn finish_job(&self, id: Uuid, attempt: i64, finish: Finish) -> Result<bool> {
        Dialect::finish_job(self, id, attempt, finish).await
    }

    async fn request_cancel(&self, id: Uuid) -> Result<Option<JobRecord>> {
        request_cancel(self, id).await
    }

    async fn request_stop(&self, id: Uuid) -> Result<Option<JobRecord>> {
        request_stop(self, id).await
    }

    async fn insert_model(&self, m: &ModelRecord) -> Result<()> {
        Dialect::insert_model(self, m).await
    }

    async fn get_model(&self, id: Uuid) -> Result<Option<ModelRecord>> {
        get_model(self, id).await
    }

    async fn list_models(
        &self,
        tenant: &str,
        after: Option<Cursor>,
        limit: i64,
    ) -> Result<Page<ModelRecord>> {
        list_models(self, tenant, after, limit).await
    }

    async fn delete_model(&self, id: Uuid) -> Result<bool> {
        delete_model(self, id).await
    }

    async fn deploy(
        &self,
        tenant: &str,
        name: &str,
        model_id: Uuid,
        expected: Option<i64>,
        now: i64,
    ) -> Result<Option<DeploymentRecord>> {
        Dialect::deploy(self, tenant, name, model_id, expected, now).await
    }

    async fn get_deployment(&self, tenant: &str, name: &str) -> Result<Option<DeploymentRecord>> {
        get_deployment(self, tenant, name).await
    }

    async fn list_deployments(
        &self,
        tenant: &str,
        after: Option<Cursor>,
        limit: i64,
    ) -> Result<Page<DeploymentRecord>> {
        list_deployments(self, tenant, after, limit).await
    }

    async fn deployment_versions(
        &self,
        tenant: &str,
        name: &str,
        limit: i64,
    ) -> Result<Vec<DeploymentVersion>> {
        deployment_versions(self, tenant, name, limit).await
    }

    async fn deployment_version(
        &self,
        tenant: &str,
        name: &str,
        version: i64,
    ) -> Result<Option<DeploymentVersion>> {
        deployment_version(self, tenant, name, version).await
    }

    async fn delete_deployment(&self, tenant: &str, name: &str) -> Result<bool> {
        delete_deployment(self, tenant, name).await
    }

    async fn deployments_of_model(&self, model_id: Uuid) -> Result<Vec<String>> {
        deployments_of_model(self, model_id).await
    }

    async fn insert_batch(&self, b: &BatchRecord) -> Result<()> {
        insert_batch(self, b).await
    }

    async fn get_batch(&self, id: Uuid) -> Result<Option<BatchRecord>> {
        get_batch(self, id).await
    }

    async fn append_batch_chunk(
        &self,
        id: Uuid,
        seq: i64,
        csv: &str,
        rows_done: i64,
        now: i64,
    ) -> Result<bool> {
        append_batch_chunk(self, id, seq, csv, rows_done, now).await
    }

    async fn finish_batch(
        &self,
        id: Uuid,
        status: &str,
        error: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        finish_batch(self, id, status, error, now).await
    }

    async fn batch_chunk(&self, id: Uuid, seq: i64) -> Result<Option<String>> {
        batch_chunk(self, id, seq).await
    }

    async fn insert_job_from(
        &self,
        j: &JobRecord,
        from: Option<&Continuation>,
        trial: Option<&TrialRecord>,
    ) -> Result<()> {
        Dialect::insert_job_from(self, j, from, trial).await
    }

    async fn final_state(&self, id: Uuid) -> Result<Option<(i64, Vec<u8>)>> {
        final_state(self, id).await
    }

    async fn record_lr_range_test(
        &self,
        id: Uuid,
        attempt: i64,
        result: &serde_json::Value,
    ) -> Result<bool> {
        Dialect::record_lr_range_test(self, id, attempt, result).await
    }

    async fn lr_range_test(&self, id: Uuid) -> Result<Option<serde_json::Value>> {
        lr_range_test(self, id).await
    }

    async fn jobs_using_model(&self, id: Uuid, limit: i64) -> Result<Vec<Uuid>> {
        jobs_using_model(self, id, limit).await
    }

    async fn insert_sweep(&self, s: &SweepRecord) -> Result<()> {
        insert_sweep(self, s).await
    }

    async fn get_sweep(&self, id: Uuid) -> Result<Option<SweepRecord>> {
        get_sweep(self, id).await
    }

    async fn list_sweeps(
        &self,
        tenant: &str,
        after: Option<Cursor>,
        limit: i64,
    ) -> Result<Page<SweepRecord>> {
        list_sweeps(self, tenant, after, limit).await
    }

    async fn unfinished_sweeps(&self) -> Result<Vec<SweepRecord>> {
        unfinished_sweeps(self).await
    }

    async fn update_sweep(
        &self,
        id: Uuid,
        status: JobStatus,
        best: Option<&serde_json::Value>,
    ) -> Result<bool> {
        update_sweep(self, id, status, best).await
    }

    async fn request_sweep_cancel(&self, id: Uuid) -> Result<bool> {
        request_sweep_cancel(self, id).await
    }

    async fn sweep_trials(&self, id: Uuid) -> Result<Vec<TrialRecord>> {
        sweep_trials(self, id).await
    }

    async fn delete_sweep(&self, id: Uuid) -> Result<bool> {
        delete_sweep(self, id).await
    }

    async fn sweeps_using_dataset(&self, id: Uuid, limit: i64) -> Result<Vec<Uuid>> {
        sweeps_using_dataset(self, id, limit).await
    }

    fn pool_use(&self) -> (u32, u32) {
        Dialect::pool_use(self)
    }
}

#[cfg(test)]
mod tests {
    use super::for_sqlite;

    #[test]
    fn sqlite_gets_numbered_parameters_without_casts() {
        assert_eq!(
            for_sqlite(
                "SELECT * FROM t WHERE a = $1 AND ($2::text IS NULL OR b = $2) AND c->>'x' = $1::text AND d = '$.y' AND e = $10"
            ),
            "SELECT * FROM t WHERE a = ?1 AND (?2 IS NULL OR b = ?2) AND c->>'x' = ?1 AND d = '$.y' AND e = ?10"
        );
        assert_eq!(for_sqlite("é $1"), "é ?1");
    }
}
