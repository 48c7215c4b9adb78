//! The `Store` contract, run against every backend: each test below is one async function
//! taking a fresh, empty store, and the `conformance!` list at the bottom runs it against
//! SQLite (a temporary file) and PostgreSQL. PostgreSQL needs `BACKPROP_TEST_POSTGRES_URL`
//! (e.g. `postgres://postgres@127.0.0.1:5432/test`); each test gets its own schema there,
//! dropped afterwards, so the tests run in parallel. Without the variable the PostgreSQL
//! variants say they were skipped and pass.

use std::collections::HashSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use backprop::store::{
    BatchRecord, Continuation, Cursor, DatasetRecord, Failure, FailureKind, Finish,
    IdempotentAnswer, JobRecord, JobSpec, JobStatus, ListFilter, ModelRecord, PostgresStore,
    SqliteStore, Store, StoreError, SweepLink, SweepRecord, SweepRole, TrialRecord, now_ms,
    to_json,
};
use futures::FutureExt;
use serde_json::{Value, json};
use sqlx::{Connection, Executor};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Backends

async fn with_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&SqliteStore::url_in(dir.path()))
        .await
        .expect("open SQLite");
    test(Arc::new(store)).await;
}

async fn with_postgres<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Ok(base) = std::env::var("BACKPROP_TEST_POSTGRES_URL") else {
        println!("skipped: BACKPROP_TEST_POSTGRES_URL not set");
        return;
    };
    let schema = format!("bp_test_{}", Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {base}: {e}"));
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .await
        .expect("create schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
    let outcome = AssertUnwindSafe(async {
        let store = PostgresStore::open(&url).await.expect("open PostgreSQL");
        test(Arc::new(store)).await;
    })
    .catch_unwind()
    .await;
    admin
        .execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .await
        .expect("drop schema");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Runs each listed test function against both backends, as `sqlite::name` and
/// `postgres::name`, on a multi-threaded runtime so concurrent tasks really overlap.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::with_sqlite(super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::with_postgres(super::$name).await;
                }
            )*
        }
    };
}

conformance!(
    datasets_crud_and_paging,
    models_crud_and_paging,
    jobs_insert_get_list_filter_and_paging,
    queue_position_and_counts,
    claim_takes_priority_then_age,
    claim_serves_the_tenant_with_fewer_running_jobs_first,
    concurrent_claimers_never_share_a_job,
    fenced_writes_of_an_old_attempt_change_nothing,
    history_replace_and_truncate,
    checkpoint_replace_and_load,
    finish_stores_the_model_atomically,
    finish_failed_and_cancelled,
    cancel_queued_vs_running,
    stop_request,
    delete_job_only_when_not_running,
    lease_expiry_requeues_only_expired_jobs,
    release_puts_the_job_back,
    crash_cap_fails_instead_of_looping,
    a_suspect_waits_for_an_idle_node,
    an_idempotency_reservation_is_replaced_only_by_its_own_answer,
    deployments_version_roll_and_guard_their_models,
    concurrent_deploys_of_one_name_each_get_a_version,
    a_batch_keeps_its_chunks_and_ends_once,
    // issue 14
    a_succeeded_job_keeps_its_final_state_and_a_continuation_copies_it,
    a_model_a_job_starts_from_is_not_deleted,
    a_range_test_is_recorded_by_the_attempt_that_owns_the_job,
    sweeps_their_trials_and_the_dataset_they_use,
    // issue 26
    a_sweeps_trials_stay_out_of_listings_unless_asked_for,
    // issue 12
    a_dataset_in_parts_reads_back_joined_and_goes_with_its_record,
    a_dataset_written_as_it_arrives_is_seen_only_once_committed,
);

// ---------------------------------------------------------------------------------------------
// Records

fn dataset(name: &str) -> DatasetRecord {
    DatasetRecord {
        tenant: "default".into(),
        id: Uuid::new_v4(),
        name: name.into(),
        created_at: now_ms(),
        rows: 150,
        inputs: 4,
        outputs: 3,
        meta: json!({
            "feature_names": ["sepal length", "sepal width", "petal length", "petal width"],
            "classes": ["setosa", "versicolor", "virginica"],
            "target_kind": "classes",
        }),
        size_bytes: 3,
    }
}

fn job(priority: i32) -> JobRecord {
    JobRecord {
        tenant: "default".into(),
        id: Uuid::new_v4(),
        seq: 0,
        status: JobStatus::Queued,
        priority,
        dataset_id: Some(Uuid::new_v4()),
        spec: JobSpec::from_value(json!({
            "layers": [{"units": 8, "activation": "relu"}],
            "optimizer": {"type": "adam", "learning_rate": to_json(&0.01f32)},
            "loss": "mse",
            "epochs": 10,
        }))
        .expect("a job spec"),
        epochs: 10,
        epoch: 0,
        latest: None,
        created_at: now_ms(),
        started_at: None,
        finished_at: None,
        model_id: None,
        error: None,
        stop_reason: None,
        attempt: 0,
        cancel_requested: false,
        stop_requested: false,
        crashes: 0,
        sweep: None,
    }
}

fn status(s: JobStatus) -> ListFilter {
    ListFilter {
        status: Some(s),
        ..ListFilter::default()
    }
}

fn model(job_id: Option<Uuid>) -> ModelRecord {
    ModelRecord {
        tenant: "default".into(),
        id: Uuid::new_v4(),
        name: Some("iris".into()),
        created_at: now_ms(),
        job_id,
        dataset_id: Some(Uuid::new_v4()),
        input_dim: 4,
        output_dim: 3,
        parameter_count: 67,
        metrics: json!({"final": {"loss": to_json(&0.0625f32), "accuracy": 0.96}, "epochs_run": 10}),
        document: json!({"format": "backprop", "layers": [{"weights": [[0.5, -0.25], [1e-7, 3.0]]}]}),
        sweep: None,
    }
}

/// A queued sweep of `max_trials` on dataset `dataset_id`, as the store keeps it.
fn sweep(dataset_id: Uuid, max_trials: u32) -> SweepRecord {
    SweepRecord {
        id: Uuid::new_v4(),
        tenant: "default".into(),
        seq: 0,
        dataset_id,
        status: JobStatus::Queued,
        spec: json!({"max_trials": max_trials, "metric": "val_loss"}),
        best: None,
        created_at: now_ms(),
        finished_at: None,
        cancel_requested: false,
    }
}

fn epoch_record(epoch: i64, loss: f32) -> Value {
    json!({"epoch": epoch, "loss": to_json(&loss), "accuracy": 0.5})
}

async fn get(store: &Arc<dyn Store>, id: Uuid) -> JobRecord {
    store.get_job(id).await.unwrap().expect("job exists")
}

/// Inserts `n` jobs of priority 0, oldest first.
async fn queued(store: &Arc<dyn Store>, n: usize) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let j = job(0);
        store.insert_job(&j).await.unwrap();
        ids.push(j.id);
    }
    ids
}

/// Inserts one job and claims it.
async fn running(store: &Arc<dyn Store>, lease_ms: i64) -> JobRecord {
    let j = job(0);
    store.insert_job(&j).await.unwrap();
    let claimed = store
        .claim_next_job("node-a", lease_ms, 0, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, j.id);
    claimed
}

// ---------------------------------------------------------------------------------------------
// Tests

