//! The store's statements, written once for both databases in the form `sql` describes,
//! as functions over a [`Backend`] (and its [`Tx`] where statements must happen together).
//! Each backend's `Store` is these and its own `Dialect`. Here: the helpers and every
//! resource but jobs (datasets, models, deployments, sweeps, batch predictions, idempotency
//! keys); `jobs`: a training job's life, from its insert through claims, epochs and
//! checkpoints to its finish.

use uuid::Uuid;

use super::rows::{
    BATCH_COLS, Columns, DATASET_COLS, DEPLOYMENT_COLS, MODEL_COLS, MODEL_SUMMARY_COLS, batch,
    dataset, deployment, deployment_version as version_row, model, model_summary, page, page_keyed,
    page_start, parts_capacity, sweep, trial,
};
use super::sql::{Arg, Backend, Tx};
use super::{
    BatchRecord, Cursor, DatasetRecord, DeploymentRecord, DeploymentVersion, IDEMPOTENCY_TTL_MS,
    IdempotentAnswer, JobStatus, ListFilter, ModelRecord, Page, Result, SweepRecord, TrialRecord,
};
use crate::clock::now_ms;

mod jobs;
pub(super) use jobs::*;

pub(super) async fn ping<B: Backend>(b: &B) -> Result<()> {
    b.run("SELECT 1", vec![]).await?;
    Ok(())
}

/// Runs `statements` in one transaction, in order, and commits; with `all_or_none`, the first
/// that changes no row rolls the transaction back. The rows each one changed (as far as it
/// got).
async fn run_all<B: Backend>(
    b: &B,
    statements: Vec<(&str, Vec<Arg<'_>>)>,
    all_or_none: bool,
) -> Result<Vec<u64>> {
    let mut tx = b.begin().await?;
    let mut changed = Vec::with_capacity(statements.len());
    for (sql, args) in statements {
        let n = tx.run(sql, args).await?;
        changed.push(n);
        if all_or_none && n == 0 {
            // Dropped without a commit: rolled back.
            return Ok(changed);
        }
    }
    tx.commit().await?;
    Ok(changed)
}

fn ids<R: Columns>(rows: &[R]) -> Result<Vec<Uuid>> {
    rows.iter().map(|r| r.uuid("id")).collect()
}

/// Which of a tenant's rows a listing keeps: a condition whose parameters are numbered from
/// the one it is given, and their values. [`Filter::ALL`] keeps every row.
pub(in crate::store) struct Filter<'a> {
    pub sql: &'a (dyn Fn(usize) -> String + Sync),
    pub args: Vec<Arg<'static>>,
}

impl Filter<'_> {
    const ALL: Filter<'static> = Filter {
        sql: &|_| "1 = 1".to_owned(),
        args: vec![],
    };
}

