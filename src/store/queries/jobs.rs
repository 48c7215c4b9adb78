//! A training job's statements, from its insert through claims (each backend's own),
//! epochs, checkpoints and the range test to its finish. Progress writes are fenced (see
//! `Tx`): they happen only while the attempt that writes them still owns the job.

use uuid::Uuid;

use super::super::rows::{Columns, job};
use super::super::sql::{Arg, Backend, Tx};
use super::super::{
    Continuation, Cursor, Finish, JobRecord, JobStatus, ListFilter, Page, Result, SweepLink,
    TrialRecord,
};
use super::{Filter, ids, insert_model_in, page_of};
use crate::clock::now_ms;

const INSERT_JOB: &str =
    "INSERT INTO jobs (id, status, priority, dataset_id, spec, epochs, created_at, tenant,
                       sweep_id, sweep_role, sweep_trial, sweep_rung, sweep_fold)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

fn job_args(j: &JobRecord) -> Vec<Arg<'static>> {
    let mut args = vec![
        Arg::Uuid(j.id),
        Arg::Text(j.status.as_str().to_owned()),
        Arg::Int32(j.priority),
        Arg::OptUuid(j.dataset_id),
        Arg::Json(j.spec.to_value()),
        Arg::Int(j.epochs),
        Arg::Int(j.created_at),
        Arg::Text(j.tenant.clone()),
    ];
    args.extend(link_args(j.sweep.as_ref()));
    args
}

/// The five `sweep_*` columns of a job or model.
pub(in crate::store) fn link_args(l: Option<&SweepLink>) -> [Arg<'static>; 5] {
    [
        Arg::OptUuid(l.map(|l| l.sweep_id)),
        Arg::OptText(l.map(|l| l.role.as_str().to_owned())),
        Arg::OptInt(l.map(|l| l.trial)),
        Arg::OptInt(l.and_then(|l| l.rung)),
        Arg::OptInt(l.and_then(|l| l.fold)),
    ]
}

/// Leaves a sweep's trial jobs or models out of `table`'s listing while the sweep exists,
/// unless the filter asks for them (or for one sweep's). `$n` is the filter's sweep id.
pub(in crate::store) fn sweep_condition(table: &str, filter: &ListFilter, n: usize) -> String {
    let one = format!("(${n}::uuid IS NULL OR {table}.sweep_id = ${n})");
    if filter.include_trials || filter.sweep_id.is_some() {
        one
    } else {
        format!(
            "{one} AND ({table}.sweep_role IS NULL OR {table}.sweep_role <> 'trial'
              OR NOT EXISTS (SELECT 1 FROM sweeps s WHERE s.id = {table}.sweep_id))"
        )
    }
}

pub(in crate::store) async fn insert_job<B: Backend>(b: &B, j: &JobRecord) -> Result<()> {
    b.run(INSERT_JOB, job_args(j)).await?;
    Ok(())
}