async fn datasets_crud_and_paging(store: Arc<dyn Store>) {
    let mut all = Vec::new();
    for i in 0..5 {
        let d = dataset(&format!("d{i}"));
        store
            .insert_dataset(&d, vec![i as u8, 0, 255])
            .await
            .unwrap();
        all.push(d);
    }
    let first = &all[0];
    assert_eq!(
        store.get_dataset(first.id).await.unwrap().as_ref(),
        Some(first)
    );
    assert_eq!(
        store.dataset_data(first.id).await.unwrap(),
        Some(vec![0, 0, 255])
    );
    assert_eq!(store.get_dataset(Uuid::new_v4()).await.unwrap(), None);
    assert_eq!(store.dataset_data(Uuid::new_v4()).await.unwrap(), None);

    // Newest first, two at a time: d4 d3 | d2 d1 | d0 (a short page has no cursor).
    let mut names = Vec::new();
    let mut before = None;
    let mut pages = 0;
    loop {
        let p = store.list_datasets("default", before, 2).await.unwrap();
        pages += 1;
        names.push(p.items.iter().map(|d| d.name.clone()).collect::<Vec<_>>());
        match p.next {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, [vec!["d4", "d3"], vec!["d2", "d1"], vec!["d0"]]);
    assert_eq!(
        store
            .list_datasets("default", None, 10)
            .await
            .unwrap()
            .items[4],
        all[0]
    );

    assert!(store.delete_dataset(first.id).await.unwrap());
    assert!(!store.delete_dataset(first.id).await.unwrap());
    assert_eq!(store.get_dataset(first.id).await.unwrap(), None);
    assert_eq!(
        store
            .list_datasets("default", None, 10)
            .await
            .unwrap()
            .items
            .len(),
        4
    );

    // A cursor is the last record's id and time, never a server-wide number; one whose record
    // was deleted since still continues below it (here after p3, which is gone).
    for i in 0..5 {
        let mut d = dataset(&format!("p{i}"));
        d.tenant = "paging".into();
        d.created_at = 1_000 + i;
        store.insert_dataset(&d, vec![1]).await.unwrap();
    }
    let top = store.list_datasets("paging", None, 2).await.unwrap();
    let cursor = top.next.unwrap();
    assert_eq!(cursor.key, top.items[1].id.to_string());
    assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor.clone()));
    assert_eq!(Cursor::decode("12"), None);
    assert!(store.delete_dataset(top.items[1].id).await.unwrap());
    let after = store
        .list_datasets("paging", Some(cursor), 2)
        .await
        .unwrap();
    let after: Vec<_> = after.items.iter().map(|d| d.name.clone()).collect();
    assert_eq!(after, ["p2", "p1"]);
}

/// A dataset's bytes are written in parts (in order, in one transaction with the record), read
/// back joined, refused whole under a taken id, and deleted with the record.
async fn a_dataset_in_parts_reads_back_joined_and_goes_with_its_record(store: Arc<dyn Store>) {
    let parts: Vec<Vec<u8>> = (0..5u8)
        .map(|i| (0..1000 + i as usize).map(|k| (k as u8) ^ i).collect())
        .collect();
    let joined = parts.concat();
    let mut d = dataset("parts");
    d.size_bytes = joined.len() as i64;
    store
        .insert_dataset_parts(&d, Box::pin(futures::stream::iter(parts.clone())))
        .await
        .unwrap();
    assert_eq!(
        store.dataset_data(d.id).await.unwrap(),
        Some(joined.clone())
    );
    assert_eq!(store.get_dataset(d.id).await.unwrap(), Some(d.clone()));

    // The same id again: refused as a duplicate before any part is written; the first is kept.
    let err = store
        .insert_dataset_parts(&d, Box::pin(futures::stream::iter([vec![9, 9, 9]])))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Duplicate(_)), "{err:?}");
    assert_eq!(store.dataset_data(d.id).await.unwrap(), Some(joined));

    // Deleted with its record: the id can be stored again (no part of the old one is left to
    // clash with or to be read back).
    assert!(store.delete_dataset(d.id).await.unwrap());
    assert_eq!(store.dataset_data(d.id).await.unwrap(), None);
    store.insert_dataset(&d, vec![7, 8]).await.unwrap();
    assert_eq!(store.dataset_data(d.id).await.unwrap(), Some(vec![7, 8]));
}

/// A dataset written before its record is known: its parts (in any order of numbers) are
/// seen by no reader until the record commits them; then they read back joined in number
/// order. Writes that end without a commit leave nothing behind, and a taken id is refused
/// before any part is written.
async fn a_dataset_written_as_it_arrives_is_seen_only_once_committed(store: Arc<dyn Store>) {
    use backprop::store::DatasetWrite;
    let start = |id: Uuid| {
        let (tx, rx) = tokio::sync::mpsc::channel::<DatasetWrite>(4);
        let writes =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|w| (w, rx)) });
        let store = store.clone();
        let task =
            tokio::spawn(async move { store.write_dataset(id, "default", Box::pin(writes)).await });
        (tx, task)
    };
    let mut d = dataset("streamed");
    let (tx, task) = start(d.id);
    tx.send(DatasetWrite::Part(2, vec![5, 6])).await.unwrap();
    tx.send(DatasetWrite::Part(1, vec![3, 4])).await.unwrap();
    // Written, not committed: no reader sees the record or its bytes.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(store.get_dataset(d.id).await.unwrap(), None);
    assert_eq!(store.dataset_data(d.id).await.unwrap(), None);
    let listed = store.list_datasets("default", None, 100).await.unwrap();
    assert!(listed.items.iter().all(|x| x.id != d.id));
    tx.send(DatasetWrite::Part(0, vec![1, 2])).await.unwrap();
    d.size_bytes = 6;
    tx.send(DatasetWrite::Commit(d.clone())).await.unwrap();
    assert!(task.await.unwrap().unwrap());
    assert_eq!(store.get_dataset(d.id).await.unwrap(), Some(d.clone()));
    assert_eq!(
        store.dataset_data(d.id).await.unwrap(),
        Some(vec![1, 2, 3, 4, 5, 6])
    );

    // The id is taken: refused at once.
    let (tx, task) = start(d.id);
    let _ = tx.send(DatasetWrite::Part(0, vec![9])).await;
    drop(tx);
    let err = task.await.unwrap().unwrap_err();
    assert!(matches!(err, StoreError::Duplicate(_)), "{err:?}");
    assert_eq!(
        store.dataset_data(d.id).await.unwrap(),
        Some(vec![1, 2, 3, 4, 5, 6])
    );

    // No commit: nothing is left, and the id is free for a later dataset.
    let other = dataset("abandoned");
    let (tx, task) = start(other.id);
    tx.send(DatasetWrite::Part(0, vec![7; 100])).await.unwrap();
    drop(tx);
    assert!(!task.await.unwrap().unwrap());
    assert_eq!(store.get_dataset(other.id).await.unwrap(), None);
    store.insert_dataset(&other, vec![8]).await.unwrap();
    assert_eq!(store.dataset_data(other.id).await.unwrap(), Some(vec![8]));
}

async fn models_crud_and_paging(store: Arc<dyn Store>) {
    let mut all = Vec::new();
    for i in 0..3 {
        let mut m = model(None);
        m.name = (i != 1).then(|| format!("m{i}"));
        store.insert_model(&m).await.unwrap();
        all.push(m);
    }
    // Floats and key order come back as they went in (jsonb reorders keys and stores numbers
    // as numeric; the records must still compare equal).
    assert_eq!(
        store.get_model(all[0].id).await.unwrap().as_ref(),
        Some(&all[0])
    );
    assert_eq!(
        store.get_model(all[1].id).await.unwrap().unwrap().name,
        None
    );
    let p1 = store
        .list_models("default", &ListFilter::default(), None, 2)
        .await
        .unwrap();
    assert_eq!(p1.items, [all[2].clone(), all[1].clone()]);
    let p2 = store
        .list_models("default", &ListFilter::default(), p1.next, 2)
        .await
        .unwrap();
    assert_eq!(p2.items, [all[0].clone()]);
    assert_eq!(p2.next, None);
    assert!(store.delete_model(all[1].id).await.unwrap());
    assert!(!store.delete_model(all[1].id).await.unwrap());
    assert_eq!(store.get_model(all[1].id).await.unwrap(), None);
}

