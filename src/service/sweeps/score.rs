//! How a trial is scored: one job's validation metric (the epoch its model holds), and a
//! cross-validated trial's score over its folds' jobs.
//!
//! With cross-validation each fold's job restores its own best epoch, so the mean of the
//! folds' held metrics picks every fold's luckiest epoch: an optimistic score (0.053 log
//! loss on the credit file where one epoch shared by every fold gives 0.068–0.081). Sweeps
//! created since this release (`shared_epoch` in their spec) score a cross-validated trial
//! at **one epoch shared by its folds**: the epoch whose validation metric, averaged over
//! the folds, is best. The refit trains that many epochs. The folds' per-epoch metrics come
//! from their epoch histories (`val_log_loss` and `val_rmse` are recorded unpenalised for
//! this); an ended job's curve never changes, so it is read once per process
//! ([`CurveCache`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::*;

/// Ended jobs' validation curves (metric by epoch), so a sweep advanced every half second
/// reads each fold's history once.
#[derive(Default)]
pub struct CurveCache(Mutex<HashMap<Uuid, Arc<[Option<f64>]>>>);

/// Forgotten all at once past this many jobs' curves (a few hundred sweeps' worth).
const CURVES_KEPT: usize = 20_000;

/// A trial's score at one rung.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrialScore {
    pub metric: f64,
    /// With cross-validation scored at one shared epoch: that epoch (1-based).
    pub epoch: Option<u32>,
}

/// The epoch (1-based) whose metric, averaged over `curves` (each fold's, by epoch), is best,
/// and that mean: over the epochs every fold reached with a finite value. Ties go to the
/// earlier epoch. `None` when no epoch qualifies (curves recorded by an earlier release).
pub fn shared_epoch(curves: &[Arc<[Option<f64>]>], maximise: bool) -> Option<(u32, f64)> {
    let common = curves.iter().map(|c| c.len()).min()?;
    let mut best: Option<(u32, f64)> = None;
    for e in 0..common {
        let Some(sum) = curves
            .iter()
            .map(|c| c[e].filter(|v| v.is_finite()))
            .sum::<Option<f64>>()
        else {
            continue;
        };
        let mean = sum / curves.len() as f64;
        let better = best.is_none_or(|(_, b)| if maximise { mean > b } else { mean < b });
        if better {
            best = Some((e as u32 + 1, mean));
        }
    }
    best
}

impl Service {
    /// A trial's score from its folds' jobs at one rung (fold 0 first): `None` until every
    /// fold's job has succeeded. One fold: the metric its model holds. Several: at the epoch
    /// they share ([`shared_epoch`]) when the sweep asks for it and their histories record
    /// the metric, else the mean of their held metrics (sweeps of earlier releases).
    pub(super) async fn trial_score(
        &self,
        spec: &SweepSpec,
        jobs: &[&JobRecord],
    ) -> Result<Option<TrialScore>> {
        if jobs.len() != spec.fold_count() as usize
            || jobs.iter().any(|j| j.status != JobStatus::Succeeded)
        {
            return Ok(None);
        }
        if jobs.len() > 1 && spec.shared_epoch {
            let mut curves = Vec::with_capacity(jobs.len());
            for j in jobs {
                curves.push(self.validation_curve(j, &spec.metric).await?);
            }
            if let Some((epoch, metric)) = shared_epoch(&curves, spec.maximise()) {
                return Ok(Some(TrialScore {
                    metric,
                    epoch: Some(epoch),
                }));
            }
        }
        let mut sum = Some(0.0);
        for j in jobs {
            sum = sum
                .zip(self.trial_metric(j, &spec.metric).await?)
                .map(|(a, b)| a + b);
        }
        Ok(sum.map(|s| TrialScore {
            metric: s / jobs.len() as f64,
            epoch: None,
        }))
    }

