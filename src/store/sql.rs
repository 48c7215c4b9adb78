//! How the store runs SQL written once for both databases. A statement is written in
//! PostgreSQL's form — `$1`-style placeholders, a cast on a parameter where PostgreSQL needs
//! its type (`$2::text IS NULL`) — and values are [`Arg`]s; each backend ([`Backend`]) runs it
//! as its database takes it: SQLite gets `?1` for `$1` (numbered parameters bind exactly the
//! same) and no casts, and each backend binds an `Arg` as its columns hold it (a UUID is TEXT
//! in SQLite and UUID in PostgreSQL, JSON TEXT and JSONB, a flag INTEGER and BOOLEAN), as
//! [`Columns`] reads them back. `->>` reads a JSON field in both.
//!
//! The statements themselves are in `queries`, functions over a `Backend` (and its [`Tx`]
//! for what must happen together). What truly differs — connection setup, migrations,
//! claiming a job (`FOR UPDATE SKIP LOCKED` against SQLite's single writer) and its lease
//! clock, blobs written as they arrive, the storage accounting — is each backend's
//! [`Dialect`]; every `Store` method is one or the other.

use async_trait::async_trait;

use super::queries::*;
use super::{Continuation, DatasetWrites, Finish, ListFilter, Parts, Store, SweepLink, Usage};
use uuid::Uuid;

use super::rows::Columns;
use super::{
    BatchRecord, Cursor, DatasetRecord, DeploymentRecord, DeploymentVersion, IdempotentAnswer,
    JobRecord, JobStatus, ModelRecord, Page, Result, SweepRecord, TrialRecord,
};

