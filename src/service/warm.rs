//! Warm starts and continued jobs: checking that a model can start a job (the same
//! architecture and input columns), and continuing a succeeded job for more epochs as a new
//! job that resumes its saved training state exactly as a checkpoint resumes.

use serde::Deserialize;
use uuid::Uuid;

use super::read::parse_json;
use super::{Error, IdempotencyKey, Result, Service};
use crate::clock::now_ms;
use crate::data::Summary;
use crate::nn::Model;
use crate::nn::TrainState;
use crate::nn::run::spec::Plan;
use crate::nn::run::warm::{check_architecture, reopen};
use crate::store::{Continuation, JobRecord, JobStatus, StoreError};

/// Whether `model` can start a job planned as `plan` on a dataset summarised as `dataset`:
/// the same raw columns (by name, when the model knows them) and the same architecture. The
/// encoded width of a tabular dataset is known only once its encoder is fitted, so the
/// worker checks it again (`nn::Session::warm_state`).
pub fn check_warm_start(
    model: &Model,
    dataset: &Summary,
    plan: &Plan,
) -> std::result::Result<(), String> {
    let columns: Vec<&str> = dataset.columns.iter().map(|c| c.name.as_str()).collect();
    if let Some(names) = model.raw_names()
        && names.iter().map(String::as_str).ne(columns.iter().copied())
    {
        return Err(format!(
            "the model takes the columns {names:?}, the dataset has {columns:?}; a warm start needs the same input columns"
        ));
    }
    check_architecture(plan, &model.network, model.encoder.is_none())
}

/// `POST /v1/jobs/{id}/continue`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContinueRequest {
    /// More epochs to train.
    pub epochs: u32,
}

impl Service {
    /// Queues a job that continues the succeeded job `j` for `epochs` more epochs: the same
    /// spec (and seed) with the total raised, `j`'s history up to its last epoch, and its
    /// final training state (weights, optimizer moments, schedule) as the checkpoint it
    /// resumes from. Its history then reads as one uninterrupted run's.
    pub async fn continue_job(
        &self,
        tenant: &str,
        key: &IdempotencyKey,
        j: &JobRecord,
        body: &[u8],
    ) -> Result<JobRecord> {
        let req: ContinueRequest = parse_json(body)?;
        let id = match self.store.get_job(key.record_id(tenant, "job")).await? {
            // Queued by this key's first request, which died before answering.
            Some(e) if e.tenant == tenant && key.is_retry_of(e.created_at) => return Ok(e),
            Some(_) => Uuid::new_v4(),
            None => key.record_id(tenant, "job"),
        };
        if req.epochs == 0 {
            return Err(Error::invalid("/epochs", "must be at least 1"));
        }
        self.check_queue(tenant).await?;
        let (job, from) = self.continuation(j, req.epochs, id).await?;
        match self.store.insert_job_from(&job, Some(&from), None).await {
            Ok(()) => {}
            Err(StoreError::Duplicate(_)) => {
                // The same key's first request queued it a moment earlier.
                if let Some(found) = self.store.get_job(id).await?
                    && found.tenant == tenant
                {
                    return Ok(found);
                }
                return Err(StoreError::Duplicate(String::new()).into());
            }
            Err(e) => return Err(e.into()),
        }
        self.jobs.notify();
        Ok(self.store.get_job(id).await?.unwrap_or(job))
    }

    /// The job (under `id`) that continues the succeeded job `j` for `more` epochs, and where
    /// it starts: `j`'s history and final training state. Conflicts when `j` cannot be
    /// continued exactly.
    pub(super) async fn continuation(
        &self,
        j: &JobRecord,
        more: u32,
        id: Uuid,
    ) -> Result<(JobRecord, Continuation)> {
        if j.status != JobStatus::Succeeded {
            return Err(Error::Conflict(format!(
                "job {} is {}; only a succeeded job can be continued",
                j.id,
                j.status.as_str()
            )));
        }
        let Some((epoch, bytes)) = self.store.final_state(j.id).await? else {
            return Err(Error::Conflict(format!(
                "job {} kept no training state to continue from (it finished before this release)",
                j.id
            )));
        };
        if epoch != j.epoch {
            return Err(Error::Conflict(format!(
                "job {}'s saved training state is from epoch {epoch}, its history ends at {}; it cannot be continued exactly",
                j.id, j.epoch
            )));
        }
        let total = u32::try_from(epoch)
            .ok()
            .and_then(|e| e.checked_add(more))
            .filter(|&t| t <= self.limits.max_epochs)
            .ok_or_else(|| {
                Error::invalid(
                    "/epochs",
                    format!(
                        "{epoch} + {} epochs is more than this server's {} (--max-epochs)",
                        more, self.limits.max_epochs
                    ),
                )
            })?;
        if let Some(d) = j.dataset_id
            && self.store.get_dataset(d).await?.is_none()
        {
            return Err(Error::Conflict(format!(
                "job {}'s dataset {d} was deleted; it cannot be continued",
                j.id
            )));
        }
        let state = TrainState::from_bytes(&bytes).map_err(Error::Internal)?;
        let state = reopen(state).to_bytes();
        let mut spec = j.spec.clone();
        spec.train.epochs = total;
        spec.continues = Some(j.id);
        // The weights come from the saved state now, not from the model it started from.
        spec.init_model_id = None;
        if spec.auto_learning_rate {
            // Train on at the rate the range test chose for the first job.
            let chosen = self
                .store
                .lr_range_test(j.id)
                .await?
                .and_then(|r| r.get("learning_rate").and_then(|v| v.as_f64()));
            spec.train.optimizer.0.learning_rate = chosen.map(|r| r as f32);
            spec.auto_learning_rate = false;
        }
        let job = JobRecord {
            id,
            tenant: j.tenant.clone(),
            seq: 0,
            status: JobStatus::Queued,
            priority: j.priority,
            dataset_id: j.dataset_id,
            spec,
            epochs: i64::from(total),
            epoch,
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
        };
        let from = Continuation {
            job_id: j.id,
            epoch,
            state,
        };
        Ok((job, from))
    }

    /// The queued and running jobs that start from model `id`, as a conflict's words.
    pub(super) async fn model_in_use(&self, id: Uuid) -> Result<Option<String>> {
        let users = self.store.jobs_using_model(id, 10).await?;
        Ok((!users.is_empty()).then(|| {
            users
                .iter()
                .map(|u| u.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }))
    }
}