    /// An ended job's validation `metric` by epoch, from its history (cached).
    async fn validation_curve(&self, j: &JobRecord, metric: &str) -> Result<Arc<[Option<f64>]>> {
        if let Some(c) = self.curves.0.lock().expect("curve cache").get(&j.id) {
            return Ok(c.clone());
        }
        let history = self.store.history(j.id, 0, j.epoch.max(0) + 1).await?;
        let epoch_of = |r: &Value| r.get("epoch").and_then(Value::as_u64).unwrap_or(0) as usize;
        let mut curve = vec![None; history.iter().map(epoch_of).max().unwrap_or(0)];
        for r in &history {
            if let Some(slot) = epoch_of(r).checked_sub(1).and_then(|e| curve.get_mut(e)) {
                *slot = r.get(metric).and_then(Value::as_f64);
            }
        }
        let curve: Arc<[Option<f64>]> = curve.into();
        let mut cache = self.curves.0.lock().expect("curve cache");
        if cache.len() >= CURVES_KEPT {
            cache.clear();
        }
        cache.insert(j.id, curve.clone());
        Ok(curve)
    }

    /// The validation metric a trial's job scored: the epoch its model holds (the best one
    /// when early stopping restored it), else its last epoch.
    async fn trial_metric(&self, j: &JobRecord, metric: &str) -> Result<Option<f64>> {
        if j.status != JobStatus::Succeeded {
            return Ok(None);
        }
        // The evaluation's scores of the held model on the validation split.
        let evaluated = match metric {
            "val_log_loss" => Some("log_loss"),
            "val_rmse" => Some("rmse"),
            _ => None,
        };
        let held = match j.model_id {
            Some(m) => self
                .store
                .get_model(m)
                .await?
                .and_then(|m| match evaluated {
                    Some(e) => m.metrics.get("evaluation").and_then(|v| v.get(e)).cloned(),
                    None => m.metrics.get("final").and_then(|f| f.get(metric)).cloned(),
                }),
            None => None,
        };
        if evaluated.is_some() {
            return Ok(held.and_then(|v| v.as_f64()).filter(|v| v.is_finite()));
        }
        Ok(held
            .or_else(|| j.latest.as_ref().and_then(|l| l.get(metric)).cloned())
            .and_then(|v| v.as_f64())
            .filter(|v| v.is_finite()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(v: &[Option<f64>]) -> Arc<[Option<f64>]> {
        v.into()
    }

    /// The epoch best on the folds' mean, not any fold's own best; only epochs every fold
    /// reached with a value count; ties go to the earlier epoch.
    #[test]
    fn the_shared_epoch_is_best_on_the_folds_mean() {
        let a = curve(&[Some(0.9), Some(0.5), Some(0.6), Some(0.2)]);
        let b = curve(&[Some(0.8), Some(0.6), Some(0.3), None]);
        // means: 0.85, 0.55, 0.45; epoch 4 is missing from b. a's own best is 4, b's 3.
        let (e, m) = shared_epoch(&[a.clone(), b.clone()], false).unwrap();
        assert_eq!(e, 3);
        assert!((m - 0.45).abs() < 1e-12);
        // Maximised (accuracy): the first epoch's mean is the highest.
        assert_eq!(shared_epoch(&[a.clone(), b.clone()], true).unwrap().0, 1);
        // A hole (or NaN) at an epoch of one fold skips that epoch for all.
        let c = curve(&[Some(0.1), Some(0.5), Some(f64::NAN)]);
        assert_eq!(shared_epoch(&[a.clone(), c.clone()], false).unwrap().0, 1);
        let tie = curve(&[Some(0.5), Some(0.5)]);
        assert_eq!(shared_epoch(&[tie.clone(), tie], false).unwrap().0, 1);
        // Curves of an earlier release record no such metric: no shared epoch.
        let none = curve(&[None, None]);
        assert_eq!(shared_epoch(&[none.clone(), none], false), None);
        assert_eq!(shared_epoch(&[], false), None);
    }
}
