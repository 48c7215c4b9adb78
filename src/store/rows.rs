//! What the two stores share: the column lists, turning a row into a record, and paging.
//! The records are the same whichever database holds them; what differs is how a column of
//! each kind is read, and each backend says that in its [`Columns`] impl: a UUID is TEXT in
//! SQLite and UUID in PostgreSQL, JSON is TEXT and JSONB, a flag INTEGER and BOOLEAN.

use uuid::Uuid;

use super::{
    BatchRecord, Cursor, DatasetRecord, DeploymentRecord, DeploymentVersion, Failure, JobRecord,
    JobSpec, JobStatus, ModelRecord, Page, Result, StoreError, SweepLink, SweepRecord, SweepRole,
    TrialRecord,
};

/// The columns `dataset` reads.
pub(super) const DATASET_COLS: &str =
    "seq, id, tenant, name, created_at, rows, inputs, outputs, meta, size_bytes";
/// The columns `model` reads.
pub(super) const MODEL_COLS: &str = "seq, id, tenant, name, created_at, job_id, dataset_id, input_dim, output_dim, parameter_count, metrics, document, sweep_id, sweep_role, sweep_trial, sweep_rung, sweep_fold";
/// The columns `model_summary` reads: a model without its document.
pub(super) const MODEL_SUMMARY_COLS: &str = "seq, id, tenant, name, created_at, job_id, dataset_id, input_dim, output_dim, parameter_count, metrics, sweep_id, sweep_role, sweep_trial, sweep_rung, sweep_fold";

/// Reading one column of a row, by the kind of value it holds.
pub(super) trait Columns {
    fn text(&self, c: &str) -> Result<String>;
    fn opt_text(&self, c: &str) -> Result<Option<String>>;
    fn int(&self, c: &str) -> Result<i64>;
    fn opt_int(&self, c: &str) -> Result<Option<i64>>;
    fn int32(&self, c: &str) -> Result<i32>;
    fn uuid(&self, c: &str) -> Result<Uuid>;
    fn opt_uuid(&self, c: &str) -> Result<Option<Uuid>>;
    fn json(&self, c: &str) -> Result<serde_json::Value>;
    fn opt_json(&self, c: &str) -> Result<Option<serde_json::Value>>;
    fn flag(&self, c: &str) -> Result<bool>;
    fn bytes(&self, c: &str) -> Result<Vec<u8>>;
    /// A BLOB where it lies in the row.
    fn byte_slice(&self, c: &str) -> Result<&[u8]>;
}

/// The [`Columns`] methods both databases read as they are (within an impl for a row type
/// with sqlx's `Row::try_get`).
macro_rules! read_directly {
    () => {
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
        fn bytes(&self, c: &str) -> Result<Vec<u8>> {
            Ok(self.try_get(c)?)
        }
        fn byte_slice(&self, c: &str) -> Result<&[u8]> {
            Ok(self.try_get(c)?)
        }
    };
}
pub(super) use read_directly;

pub(super) fn dataset<R: Columns>(r: &R) -> Result<DatasetRecord> {
    Ok(DatasetRecord {
        id: r.uuid("id")?,
        tenant: r.text("tenant")?,
        name: r.text("name")?,
        created_at: r.int("created_at")?,
        rows: r.int("rows")?,
        inputs: r.int("inputs")?,
        outputs: r.int("outputs")?,
        meta: r.json("meta")?,
        size_bytes: r.int("size_bytes")?,
    })
}

pub(super) fn job<R: Columns>(r: &R) -> Result<JobRecord> {
    let status = r.text("status")?;
    Ok(JobRecord {
        id: r.uuid("id")?,
        tenant: r.text("tenant")?,
        seq: r.int("seq")?,
        status: JobStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("status {status}")))?,
        priority: r.int32("priority")?,
        dataset_id: r.opt_uuid("dataset_id")?,
        spec: JobSpec::from_value(r.json("spec")?).map_err(StoreError::Corrupt)?,
        epochs: r.int("epochs")?,
        epoch: r.int("epoch")?,
        latest: r.opt_json("latest")?,
        created_at: r.int("created_at")?,
        started_at: r.opt_int("started_at")?,
        finished_at: r.opt_int("finished_at")?,
        model_id: r.opt_uuid("model_id")?,
        error: r
            .opt_json("error")?
            .map(|v| Failure::from_value(&v).map_err(StoreError::Corrupt))
            .transpose()?,
        stop_reason: r.opt_text("stop_reason")?,
        attempt: r.int("attempt")?,
        crashes: r.int("crashes")?,
        cancel_requested: r.flag("cancel_requested")?,
        stop_requested: r.flag("stop_requested")?,
        sweep: sweep_link(r)?,
    })
}

/// The `sweep_*` columns of a job or model row.
fn sweep_link<R: Columns>(r: &R) -> Result<Option<SweepLink>> {
    let Some(sweep_id) = r.opt_uuid("sweep_id")? else {
        return Ok(None);
    };
    let role = r.opt_text("sweep_role")?.unwrap_or_default();
    Ok(Some(SweepLink {
        sweep_id,
        role: SweepRole::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("sweep role {role:?}")))?,
        trial: r.opt_int("sweep_trial")?.unwrap_or(0),
        rung: r.opt_int("sweep_rung")?,
        fold: r.opt_int("sweep_fold")?,
    }))
}

pub(super) fn model<R: Columns>(r: &R) -> Result<ModelRecord> {
    let mut m = model_summary(r)?;
    m.document = r.json("document")?;
    Ok(m)
}

