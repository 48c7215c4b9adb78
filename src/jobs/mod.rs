//! The queue and the workers: claim a job from the store, train it on the rayon pool (never
//! on the async runtime), write each epoch and periodic checkpoints back, and finish it with
//! a model or an error. Live epochs also go to a per-job broadcast for SSE subscribers.
//! Talks to `nn`, `data` and `store`; knows nothing about HTTP.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast, mpsc};
use uuid::Uuid;

use crate::data::Dataset;
use crate::nn::{self, Control, EpochRecord, Model, Session, TrainError, TrainSpec, TrainState};
use crate::store::{Failure, FailureKind, Finish, JobRecord, ModelRecord, Store, now_ms, to_json};

/// How long the range test of a job with `"learning_rate": "auto"` may run.
pub const RANGE_TEST_SECONDS: f64 = 60.0;

/// What SSE subscribers of a job hear.
#[derive(Clone, Debug)]
pub enum JobEvent {
    /// An epoch finished: its number and record.
    Epoch(i64, Value),
    /// The job reached a terminal state (or went back to the queue): re-read it.
    Status,
}

/// The session a job trains in: its stored dataset (and the separate validation dataset the
/// job names, if any), prepared as the spec says — its columns as stored, the encoder fitted
/// on the training split — and the dataset's feature names (which the model carries unless
/// its encoder names its raw columns). Deterministic from the spec and its seed, so a
/// checkpoint's snapshot gets the very preprocessing the worker used.
fn prepare(
    spec: &TrainSpec,
    dataset: &[u8],
    validation: Option<&[u8]>,
) -> Result<(Session, Vec<String>), TrainError> {
    let dataset = Dataset::from_bytes(dataset).map_err(TrainError::Checkpoint)?;
    let validation = validation
        .map(Dataset::from_bytes)
        .transpose()
        .map_err(TrainError::Checkpoint)?;
    let session = session(spec, &dataset, validation.as_ref())?;
    Ok((session, dataset.feature_names))
}

/// The model a job's checkpoint `state` holds: the checkpoint's network in the job's
/// session, named like the model the job will end with.
pub fn checkpoint_model(
    spec: &TrainSpec,
    dataset: &[u8],
    validation: Option<&[u8]>,
    state: &[u8],
) -> Result<Model, String> {
    let (session, feature_names) = prepare(spec, dataset, validation).map_err(|e| e.to_string())?;
    let state = TrainState::from_bytes(state)?;
    Ok(named(session.model(state.network), feature_names))
}

/// `model` with the feature names of the dataset it was trained on (a model whose encoder
/// already names its raw columns keeps those).
fn named(mut model: Model, feature_names: Vec<String>) -> Model {
    if model.feature_names.is_none() {
        model.feature_names = Some(feature_names);
    }
    model
}

/// The training session for `spec` on a stored dataset (and a separate validation dataset):
/// its columns as stored, the encoder fitted on the training split.
pub fn session(
    spec: &TrainSpec,
    dataset: &Dataset,
    validation: Option<&Dataset>,
) -> Result<Session, TrainError> {
    let samples = dataset.samples();
    let val = validation.map(|v| (v.samples(), v.columns.as_slice()));
    let mut session = Session::with_columns(
        spec,
        &samples,
        &dataset.columns,
        val.as_ref().map(|(s, c)| (s, *c)),
    )?;
    session.target_names = dataset.target_names.clone();
    Ok(session)
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub max_concurrent: usize,
    pub checkpoint_every: Duration,
    pub lease: Duration,
    pub worker: String,
    /// Jobs one tenant may train at once (0 = no limit); the rest wait in the queue.
    pub max_running_per_tenant: i64,
    /// Bytes one job may hold (0 = no limit), checked again when a job is claimed.
    pub max_job_memory: u64,
}