async fn jobs_insert_get_list_filter_and_paging(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    let mut first = None;
    for i in 0..5 {
        let mut j = job(i % 2);
        j.dataset_id = (i != 3).then(Uuid::new_v4);
        store.insert_job(&j).await.unwrap();
        ids.push(j.id);
        first.get_or_insert(j);
    }
    let first = first.unwrap();
    let got = get(&store, first.id).await;
    assert!(got.seq > 0);
    assert_eq!(
        JobRecord {
            tenant: "default".into(),
            seq: 0,
            ..got.clone()
        },
        first,
        "round trip"
    );
    assert_eq!(get(&store, ids[3]).await.dataset_id, None);
    assert_eq!(store.get_job(Uuid::new_v4()).await.unwrap(), None);

    // Two of them run: the filter sees them apart from the queued ones.
    let a = store
        .claim_next_job("w", 60_000, 0, true)
        .await
        .unwrap()
        .unwrap();
    let b = store
        .claim_next_job("w", 60_000, 0, true)
        .await
        .unwrap()
        .unwrap();
    let running = store
        .list_jobs("default", &status(JobStatus::Running), None, 10)
        .await
        .unwrap();
    let mut running_ids: Vec<Uuid> = running.items.iter().map(|j| j.id).collect();
    running_ids.sort();
    let mut expected = vec![a.id, b.id];
    expected.sort();
    assert_eq!(running_ids, expected);
    assert_eq!(running.next, None);
    let queued = store
        .list_jobs("default", &status(JobStatus::Queued), None, 10)
        .await
        .unwrap();
    assert_eq!(queued.items.len(), 3);
    assert!(queued.items.iter().all(|j| j.status == JobStatus::Queued));
    assert!(
        store
            .list_jobs("default", &status(JobStatus::Failed), None, 10)
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // All of them, newest first, two per page.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let p = store
            .list_jobs("default", &ListFilter::default(), before, 2)
            .await
            .unwrap();
        assert!(p.items.len() <= 2);
        seen.extend(p.items.iter().map(|j| j.id));
        match p.next {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    let newest_first: Vec<Uuid> = ids.iter().rev().copied().collect();
    assert_eq!(seen, newest_first);
}

async fn queue_position_and_counts(store: Arc<dyn Store>) {
    // Inserted a(0) b(5) c(0) d(5): the queue runs b d a c.
    let (a, b, c, d) = (job(0), job(5), job(0), job(5));
    for j in [&a, &b, &c, &d] {
        store.insert_job(j).await.unwrap();
    }
    for (j, pos) in [(&b, 0), (&d, 1), (&a, 2), (&c, 3)] {
        assert_eq!(store.queue_position(j.id).await.unwrap(), Some(pos));
    }
    assert_eq!(store.queue_position(Uuid::new_v4()).await.unwrap(), None);
    assert_eq!(store.count_jobs(JobStatus::Queued).await.unwrap(), 4);

    let claimed = store
        .claim_next_job("w", 60_000, 0, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, b.id);
    assert_eq!(store.queue_position(b.id).await.unwrap(), None, "running");
    assert_eq!(store.queue_position(d.id).await.unwrap(), Some(0));
    assert_eq!(store.queue_position(c.id).await.unwrap(), Some(2));
    assert_eq!(store.count_jobs(JobStatus::Queued).await.unwrap(), 3);
    assert_eq!(store.count_jobs(JobStatus::Running).await.unwrap(), 1);
    assert_eq!(store.count_jobs(JobStatus::Succeeded).await.unwrap(), 0);
}

async fn claim_takes_priority_then_age(store: Arc<dyn Store>) {
    let (a, b, c, d) = (job(0), job(5), job(0), job(-1));
    let e = job(5);
    for j in [&a, &b, &c, &d, &e] {
        store.insert_job(j).await.unwrap();
    }
    let before = now_ms();
    let mut order = Vec::new();
    while let Some(j) = store
        .claim_next_job("node-a", 60_000, 0, true)
        .await
        .unwrap()
    {
        assert_eq!(j.status, JobStatus::Running);
        assert_eq!(j.attempt, 1);
        assert!(j.started_at.is_some_and(|t| t >= before));
        order.push(j.id);
    }
    assert_eq!(order, [b.id, e.id, a.id, c.id, d.id]);

    // A reclaim is a new attempt; the job keeps its first start time.
    let started = get(&store, a.id).await.started_at;
    assert_eq!(store.requeue_running(false).await.unwrap(), 5);
    let again = store
        .claim_next_job("node-b", 60_000, 0, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.id, b.id);
    assert_eq!(again.attempt, 2);
    let a2 = loop {
        let j = store
            .claim_next_job("node-b", 60_000, 0, true)
            .await
            .unwrap()
            .unwrap();
        if j.id == a.id {
            break j;
        }
    };
    assert_eq!(a2.started_at, started);
}

/// Fair shares of the training slots: a tenant with fewer running jobs goes first, then
/// priority, then age; so a burst of one tenant's jobs waits behind another tenant's job.
async fn claim_serves_the_tenant_with_fewer_running_jobs_first(store: Arc<dyn Store>) {
    let of = |tenant: &str, priority: i32| JobRecord {
        tenant: tenant.into(),
        ..job(priority)
    };
    let burst: Vec<JobRecord> = (0..3).map(|_| of("a", 0)).collect();
    let urgent = of("a", 9);
    let other = of("b", 0);
    for j in burst.iter().chain([&urgent, &other]) {
        store.insert_job(j).await.unwrap();
    }
    let mut order = Vec::new();
    while let Some(j) = store
        .claim_next_job("node-a", 60_000, 0, true)
        .await
        .unwrap()
    {
        order.push(j.id);
    }
    // Nobody runs: priority decides (a's urgent job). Then b has fewer running jobs than a,
    // though its job is the newest; then a's burst in order.
    assert_eq!(
        order,
        [urgent.id, other.id, burst[0].id, burst[1].id, burst[2].id]
    );
}

async fn concurrent_claimers_never_share_a_job(store: Arc<dyn Store>) {
    let ids: HashSet<Uuid> = queued(&store, 20).await.into_iter().collect();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(j) = store
                .claim_next_job(&format!("worker-{w}"), 60_000, 0, true)
                .await
                .unwrap()
            {
                assert_eq!(j.attempt, 1, "claimed twice: {}", j.id);
                mine.push(j.id);
            }
            mine
        }));
    }
    let mut claimed = Vec::new();
    for t in tasks {
        claimed.extend(t.await.unwrap());
    }
    let unique: HashSet<Uuid> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), 20, "every job claimed exactly once");
    assert_eq!(unique, ids);
    assert_eq!(store.count_jobs(JobStatus::Running).await.unwrap(), 20);
}