/// A model row read with [`MODEL_SUMMARY_COLS`]: `document` is null.
pub(super) fn model_summary<R: Columns>(r: &R) -> Result<ModelRecord> {
    Ok(ModelRecord {
        id: r.uuid("id")?,
        tenant: r.text("tenant")?,
        name: r.opt_text("name")?,
        created_at: r.int("created_at")?,
        job_id: r.opt_uuid("job_id")?,
        dataset_id: r.opt_uuid("dataset_id")?,
        input_dim: r.int("input_dim")?,
        output_dim: r.int("output_dim")?,
        parameter_count: r.int("parameter_count")?,
        metrics: r.json("metrics")?,
        document: serde_json::Value::Null,
        sweep: sweep_link(r)?,
    })
}

pub(super) fn sweep<R: Columns>(r: &R) -> Result<SweepRecord> {
    let status = r.text("status")?;
    Ok(SweepRecord {
        id: r.uuid("id")?,
        tenant: r.text("tenant")?,
        seq: r.int("seq")?,
        dataset_id: r.uuid("dataset_id")?,
        status: JobStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("sweep status {status}")))?,
        spec: r.json("spec")?,
        best: r.opt_json("best")?,
        created_at: r.int("created_at")?,
        finished_at: r.opt_int("finished_at")?,
        cancel_requested: r.flag("cancel_requested")?,
    })
}

pub(super) fn trial<R: Columns>(r: &R) -> Result<TrialRecord> {
    Ok(TrialRecord {
        sweep_id: r.uuid("sweep_id")?,
        trial: r.int("trial")?,
        rung: r.int("rung")?,
        job_id: r.uuid("job_id")?,
        params: r.json("params")?,
    })
}

/// The `seq` a listing page starts below: the cursor's record's, or — if it was deleted since —
/// below the oldest of the tenant's records created after it (a record may then show twice,
/// none is skipped); no cursor starts at the top. `key_col` is the column the cursor's key
/// names (`id`, or a deployment's `name`); `tenant`, `key` and `created_at` are the dialect's
/// placeholders for the tenant and the cursor's two parts.
/// Room to join a dataset's parts in: its recorded size, within reason (a damaged record must
/// not reserve without bound; the vector grows past it if it must).
pub(super) fn parts_capacity(size_bytes: i64) -> usize {
    usize::try_from(size_bytes).unwrap_or(0).min(1 << 32)
}

pub(super) fn page_start(
    table: &str,
    key_col: &str,
    tenant: &str,
    key: &str,
    created_at: &str,
) -> String {
    format!(
        "COALESCE((SELECT seq FROM {table} WHERE {key_col} = {key} AND tenant = {tenant}), \
         (SELECT MIN(seq) FROM {table} WHERE tenant = {tenant} AND created_at > {created_at}), \
         9223372036854775807)"
    )
}

/// A listing page; the cursor is the last row's id and creation time when the page is full.
pub(super) fn page<R: Columns, T>(
    rows: &[R],
    item: fn(&R) -> Result<T>,
    limit: i64,
    total: i64,
) -> Result<Page<T>> {
    page_keyed(rows, item, limit, total, |r| Ok(r.uuid("id")?.to_string()))
}

/// [`page`] for records whose key is not an id column (a deployment's name).
pub(super) fn page_keyed<R: Columns, T>(
    rows: &[R],
    item: fn(&R) -> Result<T>,
    limit: i64,
    total: i64,
    key: fn(&R) -> Result<String>,
) -> Result<Page<T>> {
    let items = rows.iter().map(item).collect::<Result<Vec<_>>>()?;
    let next = match rows.last() {
        Some(last) if items.len() as i64 == limit => Some(Cursor {
            key: key(last)?,
            created_at: last.int("created_at")?,
        }),
        _ => None,
    };
    Ok(Page { items, next, total })
}

/// The columns `deployment` reads.
pub(super) const DEPLOYMENT_COLS: &str =
    "seq, tenant, name, version, model_id, created_at, updated_at";

pub(super) fn deployment<R: Columns>(r: &R) -> Result<DeploymentRecord> {
    Ok(DeploymentRecord {
        seq: r.int("seq")?,
        tenant: r.text("tenant")?,
        name: r.text("name")?,
        version: r.int("version")?,
        model_id: r.uuid("model_id")?,
        created_at: r.int("created_at")?,
        updated_at: r.int("updated_at")?,
    })
}

pub(super) fn deployment_version<R: Columns>(r: &R) -> Result<DeploymentVersion> {
    Ok(DeploymentVersion {
        version: r.int("version")?,
        model_id: r.uuid("model_id")?,
        created_at: r.int("created_at")?,
    })
}

/// The columns `batch` reads.
pub(super) const BATCH_COLS: &str = "id, tenant, model_id, dataset_id, status, rows_total, rows_done, error, created_at, updated_at, finished_at";

pub(super) fn batch<R: Columns>(r: &R) -> Result<BatchRecord> {
    Ok(BatchRecord {
        id: r.uuid("id")?,
        tenant: r.text("tenant")?,
        model_id: r.uuid("model_id")?,
        dataset_id: r.uuid("dataset_id")?,
        status: r.text("status")?,
        rows_total: r.int("rows_total")?,
        rows_done: r.int("rows_done")?,
        error: r.opt_text("error")?,
        created_at: r.int("created_at")?,
        updated_at: r.int("updated_at")?,
        finished_at: r.opt_int("finished_at")?,
    })
}