struct Inner {
    store: Arc<dyn Store>,
    pool: Arc<rayon::ThreadPool>,
    settings: Settings,
    wake: Notify,
    running: Mutex<HashMap<Uuid, Arc<Control>>>,
    hub: Mutex<HashMap<Uuid, broadcast::Sender<JobEvent>>>,
    shutting_down: AtomicBool,
    idle: Notify,
    /// This machine's measured training speed, for dry-run estimates (measured once, lazily).
    cost: tokio::sync::OnceCell<nn::run::cost::CostModel>,
    /// Told whenever a job ends here (sweeps advance on it).
    ended: Notify,
    /// A job with a crash to its name that runs here alone: nothing else is claimed until it
    /// saves a checkpoint or ends, so a job that stops the node stops nothing else.
    alone: Mutex<Option<Uuid>>,
    /// The tenant of each job running here, for shares of the slots.
    tenants: Mutex<HashMap<Uuid, String>>,
    /// The job asked to give its slot up to another tenant's (one at a time).
    yielding: Mutex<Option<Uuid>>,
}

/// Handle to the queue and its workers; cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

enum Msg {
    /// The learning-rate range test a job with `"learning_rate": "auto"` ran first.
    RangeTest(Value),
    Resumed(i64),
    Epoch(EpochRecord, Option<(i64, Vec<u8>)>),
    Done(Box<Result<nn::Outcome, TrainError>>),
}

impl Jobs {
    pub fn new(store: Arc<dyn Store>, pool: Arc<rayon::ThreadPool>, settings: Settings) -> Self {
        Jobs {
            inner: Arc::new(Inner {
                store,
                pool,
                settings,
                wake: Notify::new(),
                running: Mutex::new(HashMap::new()),
                hub: Mutex::new(HashMap::new()),
                shutting_down: AtomicBool::new(false),
                idle: Notify::new(),
                cost: tokio::sync::OnceCell::new(),
                ended: Notify::new(),
                alone: Mutex::new(None),
                tenants: Mutex::new(HashMap::new()),
                yielding: Mutex::new(None),
            }),
        }
    }

    /// What an epoch costs on this node's training pool: measured on the pool the first time
    /// it is asked for (a fraction of a second, on a blocking thread), then remembered.
    pub async fn cost_model(&self) -> nn::run::cost::CostModel {
        *self
            .inner
            .cost
            .get_or_init(|| async {
                let pool = self.inner.pool.clone();
                tokio::task::spawn_blocking(move || {
                    pool.install(|| nn::run::cost::CostModel::measure(&pool))
                })
                .await
                .unwrap_or(nn::run::cost::CostModel {
                    // Only if measuring panicked: a slow machine's figures.
                    per_epoch: 1e-4,
                    per_layer_batch: 2e-5,
                    per_flop: 1e-9,
                })
            })
            .await
    }

