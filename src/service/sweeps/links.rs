//! Links earlier releases' sweeps to their jobs and models. Migration 0007 gave jobs and
//! models `sweep_*` columns and linked each trial's first-fold job from `sweep_trials`; the
//! other folds' jobs and the refit have ids derived from the sweep's
//! ([`super::trial_job_id`], [`super::refit_job_id`]), so the task `sweep_links` it left is
//! done here, once, by the first node that starts (every update skips rows already linked,
//! so two nodes doing it at once agree).

use serde_json::Value;

use super::request::stored_spec;
use super::{SweepLink, SweepRole, refit_job_id, trial_job_id, trial_link};
use crate::service::{Result, Service};

const SWEEP_LINKS: &str = "sweep_links";

impl Service {
    /// Does the upgrade tasks migrations left for the code; an error leaves them for the
    /// next try.
    pub(super) async fn run_upgrade_tasks(&self) -> Result<()> {
        let tasks = self.store.upgrade_tasks().await?;
        if !tasks.iter().any(|t| t == SWEEP_LINKS) {
            return Ok(());
        }
        for s in self.store.all_sweeps().await? {
            let folds = stored_spec(&s).map_or(1, |spec| spec.fold_count());
            for r in self.store.sweep_trials(s.id).await? {
                for f in 0..folds {
                    let id = trial_job_id(s.id, r.trial, r.rung, f);
                    self.store
                        .link_to_sweep(id, &trial_link(s.id, r.trial, r.rung, f))
                        .await?;
                }
            }
            if let Some(t) = s
                .best
                .as_ref()
                .and_then(|b| b.get("trial"))
                .and_then(Value::as_i64)
            {
                let link = SweepLink {
                    sweep_id: s.id,
                    role: SweepRole::Refit,
                    trial: t,
                    rung: None,
                    fold: None,
                };
                self.store.link_to_sweep(refit_job_id(s.id), &link).await?;
            }
        }
        self.store.finish_upgrade_task(SWEEP_LINKS).await?;
        tracing::info!("linked earlier releases' sweeps to their jobs and models");
        Ok(())
    }
}