async fn fenced_writes_of_an_old_attempt_change_nothing(store: Arc<dyn Store>) {
    let old = running(&store, 60_000).await;
    let id = old.id;
    assert!(
        store
            .record_epoch(id, 1, &epoch_record(1, 0.9), 1)
            .await
            .unwrap()
    );
    assert!(store.save_checkpoint(id, 1, 1, b"state-1").await.unwrap());

    // The node is presumed dead; another takes the job over.
    assert_eq!(store.requeue_running(false).await.unwrap(), 1);
    let new = store
        .claim_next_job("node-b", 60_000, 0, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((new.id, new.attempt), (id, 2));
    let before = get(&store, id).await;

    let m = model(Some(id));
    assert!(
        !store
            .record_epoch(id, 1, &epoch_record(2, 0.1), 2)
            .await
            .unwrap()
    );
    assert!(!store.save_checkpoint(id, 1, 2, b"stale").await.unwrap());
    assert!(!store.truncate_history(id, 1, 0).await.unwrap());
    assert!(!store.renew_lease(id, 1, 60_000).await.unwrap());
    assert!(!store.release_job(id, 1).await.unwrap());
    let finish = Finish::Succeeded {
        model: Box::new(m.clone()),
        stop_reason: "completed".into(),
    };
    assert!(!store.finish_job(id, 1, finish).await.unwrap());

    assert_eq!(get(&store, id).await, before, "the job record is untouched");
    assert_eq!(
        store.history(id, 0, i64::MAX).await.unwrap(),
        [epoch_record(1, 0.9)]
    );
    assert_eq!(
        store.load_checkpoint(id).await.unwrap(),
        Some((1, b"state-1".to_vec()))
    );
    assert_eq!(
        store.get_model(m.id).await.unwrap(),
        None,
        "no model stored"
    );

    // The new attempt writes as usual.
    assert!(store.renew_lease(id, 2, 60_000).await.unwrap());
    assert!(
        store
            .record_epoch(id, 2, &epoch_record(2, 0.5), 2)
            .await
            .unwrap()
    );
    assert!(store.save_checkpoint(id, 2, 2, b"state-2").await.unwrap());
    assert_eq!(get(&store, id).await.epoch, 2);

    // Once the job is finished, even its own attempt is fenced out.
    assert!(store.finish_job(id, 2, Finish::Cancelled).await.unwrap());
    assert!(
        !store
            .record_epoch(id, 2, &epoch_record(3, 0.4), 3)
            .await
            .unwrap()
    );
    assert!(!store.save_checkpoint(id, 2, 3, b"late").await.unwrap());
    assert!(!store.finish_job(id, 2, Finish::Cancelled).await.unwrap());
    assert_eq!(store.history(id, 0, i64::MAX).await.unwrap().len(), 2);
}

async fn history_replace_and_truncate(store: Arc<dyn Store>) {
    let j = running(&store, 60_000).await;
    let (id, at) = (j.id, j.attempt);
    for e in 1..=3 {
        assert!(
            store
                .record_epoch(id, at, &epoch_record(e, 1.0 / e as f32), e)
                .await
                .unwrap()
        );
    }
    let all = store.history(id, 0, i64::MAX).await.unwrap();
    assert_eq!(
        all,
        [
            epoch_record(1, 1.0),
            epoch_record(2, 0.5),
            epoch_record(3, 1.0 / 3.0)
        ]
    );
    assert_eq!(
        store.history(id, 2, i64::MAX).await.unwrap(),
        [epoch_record(3, 1.0 / 3.0)]
    );
    let after = get(&store, id).await;
    assert_eq!(
        (after.epoch, after.latest),
        (3, Some(epoch_record(3, 1.0 / 3.0)))
    );

    // Resumed from a checkpoint at epoch 1: later records go and will be recomputed.
    assert!(store.truncate_history(id, at, 1).await.unwrap());
    assert_eq!(
        store.history(id, 0, i64::MAX).await.unwrap(),
        [epoch_record(1, 1.0)]
    );
    let after = get(&store, id).await;
    assert_eq!((after.epoch, after.latest), (1, Some(epoch_record(1, 1.0))));

    // Recording an epoch that exists replaces it (an earlier attempt's record).
    assert!(
        store
            .record_epoch(id, at, &epoch_record(1, 0.75), 1)
            .await
            .unwrap()
    );
    assert_eq!(
        store.history(id, 0, i64::MAX).await.unwrap(),
        [epoch_record(1, 0.75)]
    );

    assert!(store.truncate_history(id, at, 0).await.unwrap());
    assert!(store.history(id, 0, i64::MAX).await.unwrap().is_empty());
    let after = get(&store, id).await;
    assert_eq!((after.epoch, after.latest), (0, None));
    assert!(
        store
            .history(Uuid::new_v4(), 0, i64::MAX)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn checkpoint_replace_and_load(store: Arc<dyn Store>) {
    let j = running(&store, 60_000).await;
    assert_eq!(store.load_checkpoint(j.id).await.unwrap(), None);
    let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 256) as u8).collect();
    assert!(store.save_checkpoint(j.id, 1, 3, &big).await.unwrap());
    assert_eq!(store.load_checkpoint(j.id).await.unwrap(), Some((3, big)));
    assert!(
        store
            .save_checkpoint(j.id, 1, 5, b"\x00five")
            .await
            .unwrap()
    );
    assert_eq!(
        store.load_checkpoint(j.id).await.unwrap(),
        Some((5, b"\x00five".to_vec()))
    );
}

async fn finish_stores_the_model_atomically(store: Arc<dyn Store>) {
    let j = running(&store, 60_000).await;
    assert!(store.save_checkpoint(j.id, 1, 4, b"state").await.unwrap());

    // The model insert fails (its id is taken): the job must not end without its model.
    let taken = model(None);
    store.insert_model(&taken).await.unwrap();
    let clash = Finish::Succeeded {
        model: Box::new(ModelRecord {
            job_id: Some(j.id),
            ..taken.clone()
        }),
        stop_reason: "completed".into(),
    };
    assert!(store.finish_job(j.id, 1, clash).await.is_err());
    let after = get(&store, j.id).await;
    assert_eq!(after.status, JobStatus::Running, "rolled back");
    assert_eq!((after.model_id, after.finished_at), (None, None));
    assert_eq!(store.get_model(taken.id).await.unwrap(), Some(taken));
    assert!(store.load_checkpoint(j.id).await.unwrap().is_some());

    let m = model(Some(j.id));
    let ok = Finish::Succeeded {
        model: Box::new(m.clone()),
        stop_reason: "early_stopping".into(),
    };
    let t0 = now_ms();
    assert!(store.finish_job(j.id, 1, ok).await.unwrap());
    let done = get(&store, j.id).await;
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.model_id, Some(m.id));
    assert_eq!(done.stop_reason.as_deref(), Some("early_stopping"));
    assert!(done.finished_at.is_some_and(|t| t >= t0));
    assert_eq!(done.error, None);
    assert_eq!(store.get_model(m.id).await.unwrap(), Some(m));
    assert_eq!(
        store.load_checkpoint(j.id).await.unwrap(),
        None,
        "checkpoint dropped"
    );
    assert_eq!(store.count_jobs(JobStatus::Running).await.unwrap(), 0);
}

async fn finish_failed_and_cancelled(store: Arc<dyn Store>) {
    let a = running(&store, 60_000).await;
    let failure = Failure::new(FailureKind::TrainingDiverged, "loss is NaN at epoch 3");
    assert!(
        store
            .finish_job(a.id, 1, Finish::Failed(failure.clone()))
            .await
            .unwrap()
    );
    let a = get(&store, a.id).await;
    assert_eq!(
        (a.status, a.error, a.model_id),
        (JobStatus::Failed, Some(failure), None)
    );
    assert!(a.finished_at.is_some());

    let b = running(&store, 60_000).await;
    assert!(store.finish_job(b.id, 1, Finish::Cancelled).await.unwrap());
    let b = get(&store, b.id).await;
    assert_eq!((b.status, b.error), (JobStatus::Cancelled, None));
    assert!(b.finished_at.is_some());
}