    /// Starts the dispatcher: it claims queued jobs while fewer than `max_concurrent` run.
    pub fn start(&self) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move { me.dispatch().await })
    }

    /// A job was queued: look at the queue now rather than at the next tick.
    pub fn notify(&self) {
        self.inner.wake.notify_one();
    }

    /// Runs `f` on the training pool from a blocking thread: computation a request asks for
    /// (an evaluation, a learning-rate range test) never runs on the async runtime.
    pub async fn on_pool<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rayon::ThreadPool) -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        let pool = self.inner.pool.clone();
        tokio::task::spawn_blocking(move || pool.install(|| f(&pool))).await
    }

    pub fn running_count(&self) -> usize {
        self.inner.running.lock().map_or(0, |r| r.len())
    }

    /// Subscribes to a job's live events (creating the channel if the job has not started).
    pub fn subscribe(&self, id: Uuid) -> broadcast::Receiver<JobEvent> {
        let mut hub = self.inner.hub.lock().expect("hub lock");
        hub.entry(id)
            .or_insert_with(|| broadcast::channel(1024).0)
            .subscribe()
    }

    fn publish(&self, id: Uuid, ev: JobEvent) {
        let hub = self.inner.hub.lock().expect("hub lock");
        if let Some(tx) = hub.get(&id) {
            let _ = tx.send(ev);
        }
    }

    fn close_channel(&self, id: Uuid) {
        let tx = self.inner.hub.lock().expect("hub lock").remove(&id);
        if let Some(tx) = tx {
            let _ = tx.send(JobEvent::Status);
        }
    }

    /// Drops a job's channel when nobody listens and the job does not run here.
    pub fn release_channel(&self, id: Uuid) {
        let running = self
            .inner
            .running
            .lock()
            .expect("running lock")
            .contains_key(&id);
        let mut hub = self.inner.hub.lock().expect("hub lock");
        if !running && hub.get(&id).is_some_and(|tx| tx.receiver_count() == 0) {
            hub.remove(&id);
        }
    }

    /// Signals a running job on this node to cancel (the store has the flag already).
    pub fn cancel_local(&self, id: Uuid) {
        if let Some(c) = self.inner.running.lock().expect("running lock").get(&id) {
            c.cancel.store(true, Ordering::Relaxed);
        }
    }

    /// Signals a running job on this node to stop and keep its model.
    pub fn stop_local(&self, id: Uuid) {
        if let Some(c) = self.inner.running.lock().expect("running lock").get(&id) {
            c.stop.store(true, Ordering::Relaxed);
        }
    }

    /// A queued job was cancelled before it ran: tell its subscribers.
    pub fn finished_elsewhere(&self, id: Uuid) {
        self.close_channel(id);
    }

    /// Graceful shutdown: stop claiming, interrupt running jobs (they go back to the queue
    /// and resume from their last checkpoint) and wait for them, at most `timeout`.
    pub async fn shutdown(&self, timeout: Duration) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        self.inner.wake.notify_one();
        for c in self.inner.running.lock().expect("running lock").values() {
            c.cancel.store(true, Ordering::Relaxed);
        }
        let deadline = Instant::now() + timeout;
        while self.running_count() > 0 && Instant::now() < deadline {
            let _ =
                tokio::time::timeout(Duration::from_millis(100), self.inner.idle.notified()).await;
        }
    }

    async fn dispatch(&self) {
        // Every lease/2, put jobs whose lease expired back in the queue: their node died
        // (or lost the database), and on a shared database another node must take them.
        let reap_every = self.inner.settings.lease / 2;
        let mut last_reap = Instant::now();
        loop {
            if self.inner.shutting_down.load(Ordering::SeqCst) {
                return;
            }
            if last_reap.elapsed() >= reap_every {
                last_reap = Instant::now();
                match self.inner.store.requeue_running(true).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(jobs = n, "requeued jobs whose lease expired"),
                    Err(e) => tracing::warn!(error = %e, "requeueing expired leases failed"),
                }
            }
            if self.running_count() >= self.inner.settings.max_concurrent {
                self.share_slots().await;
            }
            while self.running_count() < self.inner.settings.max_concurrent
                && self.inner.alone.lock().expect("alone lock").is_none()
            {
                let lease = self.inner.settings.lease.as_millis() as i64;
                let idle = self.running_count() == 0;
                match self
                    .inner
                    .store
                    .claim_next_job(
                        &self.inner.settings.worker,
                        lease,
                        self.inner.settings.max_running_per_tenant,
                        idle,
                    )
                    .await
                {
                    Ok(Some(job)) => {
                        self.inner
                            .tenants
                            .lock()
                            .expect("tenants lock")
                            .insert(job.id, job.tenant.clone());
                        if job.crashes > 0 {
                            tracing::warn!(job_id = %job.id, crashes = job.crashes,
                                "running a job alone: its node stopped while it ran before");
                            *self.inner.alone.lock().expect("alone lock") = Some(job.id);
                        }
                        let control = Arc::new(Control::default());
                        self.inner
                            .running
                            .lock()
                            .expect("running lock")
                            .insert(job.id, control.clone());
                        let me = self.clone();
                        tokio::spawn(async move { me.run(job, control).await });
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming a job failed");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Runs one claimed job inside its log span. `instrument`, not `span.enter()`: a guard
    /// held across an await stays entered on whatever task the thread polls next, so other
    /// jobs' lines would carry this job's id.
    async fn run(&self, job: JobRecord, control: Arc<Control>) {
        use tracing::Instrument;
        let span = tracing::info_span!("job", job_id = %job.id, attempt = job.attempt);
        self.run_attempt(job, control).instrument(span).await
    }

    async fn run_attempt(&self, job: JobRecord, control: Arc<Control>) {
        let id = job.id;
        tracing::info!("training started");
        if job.attempt == 1 {
            let wait = (now_ms() - job.created_at).max(0) as f64 / 1e3;
            metrics::histogram!("backprop_queue_wait_seconds").record(wait);
        }
        if job.cancel_requested {
            control.cancel.store(true, Ordering::Relaxed);
        }
        if job.stop_requested {
            control.stop.store(true, Ordering::Relaxed);
        }
        crate::crash::point("job_claimed");
        crate::crash::poisoned_job(job.spec.name.as_deref());
        let finish = self.train(&job, control.clone()).await;
        let store = &self.inner.store;
        let outcome = match &finish {
            Some(Finish::Succeeded { .. }) => "succeeded",
            Some(Finish::Failed { .. }) => "failed",
            Some(Finish::Cancelled) => "cancelled",
            None => "released",
        };
        metrics::counter!("backprop_jobs_finished_total", "outcome" => outcome).increment(1);
        let result = match finish {
            Some(f) => store.finish_job(id, job.attempt, f).await.map(|_| ()),
            None => store.release_job(id, job.attempt).await.map(|_| ()),
        };
        match result {
            Ok(()) => crate::crash::point("job_finished"),
            Err(e) => tracing::error!(error = %e, "could not record the end of a job"),
        }
        tracing::info!("training ended");
        self.inner.running.lock().expect("running lock").remove(&id);
        self.inner.tenants.lock().expect("tenants lock").remove(&id);
        {
            let mut y = self.inner.yielding.lock().expect("yielding lock");
            if *y == Some(id) {
                *y = None;
            }
        }
        self.not_alone(id);
        self.close_channel(id);
        self.inner.idle.notify_waiters();
        self.inner.ended.notify_waiters();
        self.inner.wake.notify_one();
    }

    /// Why `job` must not train on this node: its estimate, from its datasets' stored
    /// schemas, is over `max_job_memory` (submission checked the same, but the limit may have
    /// changed since, or this node may have less memory). `None` when it fits, or when a
    /// dataset stored by an earlier release has no schema to estimate from.
    async fn memory_refusal(
        &self,
        job: &JobRecord,
        dataset_id: Uuid,
    ) -> Result<Option<String>, crate::store::StoreError> {
        let limit = self.inner.settings.max_job_memory;
        if limit == 0 {
            return Ok(None);
        }
        let store = &self.inner.store;
        let summary = |d: Option<crate::store::DatasetRecord>| {
            d.and_then(|d| d.meta.get("schema").cloned())
                .and_then(|s| serde_json::from_value::<crate::data::Summary>(s).ok())
        };
        let Some(data) = summary(store.get_dataset(dataset_id).await?) else {
            return Ok(None);
        };
        let validation = match job.spec.validation_dataset_id {
            Some(v) => match summary(store.get_dataset(v).await?) {
                Some(s) => Some(s),
                None => return Ok(None),
            },
            None => None,
        };
        Ok(
            match data.job_memory(&job.spec.train, validation.as_ref()) {
                Ok(m) if m.bytes as u64 > limit => Some(m.refusal(limit)),
                _ => None,
            },
        )
    }

    /// Fair shares of this node's slots when they are all taken: if a tenant waits (has
    /// queued jobs) while running fewer jobs here than its share (the slots over the tenants
    /// running or waiting), the tenant running the most here beyond its share gives one
    /// slot up — one of its jobs checkpoints at its next epoch's end and goes
    /// back to the queue, where it resumes from that checkpoint, bit for bit, when a slot
    /// frees. The queue then gives the slot to the tenant with fewer running jobs.
    async fn share_slots(&self) {
        if self.inner.yielding.lock().expect("yielding lock").is_some() {
            return;
        }
        let waiting = match self.inner.store.waiting_tenants().await {
            Ok(w) => w,
            Err(e) => {
                tracing::debug!(error = %e, "reading the waiting tenants failed");
                return;
            }
        };
        let running: Vec<(Uuid, String)> = self
            .inner
            .tenants
            .lock()
            .expect("tenants lock")
            .iter()
            .map(|(id, t)| (*id, t.clone()))
            .collect();
        let mut count: HashMap<&str, usize> = HashMap::new();
        for (_, t) in &running {
            *count.entry(t.as_str()).or_default() += 1;
        }
        let mut tenants: Vec<&str> = count.keys().copied().collect();
        for w in &waiting {
            if !tenants.contains(&w.as_str()) {
                tenants.push(w);
            }
        }
        let share = (self.inner.settings.max_concurrent / tenants.len().max(1)).max(1);
        let starved = waiting
            .iter()
            .any(|w| count.get(w.as_str()).copied().unwrap_or(0) < share);
        let Some((&top, &n)) = count.iter().max_by_key(|(_, n)| **n) else {
            return;
        };
        if !starved || n <= share {
            return;
        }
        let Some(id) = running.iter().find(|(_, t)| t == top).map(|(id, _)| *id) else {
            return;
        };
        if let Some(c) = self.inner.running.lock().expect("running lock").get(&id) {
            tracing::info!(job_id = %id, tenant = top, share,
                "a tenant beyond its share of the slots yields one at its next epoch");
            c.yield_slot.store(true, Ordering::Relaxed);
            *self.inner.yielding.lock().expect("yielding lock") = Some(id);
        }
    }

    /// Job `id` no longer needs the node to itself (it saved a checkpoint, or ended): claim
    /// again.
    fn not_alone(&self, id: Uuid) {
        let mut alone = self.inner.alone.lock().expect("alone lock");
        if *alone == Some(id) {
            *alone = None;
            drop(alone);
            self.inner.wake.notify_one();
        }
    }

    /// Resolves when the next job ends on this node.
    pub async fn job_ended(&self) {
        self.inner.ended.notified().await
    }

    /// Trains one claimed job; `None` means it goes back to the queue (shutdown, or the
    /// database lost: the lease fences this attempt's writes either way).
    async fn train(&self, job: &JobRecord, control: Arc<Control>) -> Option<Finish> {
        let store = self.inner.store.clone();
        let (id, attempt) = (job.id, job.attempt);
        let spec = job.spec.train.clone();
        let Some(dataset_id) = job.dataset_id else {
            return Some(failed(FailureKind::NoDataset, "the job names no dataset"));
        };
        match self.memory_refusal(job, dataset_id).await {
            Ok(None) => {}
            Ok(Some(why)) => return Some(failed(FailureKind::TooLarge, why)),
            Err(e) => return lost(&e),
        }
        let blob = match store.dataset_data(dataset_id).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                return Some(failed(
                    FailureKind::DatasetGone,
                    format!("dataset {dataset_id} was deleted before the job ran"),
                ));
            }
            Err(e) => return lost(&e),
        };
        let validation_blob = match job.spec.validation_dataset_id {
            None => None,
            Some(v) => match store.dataset_data(v).await {
                Ok(Some(b)) => Some(b),
                Ok(None) => {
                    return Some(failed(
                        FailureKind::DatasetGone,
                        format!("validation dataset {v} was deleted before the job ran"),
                    ));
                }
                Err(e) => return lost(&e),
            },
        };
        let checkpoint = match store.load_checkpoint(id).await {
            Ok(c) => c,
            Err(e) => return lost(&e),
        };
        // A warm start: the model's weights, unless a checkpoint already holds newer ones.
        let init_network = match (job.spec.init_model_id, &checkpoint) {
            (Some(model_id), None) => match store.get_model(model_id).await {
                Ok(Some(m)) => match serde_json::from_value::<nn::ModelDocument>(m.document)
                    .map_err(|e| e.to_string())
                    .and_then(|d| Model::from_document(&d).map_err(|e| format!("{e:?}")))
                {
                    Ok(m) => Some(m.network),
                    Err(e) => {
                        return Some(failed(
                            FailureKind::InvalidSpec,
                            format!("/init_model_id: model {model_id} is unreadable: {e}"),
                        ));
                    }
                },
                Ok(None) => {
                    return Some(failed(
                        FailureKind::InvalidSpec,
                        format!("/init_model_id: model {model_id} was deleted before the job ran"),
                    ));
                }
                Err(e) => return lost(&e),
            },
            _ => None,
        };
        // The rate an earlier attempt's range test chose (it is deterministic, so a lost
        // record is simply measured again).
        let auto_rate = job.spec.auto_learning_rate;
        let chosen_rate = if auto_rate {
            match store.lr_range_test(id).await {
                Ok(r) => r
                    .and_then(|r| r.get("learning_rate").and_then(|v| v.as_f64()))
                    .map(|r| r as f32),
                Err(e) => return lost(&e),
            }
        } else {
            None
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
        let pool = self.inner.pool.clone();
        let every = self.inner.settings.checkpoint_every;
        let ctl = control.clone();
        let epochs = spec.epochs;
        let spawned = std::thread::Builder::new()
            .name(format!("train-{}", &id.to_string()[..8]))
            .spawn(move || {
                let outcome = (|| {
                    let (mut session, feature_names) =
                        prepare(&spec, &blob, validation_blob.as_deref())?;
                    if auto_rate {
                        let rate = match chosen_rate {
                            Some(r) => r,
                            None => {
                                let test = session.lr_range_test(
                                    &pool,
                                    &nn::run::lr_find::RangeSettings::default(),
                                    &ctl,
                                    RANGE_TEST_SECONDS,
                                )?;
                                let mut v = to_json(&test);
                                v["learning_rate"] = json!(test.suggested);
                                let _ = tx.send(Msg::RangeTest(v));
                                test.suggested
                            }
                        };
                        session.spec.optimizer.0.learning_rate = Some(rate);
                    }
                    let resume = match (checkpoint, init_network) {
                        (Some((_, bytes)), _) => {
                            Some(TrainState::from_bytes(&bytes).map_err(TrainError::Checkpoint)?)
                        }
                        (None, Some(net)) => Some(session.warm_state(net)?),
                        (None, None) => None,
                    };
                    let _ = tx.send(Msg::Resumed(resume.as_ref().map_or(0, |s| s.epoch as i64)));
                    let mut last = Instant::now();
                    let mut on_epoch = |rec: &EpochRecord, state: &TrainState| {
                        let yielding = ctl.yield_slot.load(Ordering::Relaxed);
                        let due = yielding
                            || last.elapsed() >= every
                            || state.finished
                            || state.epoch >= epochs;
                        let ckpt = due.then(|| {
                            last = Instant::now();
                            (state.epoch as i64, state.to_bytes())
                        });
                        let _ = tx.send(Msg::Epoch(rec.clone(), ckpt));
                        if yielding && !state.finished && state.epoch < epochs {
                            // Checkpointed at this epoch's end: stop here and go back to
                            // the queue.
                            ctl.cancel.store(true, Ordering::Relaxed);
                        }
                    };
                    // Not `pool.install` around the whole run: a pool worker waiting in a
                    // join may steal another job's installed closure and run it to its end
                    // before returning, so one job would sit at its epoch until the other
                    // finished. `run` hands the pool one epoch at a time instead.
                    let mut out = session.run(&pool, resume, &ctl, &mut on_epoch)?;
                    out.model = named(out.model, feature_names);
                    Ok(out)
                })();
                let _ = tx.send(Msg::Done(Box::new(outcome)));
            });
        if let Err(e) = spawned {
            return Some(failed(FailureKind::NoTrainingThread, e.to_string()));
        }
        // Keep the lease and watch for cancel/stop flags set through any node. Renewals come
        // three times per lease, so one slow round trip does not let it lapse.
        let lost_job = Arc::new(AtomicBool::new(false));
        let watcher = {
            let store = store.clone();
            let control = control.clone();
            let lost_job = lost_job.clone();
            let lease = self.inner.settings.lease;
            let every = (lease / 3).min(Duration::from_secs(2));
            use tracing::Instrument;
            tokio::spawn(
                async move {
                    loop {
                        tokio::time::sleep(every).await;
                        match store
                            .renew_lease(id, attempt, lease.as_millis() as i64)
                            .await
                        {
                            Ok(false) => {
                                // Lost the job (lease expired and someone else took it): stop writing.
                                tracing::warn!("lease lost; another node owns the job now");
                                lost_job.store(true, Ordering::SeqCst);
                                control.cancel.store(true, Ordering::Relaxed);
                                return;
                            }
                            Ok(true) => {}
                            Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
                        }
                        if let Ok(Some(j)) = store.get_job(id).await {
                            if j.cancel_requested {
                                control.cancel.store(true, Ordering::Relaxed);
                            }
                            if j.stop_requested {
                                control.stop.store(true, Ordering::Relaxed);
                            }
                        }
                    }
                }
                .instrument(tracing::Span::current()),
            )
        };
        // A write that fails (database away) or is fenced off (the lease lapsed) ends this
        // attempt: the job goes back to the queue — now, or when its lease expires — and
        // resumes from its last checkpoint, so the history never has a hole or a duplicate.
        let give_up = |why: &str| {
            tracing::warn!(
                reason = why,
                "interrupting the job; it will resume elsewhere"
            );
            lost_job.store(true, Ordering::SeqCst);
            control.cancel.store(true, Ordering::Relaxed);
        };
        let mut result = None;
        while let Some(msg) = rx.recv().await {
            match msg {
                Msg::RangeTest(v) => match store.record_lr_range_test(id, attempt, &v).await {
                    Ok(true) => {}
                    Ok(false) => give_up("fenced off"),
                    Err(e) => give_up(&format!("could not record the range test: {e}")),
                },
                Msg::Resumed(epoch) => {
                    match store.truncate_history(id, attempt, epoch).await {
                        Ok(true) => {}
                        Ok(false) => give_up("fenced off"),
                        Err(e) => give_up(&format!("could not truncate history: {e}")),
                    }
                    if epoch > 0 {
                        tracing::info!(epoch, "resumed from checkpoint");
                    }
                }
                Msg::Epoch(rec, ckpt) => {
                    metrics::histogram!("backprop_epoch_duration_seconds")
                        .record(rec.elapsed_ms / 1e3);
                    // rate(backprop_training_samples_total) is the training throughput
                    let samples = (rec.samples_per_second * rec.elapsed_ms / 1e3).round();
                    metrics::counter!("backprop_training_samples_total").increment(samples as u64);
                    metrics::counter!("backprop_epochs_total").increment(1);
                    let value = to_json(&rec);
                    match store
                        .record_epoch(id, attempt, &value, rec.epoch as i64)
                        .await
                    {
                        Ok(true) => {
                            crate::crash::point("epoch_recorded");
                            self.publish(id, JobEvent::Epoch(rec.epoch as i64, value))
                        }
                        Ok(false) => give_up("fenced off"),
                        Err(e) => give_up(&format!("could not record an epoch: {e}")),
                    }
                    // Never checkpoint past the recorded history: a checkpoint at an epoch
                    // whose record failed would resume after a hole in the history.
                    if let Some((epoch, bytes)) = ckpt
                        && !lost_job.load(Ordering::SeqCst)
                    {
                        match store.save_checkpoint(id, attempt, epoch, &bytes).await {
                            Ok(_) => {
                                crate::crash::point("checkpoint_saved");
                                self.not_alone(id);
                            }
                            Err(e) => tracing::warn!(error = %e, "could not save a checkpoint"),
                        }
                    }
                }
                Msg::Done(r) => {
                    result = Some(*r);
                    break;
                }
            }
        }
        watcher.abort();
        if lost_job.load(Ordering::SeqCst) {
            return None;
        }
        let shutting_down = self.inner.shutting_down.load(Ordering::SeqCst);
        Some(match result {
            None => failed(
                FailureKind::TrainingCrashed,
                "the training thread ended without a result",
            ),
            Some(Ok(out)) => {
                let doc = to_json(&out.model.to_document());
                let latest = store
                    .get_job(id)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|j| j.latest);
                // With restored best weights the model holds epoch `best`'s weights: its
                // metrics are that epoch's, not the last epoch's (kept as `last`).
                let held = match out.best_epoch {
                    Some(best) => store
                        .history(id, i64::from(best) - 1, 1)
                        .await
                        .ok()
                        .and_then(|h| {
                            h.into_iter().find(|r| {
                                r.get("epoch").and_then(|e| e.as_i64()) == Some(best.into())
                            })
                        })
                        .or(latest.clone()),
                    None => latest.clone(),
                };
                let model = ModelRecord {
                    id: Uuid::new_v4(),
                    tenant: job.tenant.clone(),
                    name: job.spec.name.clone(),
                    created_at: now_ms(),
                    job_id: Some(id),
                    dataset_id: job.dataset_id,
                    input_dim: out.model.input_dim() as i64,
                    output_dim: out.model.network.output_dim() as i64,
                    parameter_count: out.model.network.parameter_count() as i64,
                    metrics: json!({
                        "final": held,
                        "last": latest,
                        "epochs_run": out.epochs_run,
                        "best_epoch": out.best_epoch,
                        "stop_reason": out.reason,
                        "evaluation": out.evaluation.as_ref().map(to_json),
                    }),
                    document: doc,
                    sweep: job.sweep.clone(),
                };
                let reason = serde_json::to_value(out.reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned));
                Finish::Succeeded {
                    model: Box::new(model),
                    stop_reason: reason.unwrap_or_default(),
                }
            }
            Some(Err(TrainError::Cancelled))
                if (shutting_down || control.yield_slot.load(Ordering::Relaxed))
                    && !control_cancelled_by_user(job, &store).await =>
            {
                return None;
            }
            Some(Err(TrainError::Cancelled)) => Finish::Cancelled,
            Some(Err(e @ TrainError::Diverged { .. })) => {
                failed(FailureKind::TrainingDiverged, e.to_string())
            }
            Some(Err(e @ TrainError::Spec(_))) => failed(FailureKind::InvalidSpec, e.to_string()),
            Some(Err(TrainError::Checkpoint(m))) => failed(FailureKind::CheckpointUnreadable, m),
            Some(Err(e @ TrainError::Memory(_))) => failed(FailureKind::TooLarge, e.to_string()),
        })
    }
}

/// A job whose dataset or checkpoint could not be read: back to the queue when the database
/// is away (another attempt will read them), failed when the records are broken.
fn lost(e: &crate::store::StoreError) -> Option<Finish> {
    match e {
        crate::store::StoreError::Unavailable(_) => {
            tracing::warn!(error = %e, "database unavailable at start; releasing the job");
            None
        }
        _ => Some(failed(FailureKind::DatabaseError, e.to_string())),
    }
}

async fn control_cancelled_by_user(job: &JobRecord, store: &Arc<dyn Store>) -> bool {
    matches!(store.get_job(job.id).await, Ok(Some(j)) if j.cancel_requested)
}

fn failed(kind: FailureKind, detail: impl Into<String>) -> Finish {
    Finish::Failed(Failure::new(kind, detail))
}
