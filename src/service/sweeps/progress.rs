//! How far along a sweep is: its trials by state, its rung, the epochs it has trained of
//! those it plans, and an estimate of the time left; and what a sweep would run
//! (`?dry_run=true`).

use serde::Serialize;

use super::{SweepSpec, SweepView};
use crate::clock::now_ms;
use crate::store::JobStatus;

/// A sweep's progress, as its record shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Progress {
    /// `searching` (trials to train), `refitting` (the chosen trial trained again on every
    /// training row) or `done`.
    pub phase: &'static str,
    /// The trials the sweep will try.
    pub trials: usize,
    /// Trials whose jobs at their rung have all ended (a promoted trial counts again once
    /// its next rung's jobs are queued).
    pub done: usize,
    pub running: usize,
    pub queued: usize,
    /// Trials not created yet (the first rung is queued a few at a time).
    pub waiting: usize,
    /// Trials successive halving cut after a lower rung.
    pub stopped_early: usize,
    /// The highest rung reached (0 = the first) and the epochs it trains to.
    pub rung: usize,
    pub rung_epochs: u32,
    /// Epochs trained by every job so far, and the most it plans (every rung's trials
    /// training to the rung's end on every fold, and the refit): early stopping can only
    /// make the rest shorter.
    pub epochs_done: u64,
    pub epochs_planned: u64,
    pub elapsed_seconds: f64,
    /// The epochs left at the pace so far (null before an epoch has ended, 0 once done).
    pub eta_seconds: Option<f64>,
}

impl SweepSpec {
    /// Trials that train at each rung: all of them, then 1/η of the rung below.
    pub fn trials_per_rung(&self) -> Vec<usize> {
        let eta = self.eta() as usize;
        let mut n = self.max_trials;
        let mut out = vec![];
        for r in 0..self.rungs().len() {
            if r > 0 {
                n = n.div_ceil(eta);
            }
            out.push(n);
        }
        out
    }

    /// The most epochs the sweep trains, over all its jobs: each rung's trials from the rung
    /// below's epochs to their rung's, on every fold, and the refit (at most the last
    /// rung's epochs).
    pub fn epochs_planned(&self) -> u64 {
        let rungs = self.rungs();
        let folds = u64::from(self.fold_count());
        let mut total = 0u64;
        let mut below = 0u32;
        for (r, n) in self.trials_per_rung().into_iter().enumerate() {
            total += n as u64 * u64::from(rungs[r] - below) * folds;
            below = rungs[r];
        }
        if self.refit {
            total += u64::from(self.epochs);
        }
        total
    }
}

impl SweepView {
    pub fn progress(&self) -> Progress {
        let spec = &self.spec;
        let rungs = spec.rungs();
        let folds = spec.fold_count();
        let (mut done, mut running, mut queued, mut stopped_early) = (0, 0, 0, 0);
        let mut epochs_done = 0u64;
        let mut top = 0usize;
        for t in &self.trials {
            if t.jobs.is_empty() {
                done += 1;
                continue;
            }
            let rung = t.jobs.len() - 1;
            top = top.max(rung);
            let current: Vec<_> = t.current_jobs().collect();
            if current.iter().any(|j| j.status == JobStatus::Running) {
                running += 1;
            } else if current.iter().all(|j| j.status.is_terminal())
                && current.len() == folds as usize
            {
                done += 1;
            } else {
                queued += 1;
            }
            if t.stopped_early {
                stopped_early += 1;
            }
            // Each rung's jobs continue the one below: its own epochs are those past it.
            let from = |r: usize| if r == 0 { 0 } else { i64::from(rungs[r - 1]) };
            for (r, j) in t.jobs.iter().enumerate() {
                let own = (j.epoch - from(r).min(j.epoch)).max(0) as u64;
                // The other folds of a finished rung trained about as long as the first.
                epochs_done += if r < rung {
                    own * u64::from(folds)
                } else {
                    own
                };
            }
            for j in &t.fold_jobs {
                epochs_done += (j.epoch - from(rung).min(j.epoch)).max(0) as u64;
            }
        }
        if let Some(r) = &self.refit {
            epochs_done += r.epoch.max(0) as u64;
        }
        let ended = self.sweep.status.is_terminal();
        let phase = if ended {
            "done"
        } else if self.refit.is_some() {
            "refitting"
        } else {
            "searching"
        };
        let end = self.sweep.finished_at.unwrap_or_else(now_ms);
        let elapsed = ((end - self.sweep.created_at).max(0) as f64) / 1000.0;
        let epochs_planned = spec.epochs_planned().max(epochs_done);
        let eta_seconds = if ended {
            Some(0.0)
        } else if epochs_done == 0 {
            None
        } else {
            let left = (epochs_planned - epochs_done) as f64;
            Some((left * elapsed / epochs_done as f64 * 10.0).round() / 10.0)
        };
        Progress {
            phase,
            trials: spec.max_trials,
            done,
            running,
            queued,
            waiting: spec.max_trials.saturating_sub(self.trials.len()),
            stopped_early,
            rung: top,
            rung_epochs: rungs[top.min(rungs.len() - 1)],
            epochs_done,
            epochs_planned,
            elapsed_seconds: (elapsed * 10.0).round() / 10.0,
            eta_seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::sweeps::{Halving, Method};
    use serde_json::json;

    fn spec(max_trials: usize, folds: u32, refit: bool) -> SweepSpec {
        SweepSpec {
            name: None,
            dataset_id: uuid::Uuid::nil(),
            automatic: false,
            base: json!({}),
            space: json!({}),
            method: Method::Random,
            seed: 0,
            max_trials,
            max_seconds: None,
            metric: "val_loss".into(),
            halving: Some(Halving {
                min_epochs: 20,
                eta: 3,
            }),
            epochs: 180,
            refit,
            folds,
            shared_epoch: true,
        }
    }

    #[test]
    fn planned_epochs_follow_the_rungs_folds_and_refit() {
        // 20 trials × 20 epochs, 7 × 40 more, 3 × 120 more; ×5 folds; + a 180-epoch refit.
        let s = spec(20, 5, true);
        assert_eq!(s.rungs(), vec![20, 60, 180]);
        assert_eq!(s.trials_per_rung(), vec![20, 7, 3]);
        assert_eq!(s.epochs_planned(), (400 + 280 + 360) * 5 + 180);
        let one = SweepSpec {
            halving: None,
            ..spec(4, 1, false)
        };
        assert_eq!(one.trials_per_rung(), vec![4]);
        assert_eq!(one.epochs_planned(), 4 * 180);
    }
}
