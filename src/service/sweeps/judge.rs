//! The refit a sweep hands over has trained on every training row, so no row is left to
//! score it on. What it gets instead, recorded as its `evaluation` with `evaluation_source`
//! saying which:
//! - with cross-validation, the **out-of-fold** evaluation of the chosen trial: each fold's
//!   model predicts the fold it held out, and the predictions of all folds are scored
//!   together (every training row once, by a model that did not train on it), with the same
//!   metrics, confusion matrix, ROC AUC and permutation importance as any evaluation;
//! - with one validation split, the chosen trial's own evaluation on its held-out rows.

use serde_json::{Value, json};

use super::{SweepRecord, TrialView};
use crate::nn::portable::evaluate::{Part, evaluate_parts};
use crate::service::{Error, Result, Service};
use crate::store::{JobRecord, JobStatus, to_json};

impl Service {
    /// Records the refit model's evaluation (see the module header) unless it has one.
    pub(super) async fn judge_refit(
        &self,
        s: &SweepRecord,
        chosen: &TrialView,
        refit: &JobRecord,
    ) -> Result<()> {
        let Some(model_id) = refit.model_id else {
            return Ok(());
        };
        let Some(rec) = self.store.get_model(model_id).await? else {
            return Ok(());
        };
        if rec.metrics.get("evaluation").is_some_and(|e| !e.is_null()) {
            return Ok(());
        }
        let folds: Vec<&JobRecord> = chosen.current_jobs().collect();
        if folds.iter().any(|j| j.status != JobStatus::Succeeded) {
            return Ok(());
        }
        let (evaluation, source) = if folds.len() == 1 {
            let j = folds[0];
            let Some(trial_model) = j.model_id else {
                return Ok(());
            };
            let Some(m) = self.store.get_model(trial_model).await? else {
                return Ok(());
            };
            let Some(ev) = m
                .metrics
                .get("evaluation")
                .filter(|e| !e.is_null())
                .cloned()
            else {
                return Ok(());
            };
            let source = json!({
                "kind": "chosen_trial_validation",
                "rows": ev.get("rows"),
                "trial": chosen.trial,
                "model_id": trial_model,
                "detail": "the chosen trial's model on the rows it held out for validation: this \
                           model trained on those rows too, so it has no held-out score of its own",
            });
            (ev, source)
        } else {
            let mut models = Vec::with_capacity(folds.len());
            for j in &folds {
                let Some(m) = j.model_id else {
                    return Ok(());
                };
                models.push((j.spec.train.clone(), self.model(&s.tenant, m).await?));
            }
            let (_, ds) = self.dataset(&s.tenant, s.dataset_id).await?;
            let seed = refit.spec.train.seed;
            let ev = self
                .jobs
                .on_pool(move |_| -> std::result::Result<Value, String> {
                    let mut tables = Vec::with_capacity(models.len());
                    for (spec, _) in &models {
                        let session =
                            crate::jobs::session(spec, &ds, None).map_err(|e| e.to_string())?;
                        let t = session
                            .into_validation_table()
                            .ok_or("a fold without validation rows")?;
                        tables.push(t);
                    }
                    let parts: Vec<Part<'_>> = models
                        .iter()
                        .zip(&tables)
                        .map(|((_, m), t)| Part {
                            model: m,
                            x: t.x.view(),
                            columns: &t.columns,
                            targets: &t.targets,
                        })
                        .collect();
                    evaluate_parts(&parts, seed).map(|e| to_json(&e))
                })
                .await
                .map_err(|e| Error::Internal(e.to_string()))?
                .map_err(Error::Internal)?;
            let source = json!({
                "kind": "out_of_fold",
                "folds": folds.len(),
                "rows": ev.get("rows"),
                "trial": chosen.trial,
                "fold_models": folds.iter().map(|j| j.model_id).collect::<Vec<_>>(),
                "detail": "the chosen trial's fold models, each on the fold it held out: every \
                           training row scored once by a model that did not train on it",
            });
            (ev, source)
        };
        let mut metrics = rec.metrics.clone();
        metrics["evaluation"] = evaluation;
        metrics["evaluation_source"] = source;
        self.store.update_model_metrics(model_id, &metrics).await?;
        Ok(())
    }
}