/// A tenant's page of `table` (newest first) among the rows `filter` keeps, and the count of
/// all those rows.
#[allow(clippy::too_many_arguments)]
pub(in crate::store) async fn page_of<B: Backend, T>(
    b: &B,
    select: &str,
    table: &str,
    tenant: &str,
    filter: Filter<'_>,
    after: Option<Cursor>,
    limit: i64,
    item: fn(&B::Row) -> Result<T>,
) -> Result<Page<T>> {
    let after = after.unwrap_or_else(Cursor::start);
    let q = format!(
        "SELECT {select} FROM {table} WHERE tenant = $1 AND seq < {} AND {}
         ORDER BY seq DESC LIMIT $4",
        page_start(table, "id", "$1", "$2", "$3"),
        (filter.sql)(5)
    );
    let mut args = vec![
        Arg::Text(tenant.to_owned()),
        Arg::OptUuid(Uuid::parse_str(&after.key).ok()),
        Arg::Int(after.created_at),
        Arg::Int(limit),
    ];
    args.extend(filter.args.iter().cloned());
    let rows = b.all(&q, args).await?;
    let mut args = vec![Arg::Text(tenant.to_owned())];
    args.extend(filter.args);
    let total = b
        .one(
            &format!(
                "SELECT COUNT(*) AS n FROM {table} WHERE tenant = $1 AND {}",
                (filter.sql)(2)
            ),
            args,
        )
        .await?
        .int("n")?;
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
    page_of(
        b,
        DATASET_COLS,
        "datasets",
        tenant,
        Filter::ALL,
        after,
        limit,
        dataset,
    )
    .await
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

pub(super) async fn dataset_data<B: Backend>(b: &B, id: Uuid) -> Result<Option<Vec<u8>>> {
    // One transaction: the record and its parts as of one moment.
    let mut tx = b.begin().await?;
    let Some(r) = tx
        .opt(
            "SELECT data, size_bytes FROM datasets WHERE id = $1",
            vec![Arg::Uuid(id)],
        )
        .await?
    else {
        return Ok(None);
    };
    // A dataset stored before parts existed holds its bytes itself.
    let data = r.bytes("data")?;
    if !data.is_empty() {
        return Ok(Some(data));
    }
    let mut out = Vec::with_capacity(parts_capacity(r.int("size_bytes")?));
    tx.each(
        "SELECT data FROM dataset_parts WHERE dataset_id = $1 ORDER BY part",
        vec![Arg::Uuid(id)],
        &mut |r| {
            out.extend_from_slice(r.byte_slice("data")?);
            Ok(())
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Some(out))
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
    filter: &ListFilter,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Page<ModelRecord>> {
    let sql = |n: usize| sweep_condition("models", filter, n);
    let keep = Filter {
        sql: &sql,
        args: vec![Arg::OptUuid(filter.sweep_id)],
    };
    page_of(b, MODEL_COLS, "models", tenant, keep, after, limit, model).await
}

pub(super) async fn models_of_dataset<B: Backend>(
    b: &B,
    tenant: &str,
    dataset_id: Uuid,
    limit: i64,
) -> Result<Vec<ModelRecord>> {
    let q = format!(
        "SELECT {MODEL_SUMMARY_COLS} FROM models WHERE tenant = $1 AND dataset_id = $2
         ORDER BY seq DESC LIMIT $3"
    );
    let rows = b
        .all(
            &q,
            vec![
                Arg::Text(tenant.to_owned()),
                Arg::Uuid(dataset_id),
                Arg::Int(limit),
            ],
        )
        .await?;
    rows.iter().map(model_summary).collect()
}

pub(super) async fn update_model_metrics<B: Backend>(
    b: &B,
    id: Uuid,
    metrics: &serde_json::Value,
) -> Result<bool> {
    let n = b
        .run(
            "UPDATE models SET metrics = $2 WHERE id = $1",
            vec![Arg::Uuid(id), Arg::JsonRef(metrics)],
        )
        .await?;
    Ok(n > 0)
}

pub(super) async fn upgrade_tasks<B: Backend>(b: &B) -> Result<Vec<String>> {
    let rows = b
        .all("SELECT name FROM upgrade_tasks ORDER BY name", vec![])
        .await?;
    rows.iter().map(|r| r.text("name")).collect()
}

pub(super) async fn finish_upgrade_task<B: Backend>(b: &B, name: &str) -> Result<()> {
    b.run(
        "DELETE FROM upgrade_tasks WHERE name = $1",
        vec![Arg::Text(name.to_owned())],
    )
    .await?;
    Ok(())
}

pub(super) async fn all_sweeps<B: Backend>(b: &B) -> Result<Vec<SweepRecord>> {
    let rows = b.all("SELECT * FROM sweeps ORDER BY seq", vec![]).await?;
    rows.iter().map(sweep).collect()
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

/// Inserts a model in `tx`.
async fn insert_model_in<T: Tx>(tx: &mut T, m: &ModelRecord) -> Result<()> {
    let mut args = vec![
        Arg::Uuid(m.id),
        Arg::OptText(m.name.clone()),
        Arg::Int(m.created_at),
        Arg::OptUuid(m.job_id),
        Arg::OptUuid(m.dataset_id),
        Arg::Int(m.input_dim),
        Arg::Int(m.output_dim),
        Arg::Int(m.parameter_count),
        Arg::JsonRef(&m.metrics),
        Arg::JsonRef(&m.document),
        Arg::Text(m.tenant.clone()),
    ];
    args.extend(link_args(m.sweep.as_ref()));
    tx.run(
        "INSERT INTO models (id, name, created_at, job_id, dataset_id, input_dim, output_dim, parameter_count, metrics, document, tenant,
                             sweep_id, sweep_role, sweep_trial, sweep_rung, sweep_fold)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        args,
    )
    .await?;
    Ok(())
}

pub(super) async fn insert_model<B: Backend>(b: &B, m: &ModelRecord) -> Result<()> {
    let mut tx = b.begin().await?;
    insert_model_in(&mut tx, m).await?;
    crate::crash::point("model_insert");
    tx.commit().await?;
    Ok(())
}

pub(super) async fn deploy<B: Backend>(
    b: &B,
    tenant: &str,
    name: &str,
    model_id: Uuid,
    expected: Option<i64>,
    now: i64,
) -> Result<Option<DeploymentRecord>> {
    let mut tx = b.begin().await?;
    // The write comes first: in PostgreSQL it locks the deployment's row until the commit,
    // in SQLite it takes the write lock (see `Tx`). Two switches of one name queue up, and
    // each gets its own version.
    let args = || {
        vec![
            Arg::Text(tenant.to_owned()),
            Arg::Text(name.to_owned()),
            Arg::Uuid(model_id),
            Arg::Int(now),
        ]
    };
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
            tx.opt(&q, args()).await?
        }
        Some(v) => {
            let q = format!(
                "UPDATE deployments SET version = version + 1, model_id = $3, updated_at = $4
                 WHERE tenant = $1 AND name = $2 AND version = $5
                 RETURNING {DEPLOYMENT_COLS}"
            );
            let mut args = args();
            args.push(Arg::Int(v));
            tx.opt(&q, args).await?
        }
    };
    let Some(row) = row else {
        return Ok(None);
    };
    let d = deployment(&row)?;
    tx.run(
        "INSERT INTO deployment_versions (tenant, name, version, model_id, created_at)
         VALUES ($1, $2, $3, $4, $5)",
        vec![
            Arg::Text(tenant.to_owned()),
            Arg::Text(name.to_owned()),
            Arg::Int(d.version),
            Arg::Uuid(model_id),
            Arg::Int(now),
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(Some(d))
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

pub(super) async fn delete_deployment<B: Backend>(b: &B, tenant: &str, name: &str) -> Result<bool> {
    let args = || vec![Arg::Text(tenant.to_owned()), Arg::Text(name.to_owned())];
    let n = run_all(
        b,
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
    page_of(b, "*", "sweeps", tenant, Filter::ALL, after, limit, sweep).await
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

pub(super) async fn get_batch<B: Backend>(b: &B, id: Uuid) -> Result<Option<BatchRecord>> {
    let q = format!("SELECT {BATCH_COLS} FROM batch_predictions WHERE id = $1");
    b.opt(&q, vec![Arg::Uuid(id)])
        .await?
        .map(|r| batch(&r))
        .transpose()
}

pub(super) async fn append_batch_chunk<B: Backend>(
    b: &B,
    id: Uuid,
    seq: i64,
    csv: &str,
    rows_done: i64,
    now: i64,
) -> Result<bool> {
    let n = run_all(
        b,
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

pub(super) async fn batch_chunk<B: Backend>(b: &B, id: Uuid, seq: i64) -> Result<Option<String>> {
    b.opt(
        "SELECT csv FROM batch_prediction_chunks WHERE batch_id = $1 AND seq = $2",
        vec![Arg::Uuid(id), Arg::Int(seq)],
    )
    .await?
    .map(|r| r.text("csv"))
    .transpose()
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

pub(super) async fn remember_answer<B: Backend>(
    b: &B,
    tenant: &str,
    route: &str,
    key: &str,
    a: &IdempotentAnswer,
) -> Result<()> {
    b.run(
        "DELETE FROM idempotency WHERE created_at <= $1",
        vec![Arg::Int(now_ms() - IDEMPOTENCY_TTL_MS)],
    )
    .await?;
    b.run(
        "INSERT INTO idempotency (tenant, route, key, fingerprint, status, location, body, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (tenant, route, key) DO UPDATE
            SET status = excluded.status, location = excluded.location, body = excluded.body
            WHERE idempotency.status = 0 AND idempotency.fingerprint = excluded.fingerprint",
        vec![
            Arg::Text(tenant.to_owned()),
            Arg::Text(route.to_owned()),
            Arg::Text(key.to_owned()),
            Arg::Text(a.fingerprint.clone()),
            Arg::Int32(i32::from(a.status)),
            Arg::OptText(a.location.clone()),
            Arg::JsonRef(&a.body),
            Arg::Int(now_ms()),
        ],
    )
    .await?;
    Ok(())
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