pub(in crate::store) async fn insert_job_from<B: Backend>(
    b: &B,
    j: &JobRecord,
    from: Option<&Continuation>,
    trial: Option<&TrialRecord>,
) -> Result<()> {
    let mut tx = b.begin().await?;
    tx.run(INSERT_JOB, job_args(j)).await?;
    if let Some(c) = from {
        tx.run(
            "INSERT INTO epochs (job_id, epoch, record)
             SELECT $1, epoch, record FROM epochs WHERE job_id = $2 AND epoch <= $3",
            vec![Arg::Uuid(j.id), Arg::Uuid(c.job_id), Arg::Int(c.epoch)],
        )
        .await?;
        tx.run(
            "UPDATE jobs SET epoch = $1,
                    latest = (SELECT record FROM epochs WHERE job_id = $2 AND epoch = $1)
             WHERE id = $2",
            vec![Arg::Int(c.epoch), Arg::Uuid(j.id)],
        )
        .await?;
        tx.run(
            "INSERT INTO checkpoints (job_id, epoch, state, saved_at) VALUES ($1, $2, $3, $4)",
            vec![
                Arg::Uuid(j.id),
                Arg::Int(c.epoch),
                Arg::Bytes(&c.state),
                Arg::Int(now_ms()),
            ],
        )
        .await?;
    }
    if let Some(t) = trial {
        tx.run(
            "INSERT INTO sweep_trials (sweep_id, trial, rung, job_id, params) VALUES ($1, $2, $3, $4, $5)",
            vec![
                Arg::Uuid(t.sweep_id),
                Arg::Int(t.trial),
                Arg::Int(t.rung),
                Arg::Uuid(t.job_id),
                Arg::JsonRef(&t.params),
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(in crate::store) async fn get_job<B: Backend>(b: &B, id: Uuid) -> Result<Option<JobRecord>> {
    b.opt("SELECT * FROM jobs WHERE id = $1", vec![Arg::Uuid(id)])
        .await?
        .map(|r| job(&r))
        .transpose()
}

pub(in crate::store) async fn list_jobs<B: Backend>(
    b: &B,
    tenant: &str,
    filter: &ListFilter,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Page<JobRecord>> {
    let sql = |n: usize| {
        format!(
            "(${n}::text IS NULL OR status = ${n}) AND {}",
            sweep_condition("jobs", filter, n + 1)
        )
    };
    let keep = Filter {
        sql: &sql,
        args: vec![
            Arg::OptText(filter.status.map(|s| s.as_str().to_owned())),
            Arg::OptUuid(filter.sweep_id),
        ],
    };
    page_of(b, "*", "jobs", tenant, keep, after, limit, job).await
}

/// Links a job (unless it is linked already) and its model to a sweep.
pub(in crate::store) async fn link_to_sweep<B: Backend>(
    b: &B,
    job_id: Uuid,
    link: &SweepLink,
) -> Result<()> {
    let mut tx = b.begin().await?;
    for (table, key) in [("jobs", "id"), ("models", "job_id")] {
        let mut args = vec![Arg::Uuid(job_id)];
        args.extend(link_args(Some(link)));
        tx.run(
            &format!(
                "UPDATE {table} SET sweep_id = $2, sweep_role = $3, sweep_trial = $4,
                        sweep_rung = $5, sweep_fold = $6
                 WHERE {key} = $1 AND sweep_id IS NULL"
            ),
            args,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(in crate::store) async fn delete_job<B: Backend>(b: &B, id: Uuid) -> Result<bool> {
    let n = b
        .run(
            "DELETE FROM jobs WHERE id = $1 AND status <> 'running'",
            vec![Arg::Uuid(id)],
        )
        .await?;
    Ok(n > 0)
}

pub(in crate::store) async fn queue_position<B: Backend>(b: &B, id: Uuid) -> Result<Option<i64>> {
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

pub(in crate::store) async fn waiting_tenants<B: Backend>(b: &B) -> Result<Vec<String>> {
    let rows = b
        .all(
            "SELECT DISTINCT tenant FROM jobs WHERE status = 'queued'",
            vec![],
        )
        .await?;
    rows.iter().map(|r| r.text("tenant")).collect()
}

pub(in crate::store) async fn count_jobs<B: Backend>(b: &B, status: JobStatus) -> Result<i64> {
    b.one(
        "SELECT COUNT(*) AS n FROM jobs WHERE status = $1",
        vec![Arg::Text(status.as_str().to_owned())],
    )
    .await?
    .int("n")
}

pub(in crate::store) async fn jobs_using_dataset<B: Backend>(
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

pub(in crate::store) async fn jobs_using_model<B: Backend>(
    b: &B,
    id: Uuid,
    limit: i64,
) -> Result<Vec<Uuid>> {
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

pub(in crate::store) async fn release_job<B: Backend>(
    b: &B,
    id: Uuid,
    attempt: i64,
) -> Result<bool> {
    let n = b
        .run(
            "UPDATE jobs SET status = 'queued', worker = NULL, lease_expires_at = NULL
             WHERE id = $1 AND attempt = $2 AND status = 'running'",
            vec![Arg::Uuid(id), Arg::Int(attempt)],
        )
        .await?;
    Ok(n > 0)
}

pub(in crate::store) async fn request_cancel<B: Backend>(
    b: &B,
    id: Uuid,
) -> Result<Option<JobRecord>> {
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

pub(in crate::store) async fn request_stop<B: Backend>(
    b: &B,
    id: Uuid,
) -> Result<Option<JobRecord>> {
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

/// A transaction that holds job `id` while the attempt writing still owns it: `fence` is an
/// UPDATE of the job's row under the fence (see `Tx`); `None` when it changed no row.
async fn fenced<B: Backend>(b: &B, fence: &str, args: Vec<Arg<'_>>) -> Result<Option<B::Tx>> {
    let mut tx = b.begin().await?;
    Ok((tx.run(fence, args).await? > 0).then_some(tx))
}

pub(in crate::store) async fn record_epoch<B: Backend>(
    b: &B,
    id: Uuid,
    attempt: i64,
    record: &serde_json::Value,
    epoch: i64,
) -> Result<bool> {
    let Some(mut tx) = fenced(
        b,
        "UPDATE jobs SET epoch = $3, latest = $4
         WHERE id = $1 AND attempt = $2 AND status = 'running'",
        vec![
            Arg::Uuid(id),
            Arg::Int(attempt),
            Arg::Int(epoch),
            Arg::JsonRef(record),
        ],
    )
    .await?
    else {
        return Ok(false);
    };
    tx.run(
        "INSERT INTO epochs (job_id, epoch, record) VALUES ($1, $2, $3)
         ON CONFLICT (job_id, epoch) DO UPDATE SET record = excluded.record",
        vec![Arg::Uuid(id), Arg::Int(epoch), Arg::JsonRef(record)],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

pub(in crate::store) async fn history<B: Backend>(
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

pub(in crate::store) async fn truncate_history<B: Backend>(
    b: &B,
    id: Uuid,
    attempt: i64,
    epoch: i64,
) -> Result<bool> {
    let Some(mut tx) = fenced(
        b,
        "UPDATE jobs SET epoch = $3 WHERE id = $1 AND attempt = $2 AND status = 'running'",
        vec![Arg::Uuid(id), Arg::Int(attempt), Arg::Int(epoch)],
    )
    .await?
    else {
        return Ok(false);
    };
    tx.run(
        "DELETE FROM epochs WHERE job_id = $1 AND epoch > $2",
        vec![Arg::Uuid(id), Arg::Int(epoch)],
    )
    .await?;
    tx.run(
        "UPDATE jobs SET latest = (SELECT record FROM epochs WHERE job_id = $1 ORDER BY epoch DESC LIMIT 1)
         WHERE id = $1",
        vec![Arg::Uuid(id)],
    )
    .await?;
    crate::crash::point("history_truncate");
    tx.commit().await?;
    Ok(true)
}

fn epoch_and_state<R: Columns>(r: Option<R>) -> Result<Option<(i64, Vec<u8>)>> {
    r.map(|r| Ok((r.int("epoch")?, r.bytes("state")?)))
        .transpose()
}

pub(in crate::store) async fn save_checkpoint<B: Backend>(
    b: &B,
    id: Uuid,
    attempt: i64,
    epoch: i64,
    state: &[u8],
) -> Result<bool> {
    // Progress since the claim: whatever stopped the node before, it was not this job.
    let Some(mut tx) = fenced(
        b,
        "UPDATE jobs SET crashes = 0 WHERE id = $1 AND attempt = $2 AND status = 'running'",
        vec![Arg::Uuid(id), Arg::Int(attempt)],
    )
    .await?
    else {
        return Ok(false);
    };
    tx.run(
        "INSERT INTO checkpoints (job_id, epoch, state, saved_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (job_id) DO UPDATE
            SET epoch = excluded.epoch, state = excluded.state, saved_at = excluded.saved_at",
        vec![
            Arg::Uuid(id),
            Arg::Int(epoch),
            Arg::Bytes(state),
            Arg::Int(now_ms()),
        ],
    )
    .await?;
    crate::crash::point("checkpoint_write");
    tx.commit().await?;
    Ok(true)
}

pub(in crate::store) async fn load_checkpoint<B: Backend>(
    b: &B,
    id: Uuid,
) -> Result<Option<(i64, Vec<u8>)>> {
    let r = b
        .opt(
            "SELECT epoch, state FROM checkpoints WHERE job_id = $1",
            vec![Arg::Uuid(id)],
        )
        .await?;
    epoch_and_state(r)
}

pub(in crate::store) async fn final_state<B: Backend>(
    b: &B,
    id: Uuid,
) -> Result<Option<(i64, Vec<u8>)>> {
    let r = b
        .opt(
            "SELECT epoch, state FROM final_states WHERE job_id = $1",
            vec![Arg::Uuid(id)],
        )
        .await?;
    epoch_and_state(r)
}

pub(in crate::store) async fn finish_job<B: Backend>(
    b: &B,
    id: Uuid,
    attempt: i64,
    finish: Finish,
) -> Result<bool> {
    let (status, model_id, error, reason) = match &finish {
        Finish::Succeeded { model, stop_reason } => {
            ("succeeded", Some(model.id), None, Some(stop_reason.clone()))
        }
        Finish::Failed(f) => ("failed", None, Some(f.to_value()), None),
        Finish::Cancelled => ("cancelled", None, None, Some("cancelled".to_owned())),
    };
    let Some(mut tx) = fenced(
        b,
        "UPDATE jobs SET status = $3, model_id = $4, error = $5, stop_reason = $6, finished_at = $7,
                worker = NULL, lease_expires_at = NULL
         WHERE id = $1 AND attempt = $2 AND status = 'running'",
        vec![
            Arg::Uuid(id),
            Arg::Int(attempt),
            Arg::Text(status.to_owned()),
            Arg::OptUuid(model_id),
            Arg::OptJson(error),
            Arg::OptText(reason),
            Arg::Int(now_ms()),
        ],
    )
    .await?
    else {
        return Ok(false);
    };
    if let Finish::Succeeded { model, .. } = &finish {
        insert_model_in(&mut tx, model).await?;
        // Kept so the job can be continued for more epochs (POST /v1/jobs/{id}/continue).
        tx.run(
            "INSERT INTO final_states (job_id, epoch, state)
             SELECT job_id, epoch, state FROM checkpoints WHERE job_id = $1
             ON CONFLICT (job_id) DO UPDATE SET epoch = excluded.epoch, state = excluded.state",
            vec![Arg::Uuid(id)],
        )
        .await?;
    }
    tx.run(
        "DELETE FROM checkpoints WHERE job_id = $1",
        vec![Arg::Uuid(id)],
    )
    .await?;
    crate::crash::point("model_save");
    tx.commit().await?;
    Ok(true)
}

pub(in crate::store) async fn record_lr_range_test<B: Backend>(
    b: &B,
    id: Uuid,
    attempt: i64,
    result: &serde_json::Value,
) -> Result<bool> {
    // An UPDATE that changes nothing but holds the job.
    let Some(mut tx) = fenced(
        b,
        "UPDATE jobs SET attempt = attempt WHERE id = $1 AND attempt = $2 AND status = 'running'",
        vec![Arg::Uuid(id), Arg::Int(attempt)],
    )
    .await?
    else {
        return Ok(false);
    };
    tx.run(
        "INSERT INTO lr_range_tests (job_id, result) VALUES ($1, $2)
         ON CONFLICT (job_id) DO UPDATE SET result = excluded.result",
        vec![Arg::Uuid(id), Arg::JsonRef(result)],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

pub(in crate::store) async fn lr_range_test<B: Backend>(
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