async fn cancel_queued_vs_running(store: Arc<dyn Store>) {
    let q = queued(&store, 1).await[0];
    let c = store.request_cancel(q).await.unwrap().unwrap();
    assert_eq!(
        c.status,
        JobStatus::Cancelled,
        "a queued job is cancelled at once"
    );
    assert!(c.cancel_requested);
    assert!(c.finished_at.is_some());
    assert_eq!(
        store.claim_next_job("w", 60_000, 0, true).await.unwrap(),
        None
    );

    let r = running(&store, 60_000).await;
    let c = store.request_cancel(r.id).await.unwrap().unwrap();
    assert_eq!(
        c.status,
        JobStatus::Running,
        "a running job is only flagged"
    );
    assert!(c.cancel_requested);
    assert_eq!(c.finished_at, None);
    assert_eq!(get(&store, r.id).await, c);
    assert!(store.finish_job(r.id, 1, Finish::Cancelled).await.unwrap());

    // A finished job does not change.
    let done = running(&store, 60_000).await;
    assert!(
        store
            .finish_job(
                done.id,
                1,
                Finish::Failed(Failure::new(FailureKind::TrainingCrashed, "x"))
            )
            .await
            .unwrap()
    );
    let before = get(&store, done.id).await;
    assert_eq!(store.request_cancel(done.id).await.unwrap(), Some(before));
    assert_eq!(store.request_cancel(Uuid::new_v4()).await.unwrap(), None);
}

async fn stop_request(store: Arc<dyn Store>) {
    let r = running(&store, 60_000).await;
    let s = store.request_stop(r.id).await.unwrap().unwrap();
    assert!(s.stop_requested);
    assert_eq!(s.status, JobStatus::Running);
    let q = queued(&store, 1).await[0];
    assert!(store.request_stop(q).await.unwrap().unwrap().stop_requested);
    assert!(store.delete_job(q).await.unwrap());
    assert!(store.finish_job(r.id, 1, Finish::Cancelled).await.unwrap());
    let other = running(&store, 60_000).await;
    assert!(
        store
            .finish_job(other.id, 1, Finish::Cancelled)
            .await
            .unwrap()
    );
    assert!(
        !store
            .request_stop(other.id)
            .await
            .unwrap()
            .unwrap()
            .stop_requested
    );
    assert_eq!(store.request_stop(Uuid::new_v4()).await.unwrap(), None);
}

async fn delete_job_only_when_not_running(store: Arc<dyn Store>) {
    let r = running(&store, 60_000).await;
    assert!(
        store
            .record_epoch(r.id, 1, &epoch_record(1, 0.5), 1)
            .await
            .unwrap()
    );
    assert!(store.save_checkpoint(r.id, 1, 1, b"s").await.unwrap());
    assert!(!store.delete_job(r.id).await.unwrap(), "running jobs stay");
    assert!(store.get_job(r.id).await.unwrap().is_some());

    assert_eq!(store.requeue_running(false).await.unwrap(), 1);
    assert!(store.delete_job(r.id).await.unwrap());
    assert!(!store.delete_job(r.id).await.unwrap());
    assert_eq!(store.get_job(r.id).await.unwrap(), None);
    assert!(
        store.history(r.id, 0, i64::MAX).await.unwrap().is_empty(),
        "history goes too"
    );
    assert_eq!(
        store.load_checkpoint(r.id).await.unwrap(),
        None,
        "checkpoint goes too"
    );
}