/// A value bound to a statement; large ones (a model's document, a checkpoint's state) are
/// bound where they lie.
#[derive(Clone, Debug)]
pub(super) enum Arg<'a> {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    OptInt(Option<i64>),
    Int32(i32),
    Uuid(Uuid),
    OptUuid(Option<Uuid>),
    Json(serde_json::Value),
    OptJson(Option<serde_json::Value>),
    JsonRef(&'a serde_json::Value),
    Flag(bool),
    Bytes(&'a [u8]),
}

/// Runs a statement written as this module writes them (see the module header).
#[async_trait]
pub(super) trait Backend: Send + Sync {
    type Row: Columns + Send;
    type Tx: Tx<Row = Self::Row>;
    async fn all(&self, sql: &str, args: Vec<Arg<'_>>) -> Result<Vec<Self::Row>>;
    async fn opt(&self, sql: &str, args: Vec<Arg<'_>>) -> Result<Option<Self::Row>>;
    async fn one(&self, sql: &str, args: Vec<Arg<'_>>) -> Result<Self::Row>;
    /// The rows the statement changed.
    async fn run(&self, sql: &str, args: Vec<Arg<'_>>) -> Result<u64>;
    /// A transaction: committed by [`Tx::commit`], rolled back when dropped.
    async fn begin(&self) -> Result<Self::Tx>;
}

/// A transaction on a [`Backend`], running statements as it does.
///
/// Fenced writes (a job's progress, written only while the attempt still owns the job) begin
/// with an UPDATE of the job's row under the fence: in PostgreSQL it holds the row's lock
/// until the commit, so a concurrent requeue or claim waits; in SQLite it takes the single
/// write lock first, so the transaction never has to upgrade a read lock (which two
/// transactions cannot both do).
#[async_trait]
pub(super) trait Tx: Send + Sized {
    type Row: Columns + Send;
    async fn run(&mut self, sql: &str, args: Vec<Arg<'_>>) -> Result<u64>;
    async fn opt(&mut self, sql: &str, args: Vec<Arg<'_>>) -> Result<Option<Self::Row>>;
    /// Calls `each` on the rows as they arrive, without holding them all.
    async fn each(
        &mut self,
        sql: &str,
        args: Vec<Arg<'_>>,
        each: &mut (dyn for<'r> FnMut(&'r Self::Row) -> Result<()> + Send),
    ) -> Result<()>;
    async fn commit(self) -> Result<()>;
}

/// The `Backend` impl (and its `Tx`, named `$tx`) of a store whose pool runs `statement`'s
/// queries on database `$db` (each backend file defines `statement`, binding `Arg`s its
/// way): the same code for both, but for the types.
macro_rules! backend {
    ($store:ty, $db:ty, $row:ty, $tx:ident) => {
        pub struct $tx(sqlx::Transaction<'static, $db>);

        #[async_trait]
        impl sql::Tx for $tx {
            type Row = $row;
            async fn run(&mut self, sql: &str, args: Vec<Arg<'_>>) -> Result<u64> {
                Ok(statement(sql, args)
                    .execute(&mut *self.0)
                    .await?
                    .rows_affected())
            }
            async fn opt(&mut self, sql: &str, args: Vec<Arg<'_>>) -> Result<Option<$row>> {
                Ok(statement(sql, args).fetch_optional(&mut *self.0).await?)
            }
            async fn each(
                &mut self,
                sql: &str,
                args: Vec<Arg<'_>>,
                each: &mut (dyn for<'r> FnMut(&'r $row) -> Result<()> + Send),
            ) -> Result<()> {
                use futures::TryStreamExt;
                let mut rows = statement(sql, args).fetch(&mut *self.0);
                while let Some(r) = rows.try_next().await? {
                    each(&r)?;
                }
                Ok(())
            }
            async fn commit(self) -> Result<()> {
                Ok(self.0.commit().await?)
            }
        }

        #[async_trait]
        impl Backend for $store {
            type Row = $row;
            type Tx = $tx;
            async fn all(&self, sql: &str, args: Vec<Arg<'_>>) -> Result<Vec<$row>> {
                Ok(statement(sql, args).fetch_all(&self.pool).await?)
            }
            async fn opt(&self, sql: &str, args: Vec<Arg<'_>>) -> Result<Option<$row>> {
                Ok(statement(sql, args).fetch_optional(&self.pool).await?)
            }
            async fn one(&self, sql: &str, args: Vec<Arg<'_>>) -> Result<$row> {
                Ok(statement(sql, args).fetch_one(&self.pool).await?)
            }
            async fn run(&self, sql: &str, args: Vec<Arg<'_>>) -> Result<u64> {
                Ok(statement(sql, args)
                    .execute(&self.pool)
                    .await?
                    .rows_affected())
            }
            async fn begin(&self) -> Result<$tx> {
                Ok($tx(self.pool.begin().await?))
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

/// What each database does its own way: connection details, claiming a job and its lease's
/// clock, blobs written as they arrive, the storage accounting. Everything else is the
/// `Store` below, written once over [`Backend`] in `queries`.
#[async_trait]
pub(super) trait Dialect: Backend + 'static {
    fn pool_use(&self) -> (u32, u32);
    /// Blobs written as they arrive (SQLite on a connection without its automatic checkpoint).
    async fn insert_dataset_parts(&self, d: &DatasetRecord, parts: Parts) -> Result<()>;
    async fn write_dataset(&self, id: Uuid, tenant: &str, writes: DatasetWrites) -> Result<bool>;
    /// The bytes each table takes: each database measures its own way.
    async fn usage(&self, tenant: &str) -> Result<Usage>;
    /// Claiming (`FOR UPDATE SKIP LOCKED` against SQLite's single writer) and the lease's
    /// clock (PostgreSQL's own, shared by every node; SQLite's node is the only one).
    async fn claim_next_job(
        &self,
        worker: &str,
        lease_ms: i64,
        max_running_per_tenant: i64,
        suspects: bool,
    ) -> Result<Option<JobRecord>>;
    async fn renew_lease(&self, id: Uuid, attempt: i64, lease_ms: i64) -> Result<bool>;
    async fn requeue_running(&self, only_expired: bool) -> Result<u64>;
}

#[async_trait]
impl<T: Dialect> Store for T {
    async fn ping(&self) -> Result<()> {
        ping(self).await
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
        dataset_data(self, id).await
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
        filter: &ListFilter,
        after: Option<Cursor>,
        limit: i64,
    ) -> Result<Page<JobRecord>> {
        list_jobs(self, tenant, filter, after, limit).await
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
        remember_answer(self, tenant, route, key, a).await
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
        record_epoch(self, id, attempt, record, epoch).await
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
        save_checkpoint(self, id, attempt, epoch, state).await
    }

    async fn load_checkpoint(&self, id: Uuid) -> Result<Option<(i64, Vec<u8>)>> {
        load_checkpoint(self, id).await
    }

    async fn truncate_history(&self, id: Uuid, attempt: i64, epoch: i64) -> Result<bool> {
        truncate_history(self, id, attempt, epoch).await
    }

    async fn finish_job(&self, id: Uuid, attempt: i64, finish: Finish) -> Result<bool> {
        finish_job(self, id, attempt, finish).await
    }

    async fn request_cancel(&self, id: Uuid) -> Result<Option<JobRecord>> {
        request_cancel(self, id).await
    }

    async fn request_stop(&self, id: Uuid) -> Result<Option<JobRecord>> {
        request_stop(self, id).await
    }

    async fn insert_model(&self, m: &ModelRecord) -> Result<()> {
        insert_model(self, m).await
    }

    async fn get_model(&self, id: Uuid) -> Result<Option<ModelRecord>> {
        get_model(self, id).await
    }

    async fn list_models(
        &self,
        tenant: &str,
        filter: &ListFilter,
        after: Option<Cursor>,
        limit: i64,
    ) -> Result<Page<ModelRecord>> {
        list_models(self, tenant, filter, after, limit).await
    }

    async fn models_of_dataset(
        &self,
        tenant: &str,
        dataset_id: Uuid,
        limit: i64,
    ) -> Result<Vec<ModelRecord>> {
        models_of_dataset(self, tenant, dataset_id, limit).await
    }

    async fn update_model_metrics(&self, id: Uuid, metrics: &serde_json::Value) -> Result<bool> {
        update_model_metrics(self, id, metrics).await
    }

    async fn upgrade_tasks(&self) -> Result<Vec<String>> {
        upgrade_tasks(self).await
    }

    async fn finish_upgrade_task(&self, name: &str) -> Result<()> {
        finish_upgrade_task(self, name).await
    }

    async fn all_sweeps(&self) -> Result<Vec<SweepRecord>> {
        all_sweeps(self).await
    }

    async fn link_to_sweep(&self, job_id: Uuid, link: &SweepLink) -> Result<()> {
        link_to_sweep(self, job_id, link).await
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
        deploy(self, tenant, name, model_id, expected, now).await
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
        insert_job_from(self, j, from, trial).await
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
        record_lr_range_test(self, id, attempt, result).await
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