async fn lease_expiry_requeues_only_expired_jobs(store: Arc<dyn Store>) {
    let ids = queued(&store, 3).await;
    let dead = store
        .claim_next_job("dead-node", -1_000, 0, true)
        .await
        .unwrap()
        .unwrap();
    let alive = store
        .claim_next_job("live-node", 60_000, 0, true)
        .await
        .unwrap()
        .unwrap();
    let renewed = store
        .claim_next_job("slow-node", -1_000, 0, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!([dead.id, alive.id, renewed.id], [ids[0], ids[1], ids[2]]);
    // A heartbeat in time saves a lease that had run out but was not yet reaped.
    assert!(store.renew_lease(renewed.id, 1, 60_000).await.unwrap());

    assert_eq!(store.requeue_running(true).await.unwrap(), 1);
    assert_eq!(get(&store, dead.id).await.status, JobStatus::Queued);
    assert_eq!(get(&store, alive.id).await.status, JobStatus::Running);
    assert_eq!(get(&store, renewed.id).await.status, JobStatus::Running);
    assert_eq!(store.requeue_running(true).await.unwrap(), 0);
    assert!(
        !store.renew_lease(dead.id, 1, 60_000).await.unwrap(),
        "lost its lease"
    );

    let retaken = store
        .claim_next_job("live-node", 60_000, 0, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((retaken.id, retaken.attempt), (dead.id, 2));

    // A single node's start-up: everything that was running is an orphan.
    assert_eq!(store.requeue_running(false).await.unwrap(), 3);
    assert_eq!(store.count_jobs(JobStatus::Queued).await.unwrap(), 3);
    assert_eq!(store.count_jobs(JobStatus::Running).await.unwrap(), 0);
}

async fn release_puts_the_job_back(store: Arc<dyn Store>) {
    let r = running(&store, 60_000).await;
    assert!(store.save_checkpoint(r.id, 1, 2, b"s").await.unwrap());
    assert!(store.release_job(r.id, 1).await.unwrap());
    let q = get(&store, r.id).await;
    assert_eq!((q.status, q.attempt), (JobStatus::Queued, 1));
    assert_eq!(store.queue_position(r.id).await.unwrap(), Some(0));
    assert_eq!(
        store.load_checkpoint(r.id).await.unwrap(),
        Some((2, b"s".to_vec()))
    );
    assert!(!store.release_job(r.id, 1).await.unwrap());
}

/// A job whose node stops while it runs gets a crash; a checkpoint clears them; at
/// `MAX_CRASHES` in a row (no checkpoint in between) it fails instead of looping.
async fn crash_cap_fails_instead_of_looping(store: Arc<dyn Store>) {
    let id = queued(&store, 1).await[0];
    let claim = |suspects: bool| {
        let store = store.clone();
        async move {
            store
                .claim_next_job("doomed", -1, 0, suspects)
                .await
                .unwrap()
        }
    };
    // Crashes with progress in between never add up: a job that checkpoints between kills
    // was not what killed its node.
    for attempt in 1..=5 {
        let j = claim(true).await.unwrap();
        assert_eq!((j.attempt, j.crashes), (attempt, i64::from(attempt > 1)));
        assert!(
            store
                .save_checkpoint(id, attempt, attempt, b"s")
                .await
                .unwrap()
        );
        assert_eq!(get(&store, id).await.crashes, 0);
        assert_eq!(store.requeue_running(true).await.unwrap(), 1);
        let j = get(&store, id).await;
        assert_eq!(
            (j.status, j.error.as_ref(), j.crashes),
            (JobStatus::Queued, None, 1)
        );
    }
    // A suspect is claimed only by a node that runs nothing else.
    assert_eq!(claim(false).await, None);
    let j = claim(true).await.unwrap();
    assert_eq!(j.crashes, 1);
    assert_eq!(store.requeue_running(true).await.unwrap(), 1);
    assert_eq!(get(&store, id).await.crashes, 2);
    // The third crash in a row fails it.
    let j = claim(true).await.unwrap();
    let t0 = now_ms();
    assert_eq!(store.requeue_running(true).await.unwrap(), 1);
    let failed = get(&store, id).await;
    assert_eq!(failed.status, JobStatus::Failed);
    let error = failed.error.unwrap();
    assert_eq!(error.kind, FailureKind::TooManyAttempts);
    assert!(error.detail.contains("stopped 3 times"), "{}", error.detail);
    assert!(failed.finished_at.is_some_and(|t| t >= t0));
    assert_eq!(store.load_checkpoint(id).await.unwrap(), None);
    assert_eq!(claim(true).await, None);
    assert!(
        !store
            .finish_job(id, j.attempt, Finish::Cancelled)
            .await
            .unwrap()
    );
}

/// Among queued jobs, those without crashes go first, and a node that runs something never
/// takes a suspect.
async fn a_suspect_waits_for_an_idle_node(store: Arc<dyn Store>) {
    let ids = queued(&store, 2).await;
    let first = store
        .claim_next_job("n", -1, 0, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.id, ids[0]);
    assert_eq!(store.requeue_running(true).await.unwrap(), 1);
    // ids[0] has a crash now: ids[1] goes first even for an idle node.
    let next = store
        .claim_next_job("n", 60_000, 0, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.id, ids[1]);
    assert_eq!(
        store.claim_next_job("n", 60_000, 0, false).await.unwrap(),
        None
    );
    let alone = store
        .claim_next_job("m", 60_000, 0, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((alone.id, alone.crashes), (ids[0], 1));
}

// ---------------------------------------------------------------------------------------------
// Idempotency keys

/// A key is reserved (status 0) by the first request's fingerprint; only that request's answer
/// replaces the reservation, no answer replaces an answer, and a reservation — never an
/// answer — can be given back.
async fn an_idempotency_reservation_is_replaced_only_by_its_own_answer(store: Arc<dyn Store>) {
    let (t, route, key) = ("default", "POST /v1/datasets", "k");
    let answer = |fp: &str, status: u16, body: serde_json::Value| IdempotentAnswer {
        fingerprint: fp.into(),
        status,
        location: None,
        body,
    };
    store
        .remember_answer(t, route, key, &answer("A", 0, json!(null)))
        .await
        .unwrap();
    // Another request's reservation or answer does not take the key.
    store
        .remember_answer(t, route, key, &answer("B", 0, json!(null)))
        .await
        .unwrap();
    store
        .remember_answer(t, route, key, &answer("B", 201, json!({"id": "b"})))
        .await
        .unwrap();
    let held = store
        .idempotent_answer(t, route, key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(held, answer("A", 0, json!(null)));
    // B cannot give back A's reservation.
    store.forget_reservation(t, route, key, "B").await.unwrap();
    assert!(
        store
            .idempotent_answer(t, route, key)
            .await
            .unwrap()
            .is_some()
    );
    // A's answer replaces A's reservation, and then nothing replaces it.
    store
        .remember_answer(t, route, key, &answer("A", 201, json!({"id": "a"})))
        .await
        .unwrap();
    store
        .remember_answer(t, route, key, &answer("A", 0, json!(null)))
        .await
        .unwrap();
    store
        .remember_answer(t, route, key, &answer("A", 201, json!({"id": "again"})))
        .await
        .unwrap();
    store.forget_reservation(t, route, key, "A").await.unwrap();
    let held = store
        .idempotent_answer(t, route, key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(held, answer("A", 201, json!({"id": "a"})));
    // A reservation given back frees the key for another request.
    store
        .remember_answer(t, route, "k2", &answer("A", 0, json!(null)))
        .await
        .unwrap();
    store.forget_reservation(t, route, "k2", "A").await.unwrap();
    assert!(
        store
            .idempotent_answer(t, route, "k2")
            .await
            .unwrap()
            .is_none()
    );
}

// ---------------------------------------------------------------------------------------------
// Named deployments

async fn deployments_version_roll_and_guard_their_models(store: Arc<dyn Store>) {
    let (a, b) = (model(None), model(None));
    store.insert_model(&a).await.unwrap();
    store.insert_model(&b).await.unwrap();
    let d = store
        .deploy("default", "iris", a.id, None, 1000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((d.version, d.model_id, d.created_at), (1, a.id, 1000));
    let d = store
        .deploy("default", "iris", b.id, None, 2000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (d.version, d.model_id, d.created_at, d.updated_at),
        (2, b.id, 1000, 2000)
    );
    // A conditional deploy moves only from the version it expects.
    assert_eq!(
        store
            .deploy("default", "iris", a.id, Some(1), 3000)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .deploy("default", "nope", a.id, Some(1), 3000)
            .await
            .unwrap(),
        None
    );
    let d = store
        .deploy("default", "iris", a.id, Some(2), 3000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((d.version, d.model_id), (3, a.id));
    assert_eq!(
        store.get_deployment("default", "iris").await.unwrap(),
        Some(d.clone())
    );
    // Names are per tenant.
    assert_eq!(store.get_deployment("other", "iris").await.unwrap(), None);
    let versions: Vec<(i64, Uuid)> = store
        .deployment_versions("default", "iris", 10)
        .await
        .unwrap()
        .iter()
        .map(|v| (v.version, v.model_id))
        .collect();
    assert_eq!(versions, vec![(3, a.id), (2, b.id), (1, a.id)]);
    assert_eq!(
        store
            .deployment_versions("default", "iris", 1)
            .await
            .unwrap()
            .len(),
        1
    );
    let v2 = store
        .deployment_version("default", "iris", 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((v2.version, v2.model_id, v2.created_at), (2, b.id, 2000));
    assert_eq!(
        store
            .deployment_version("default", "iris", 4)
            .await
            .unwrap(),
        None
    );
    store
        .deploy("default", "setosa", a.id, None, 4000)
        .await
        .unwrap();
    let page = store.list_deployments("default", None, 1).await.unwrap();
    assert_eq!((page.total, page.items[0].name.as_str()), (2, "setosa"));
    let page2 = store
        .list_deployments("default", page.next, 1)
        .await
        .unwrap();
    assert_eq!(page2.items[0].name, "iris");
    assert_eq!(
        store
            .list_deployments("other", None, 10)
            .await
            .unwrap()
            .total,
        0
    );

    // The deployed model: named, and its row cannot go (the foreign key); the other can.
    assert_eq!(
        store.deployments_of_model(a.id).await.unwrap(),
        vec!["iris".to_string(), "setosa".to_string()]
    );
    assert!(store.delete_model(a.id).await.is_err());
    assert!(store.get_model(a.id).await.unwrap().is_some());
    assert!(store.delete_model(b.id).await.unwrap());
    // Deleting a name deletes its history, not its model.
    assert!(store.delete_deployment("default", "iris").await.unwrap());
    assert!(!store.delete_deployment("default", "iris").await.unwrap());
    assert_eq!(
        store
            .deployment_versions("default", "iris", 10)
            .await
            .unwrap(),
        vec![]
    );
    assert!(store.delete_deployment("default", "setosa").await.unwrap());
    assert!(store.delete_model(a.id).await.unwrap());
    // A deploy of a model that is not there fails (the foreign key).
    assert!(
        store
            .deploy("default", "iris", a.id, None, 5000)
            .await
            .is_err()
    );
    assert_eq!(store.get_deployment("default", "iris").await.unwrap(), None);
}

async fn concurrent_deploys_of_one_name_each_get_a_version(store: Arc<dyn Store>) {
    let m = model(None);
    store.insert_model(&m).await.unwrap();
    let mut tasks = vec![];
    for _ in 0..8 {
        let (store, id) = (store.clone(), m.id);
        tasks.push(tokio::spawn(async move {
            store.deploy("default", "busy", id, None, now_ms()).await
        }));
    }
    let mut versions = vec![];
    for t in tasks {
        versions.push(t.await.unwrap().unwrap().unwrap().version);
    }
    versions.sort();
    assert_eq!(versions, (1..=8).collect::<Vec<i64>>());
    assert_eq!(
        store
            .deployment_versions("default", "busy", 100)
            .await
            .unwrap()
            .len(),
        8
    );
}

async fn a_batch_keeps_its_chunks_and_ends_once(store: Arc<dyn Store>) {
    let b = BatchRecord {
        id: Uuid::new_v4(),
        tenant: "default".into(),
        model_id: Uuid::new_v4(),
        dataset_id: Uuid::new_v4(),
        status: "running".into(),
        rows_total: 3,
        rows_done: 0,
        error: None,
        created_at: 1000,
        updated_at: 1000,
        finished_at: None,
    };
    store.insert_batch(&b).await.unwrap();
    assert_eq!(store.get_batch(b.id).await.unwrap(), Some(b.clone()));
    assert!(
        store
            .append_batch_chunk(b.id, 0, "a,b\n", 0, 1100)
            .await
            .unwrap()
    );
    assert!(
        store
            .append_batch_chunk(b.id, 1, "1,2\n3,4\n", 2, 1200)
            .await
            .unwrap()
    );
    let now = store.get_batch(b.id).await.unwrap().unwrap();
    assert_eq!((now.rows_done, now.updated_at), (2, 1200));
    assert!(
        store
            .finish_batch(b.id, "succeeded", None, 1300)
            .await
            .unwrap()
    );
    // Ended once: neither a second end nor a late chunk changes it.
    assert!(
        !store
            .finish_batch(b.id, "failed", Some("late"), 1400)
            .await
            .unwrap()
    );
    assert!(
        !store
            .append_batch_chunk(b.id, 2, "5,6\n", 3, 1500)
            .await
            .unwrap()
    );
    let done = store.get_batch(b.id).await.unwrap().unwrap();
    assert_eq!(
        (done.status.as_str(), done.error, done.finished_at),
        ("succeeded", None, Some(1300))
    );
    assert_eq!(
        store.batch_chunk(b.id, 1).await.unwrap().as_deref(),
        Some("1,2\n3,4\n")
    );
    assert_eq!(store.batch_chunk(b.id, 2).await.unwrap(), None);
    assert_eq!(store.get_batch(Uuid::new_v4()).await.unwrap(), None);
}

// ---------------------------------------------------------------------------------------------
// Issue 14: continued jobs, warm starts, range tests, sweeps

async fn a_succeeded_job_keeps_its_final_state_and_a_continuation_copies_it(store: Arc<dyn Store>) {
    let a = running(&store, 60_000).await;
    for e in 1..=3 {
        assert!(
            store
                .record_epoch(a.id, 1, &epoch_record(e, e as f32), e)
                .await
                .unwrap()
        );
    }
    let stored = || async { store.usage("default").await.unwrap().stored_bytes };
    // Histories and checkpoints count towards the tenant's stored bytes (issue 23) …
    let before = stored().await;
    assert!(before > 0, "three epochs' history");
    assert!(store.save_checkpoint(a.id, 1, 3, b"state-3").await.unwrap());
    assert_eq!(stored().await - before, 7, "the checkpoint's bytes");
    // … and so does a final state: a job's checkpoint becomes its final state when it ends,
    // so a job ending with a state adds as much as one ending without (whose checkpoint-less
    // run stored none).
    let c = running(&store, 60_000).await;
    let done = |job: Uuid| Finish::Succeeded {
        model: Box::new(model(Some(job))),
        stop_reason: "completed".into(),
    };
    let u0 = stored().await;
    assert!(store.finish_job(c.id, 1, done(c.id)).await.unwrap());
    let u1 = stored().await;
    assert!(store.finish_job(a.id, 1, done(a.id)).await.unwrap());
    let u2 = stored().await;
    assert_eq!((u2 - u1) - (u1 - u0), 0, "{u0} {u1} {u2}");
    assert_eq!(
        store.final_state(a.id).await.unwrap().map(|s| s.1.len()),
        Some(7)
    );
    assert_eq!(store.load_checkpoint(a.id).await.unwrap(), None);
    assert_eq!(
        store.final_state(a.id).await.unwrap(),
        Some((3, b"state-3".to_vec()))
    );

    let b = job(0);
    let from = Continuation {
        job_id: a.id,
        epoch: 2,
        state: b"reopened".to_vec(),
    };
    store.insert_job_from(&b, Some(&from), None).await.unwrap();
    let got = get(&store, b.id).await;
    assert_eq!((got.status, got.epoch), (JobStatus::Queued, 2));
    assert_eq!(got.latest, Some(epoch_record(2, 2.0)));
    assert_eq!(
        store.history(b.id, 0, i64::MAX).await.unwrap(),
        vec![epoch_record(1, 1.0), epoch_record(2, 2.0)]
    );
    assert_eq!(
        store.load_checkpoint(b.id).await.unwrap(),
        Some((2, b"reopened".to_vec()))
    );
    assert_eq!(
        store.history(a.id, 0, i64::MAX).await.unwrap().len(),
        3,
        "the source keeps its own"
    );
    // Deleting the source job takes its final state with it.
    assert!(store.delete_job(a.id).await.unwrap());
    assert_eq!(store.final_state(a.id).await.unwrap(), None);
}

async fn a_model_a_job_starts_from_is_not_deleted(store: Arc<dyn Store>) {
    let m = model(None);
    store.insert_model(&m).await.unwrap();
    let mut j = job(0);
    let mut spec = j.spec.to_value();
    spec["init_model_id"] = json!(m.id);
    j.spec = JobSpec::from_value(spec).unwrap();
    assert_eq!(j.spec.init_model_id, Some(m.id));
    store.insert_job(&j).await.unwrap();
    assert_eq!(get(&store, j.id).await.spec.init_model_id, Some(m.id));
    assert!(!store.delete_model(m.id).await.unwrap());
    assert_eq!(store.jobs_using_model(m.id, 10).await.unwrap(), vec![j.id]);
    store.request_cancel(j.id).await.unwrap();
    assert!(store.jobs_using_model(m.id, 10).await.unwrap().is_empty());
    assert!(store.delete_model(m.id).await.unwrap());
}

async fn a_range_test_is_recorded_by_the_attempt_that_owns_the_job(store: Arc<dyn Store>) {
    let j = running(&store, 60_000).await;
    let v = json!({"learning_rate": to_json(&0.01f32), "points": []});
    assert!(
        !store.record_lr_range_test(j.id, 2, &v).await.unwrap(),
        "fenced"
    );
    assert_eq!(store.lr_range_test(j.id).await.unwrap(), None);
    assert!(store.record_lr_range_test(j.id, 1, &v).await.unwrap());
    assert!(
        store.record_lr_range_test(j.id, 1, &v).await.unwrap(),
        "replaced"
    );
    assert_eq!(store.lr_range_test(j.id).await.unwrap(), Some(v));
}

async fn sweeps_their_trials_and_the_dataset_they_use(store: Arc<dyn Store>) {
    let d = dataset("sweep data");
    store.insert_dataset(&d, vec![1, 2, 3]).await.unwrap();
    let s = sweep(d.id, 2);
    store.insert_sweep(&s).await.unwrap();
    let got = store.get_sweep(s.id).await.unwrap().unwrap();
    assert_eq!(
        SweepRecord {
            seq: 0,
            ..got.clone()
        },
        s
    );
    let other = SweepRecord {
        id: Uuid::new_v4(),
        tenant: "other".into(),
        ..s.clone()
    };
    store.insert_sweep(&other).await.unwrap();
    let page = store.list_sweeps("default", None, 10).await.unwrap();
    assert_eq!((page.total, page.items.len()), (1, 1));
    assert_eq!(page.items[0].id, s.id);
    assert_eq!(store.unfinished_sweeps().await.unwrap().len(), 2);

    // An unfinished sweep keeps its dataset.
    assert!(!store.delete_dataset(d.id).await.unwrap());
    let mut users = store.sweeps_using_dataset(d.id, 10).await.unwrap();
    users.sort();
    let mut want = vec![s.id, other.id];
    want.sort();
    assert_eq!(users, want);

    // A trial is inserted with its job, in one transaction; the same trial twice is refused.
    let j = job(0);
    let t = TrialRecord {
        sweep_id: s.id,
        trial: 0,
        rung: 0,
        job_id: j.id,
        params: json!({"/l2": 0.001}),
    };
    store.insert_job_from(&j, None, Some(&t)).await.unwrap();
    assert_eq!(store.sweep_trials(s.id).await.unwrap(), vec![t.clone()]);
    let again = job(0);
    let dup = TrialRecord {
        job_id: again.id,
        ..t.clone()
    };
    assert!(
        store
            .insert_job_from(&again, None, Some(&dup))
            .await
            .is_err()
    );
    assert_eq!(
        store.get_job(again.id).await.unwrap(),
        None,
        "rolled back with it"
    );

    let best = json!({"trial": 0, "metric": 0.25});
    assert!(store.request_sweep_cancel(other.id).await.unwrap());
    assert!(
        store
            .get_sweep(other.id)
            .await
            .unwrap()
            .unwrap()
            .cancel_requested
    );
    assert!(
        store
            .update_sweep(s.id, JobStatus::Running, Some(&best))
            .await
            .unwrap()
    );
    let running = store.get_sweep(s.id).await.unwrap().unwrap();
    assert_eq!(
        (running.status, running.best.as_ref(), running.finished_at),
        (JobStatus::Running, Some(&best), None)
    );
    assert!(
        store
            .update_sweep(s.id, JobStatus::Succeeded, Some(&best))
            .await
            .unwrap()
    );
    assert!(
        store
            .get_sweep(s.id)
            .await
            .unwrap()
            .unwrap()
            .finished_at
            .is_some()
    );
    assert!(
        !store
            .update_sweep(s.id, JobStatus::Failed, None)
            .await
            .unwrap(),
        "a sweep ends once"
    );
    assert!(!store.request_sweep_cancel(s.id).await.unwrap());
    assert!(
        store
            .update_sweep(other.id, JobStatus::Cancelled, None)
            .await
            .unwrap()
    );
    assert!(store.unfinished_sweeps().await.unwrap().is_empty());
    assert!(store.delete_dataset(d.id).await.unwrap());

    assert!(store.delete_sweep(s.id).await.unwrap());
    assert_eq!(store.get_sweep(s.id).await.unwrap(), None);
    assert!(store.sweep_trials(s.id).await.unwrap().is_empty());
    assert!(
        store.get_job(j.id).await.unwrap().is_some(),
        "its jobs are deleted one by one"
    );
}

/// A sweep's trial jobs and models are linked to it and left out of listings while it exists
/// (its refit is listed); `include_trials` and `sweep_id` bring them back; a trial linked
/// twice keeps its first link.
async fn a_sweeps_trials_stay_out_of_listings_unless_asked_for(store: Arc<dyn Store>) {
    let d = dataset("sweep data");
    store.insert_dataset(&d, vec![1, 2, 3]).await.unwrap();
    let s = sweep(d.id, 1);
    store.insert_sweep(&s).await.unwrap();
    let link = |role, fold| SweepLink {
        sweep_id: s.id,
        role,
        trial: 0,
        rung: (role == SweepRole::Trial).then_some(1),
        fold,
    };
    let plain = job(0);
    let trial = JobRecord {
        sweep: Some(link(SweepRole::Trial, Some(2))),
        ..job(0)
    };
    let refit = JobRecord {
        sweep: Some(link(SweepRole::Refit, None)),
        ..job(0)
    };
    // Inserted before the link, as an earlier release did: linked afterwards.
    let old_trial = job(0);
    for j in [&plain, &trial, &refit, &old_trial] {
        store.insert_job(j).await.unwrap();
    }
    let trial_model = ModelRecord {
        sweep: trial.sweep.clone(),
        ..model(Some(trial.id))
    };
    let plain_model = model(Some(plain.id));
    let old_model = model(Some(old_trial.id));
    for m in [&trial_model, &plain_model, &old_model] {
        store.insert_model(m).await.unwrap();
    }
    store
        .link_to_sweep(old_trial.id, &link(SweepRole::Trial, Some(0)))
        .await
        .unwrap();
    // A second link changes nothing.
    store
        .link_to_sweep(trial.id, &link(SweepRole::Refit, None))
        .await
        .unwrap();
    assert_eq!(get(&store, trial.id).await.sweep, trial.sweep);
    assert_eq!(
        store.get_model(old_model.id).await.unwrap().unwrap().sweep,
        Some(link(SweepRole::Trial, Some(0)))
    );

    let job_ids = |filter: ListFilter| {
        let store = store.clone();
        async move {
            let p = store.list_jobs("default", &filter, None, 50).await.unwrap();
            let mut ids: Vec<Uuid> = p.items.iter().map(|j| j.id).collect();
            assert_eq!(p.total as usize, ids.len());
            ids.sort();
            ids
        }
    };
    let model_ids = |filter: ListFilter| {
        let store = store.clone();
        async move {
            let p = store
                .list_models("default", &filter, None, 50)
                .await
                .unwrap();
            let mut ids: Vec<Uuid> = p.items.iter().map(|m| m.id).collect();
            assert_eq!(p.total as usize, ids.len());
            ids.sort();
            ids
        }
    };
    let sorted = |mut v: Vec<Uuid>| {
        v.sort();
        v
    };
    assert_eq!(
        job_ids(ListFilter::default()).await,
        sorted(vec![plain.id, refit.id])
    );
    let all = ListFilter {
        include_trials: true,
        ..ListFilter::default()
    };
    assert_eq!(
        job_ids(all.clone()).await,
        sorted(vec![plain.id, trial.id, refit.id, old_trial.id])
    );
    let of_sweep = ListFilter {
        sweep_id: Some(s.id),
        ..ListFilter::default()
    };
    assert_eq!(
        job_ids(of_sweep.clone()).await,
        sorted(vec![trial.id, refit.id, old_trial.id])
    );
    assert_eq!(
        job_ids(ListFilter {
            status: Some(JobStatus::Queued),
            ..of_sweep.clone()
        })
        .await,
        sorted(vec![trial.id, refit.id, old_trial.id])
    );
    assert_eq!(model_ids(ListFilter::default()).await, vec![plain_model.id]);
    assert_eq!(
        model_ids(of_sweep.clone()).await,
        sorted(vec![trial_model.id, old_model.id])
    );
    assert_eq!(model_ids(all.clone()).await.len(), 3);
    // Every model trained on a dataset, without documents.
    let of_data = store
        .models_of_dataset("default", trial_model.dataset_id.unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(of_data.len(), 1);
    assert_eq!(of_data[0].document, Value::Null);
    assert_eq!(of_data[0].sweep, trial_model.sweep);

    // Once the sweep is gone, what is left of it is listed like any job or model.
    store
        .update_sweep(s.id, JobStatus::Cancelled, None)
        .await
        .unwrap();
    store.delete_sweep(s.id).await.unwrap();
    assert_eq!(job_ids(ListFilter::default()).await.len(), 4);
    assert_eq!(model_ids(ListFilter::default()).await.len(), 3);
}
