//! The learning-rate range test (Smith 2015, "Cyclical Learning Rates"; fastai's `lr_find`):
//! train a fresh network for a few hundred mini-batches while the learning rate grows
//! exponentially from tiny to huge, smooth the loss, and stop once it passes four times its
//! minimum. The rate where the smoothed loss falls fastest (and the minimum's rate ÷ 10) are
//! good rates to train at. The weights are discarded. Deterministic from the spec's seed.

use std::sync::atomic::Ordering;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::train::{Control, Session, TrainError};
use crate::nn::math::batch::BatchStep;
use crate::nn::math::network::Params;
use crate::nn::math::rng::{Rng, Stream};

/// The sweep's range and length (fastai's defaults: 1e-7 to 10 over 100 batches).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeSettings {
    #[serde(default = "default_start")]
    pub start: f32,
    #[serde(default = "default_end")]
    pub end: f32,
    /// Mini-batches (each at the next rate).
    #[serde(default = "default_steps")]
    pub steps: usize,
}

fn default_start() -> f32 {
    1e-7
}
fn default_end() -> f32 {
    10.0
}
fn default_steps() -> usize {
    100
}

impl Default for RangeSettings {
    fn default() -> Self {
        RangeSettings {
            start: default_start(),
            end: default_end(),
            steps: default_steps(),
        }
    }
}

/// At most this many batches: the test is a quick look, not a training run.
pub const MAX_STEPS: usize = 1000;
/// The smoothing of the loss: an exponential moving average, bias-corrected.
const BETA: f64 = 0.98;
/// Stop once the smoothed loss passes this many times its minimum.
const DIVERGED: f64 = 4.0;

impl RangeSettings {
    /// Field-level checks, as (field, message).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(self.start.is_finite() && self.start > 0.0) {
            return Err((
                "start",
                format!("must be a positive number, got {}", self.start),
            ));
        }
        if !(self.end.is_finite() && self.end > self.start) {
            return Err((
                "end",
                format!(
                    "must be a number above start ({}), got {}",
                    self.start, self.end
                ),
            ));
        }
        if !(2..=MAX_STEPS).contains(&self.steps) {
            return Err((
                "steps",
                format!("must be from 2 to {MAX_STEPS}, got {}", self.steps),
            ));
        }
        Ok(())
    }

    /// The rate of batch `i`: start · (end / start)^(i / (steps − 1)).
    fn rate(&self, i: usize) -> f32 {
        let t = i as f64 / (self.steps - 1) as f64;
        (self.start as f64 * (self.end as f64 / self.start as f64).powf(t)) as f32
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RangePoint {
    pub learning_rate: f32,
    /// The batch's mean loss.
    pub loss: f64,
    pub smoothed_loss: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RangeEnd {
    /// The smoothed loss passed 4× its minimum (or stopped being finite).
    Diverged,
    /// Every rate up to `end` was tried.
    Completed,
    /// The time allowed ran out first.
    TimeLimit,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RangeTest {
    pub points: Vec<RangePoint>,
    /// The rate where the smoothed loss falls fastest (against log rate), before its minimum.
    pub steepest: Option<f32>,
    /// The rate of the smoothed loss's minimum.
    pub minimum: Option<f32>,
    /// `minimum` ÷ 10, the other usual choice.
    pub minimum_over_10: Option<f32>,
    /// What a job with `"learning_rate": "auto"` trains at: `steepest`, else
    /// `minimum_over_10`, else the optimizer's default.
    pub suggested: f32,
    pub end: RangeEnd,
}

impl Session {
    /// Runs the range test on a fresh network (the session's seeded initialisation), at most
    /// `max_seconds` long; `control.cancel` ends it as cancelled.
    pub fn lr_range_test(
        &self,
        pool: &rayon::ThreadPool,
        settings: &RangeSettings,
        control: &Control,
        max_seconds: f64,
    ) -> Result<RangeTest, TrainError> {
        let started = Instant::now();
        let spec = &self.spec;
        let mut state = self.initial_state();
        let (x, y) = (&self.x_train, &self.y_train);
        let n = x.nrows();
        let batch = spec.batch_size.clamp(1, n.max(1));
        let mut step = BatchStep::new(&state.network, batch, x.ncols(), y.ncols());
        let mut grads = Params::zeros_like(&state.network);
        let penalties = self.penalties();
        let has_penalty = penalties.iter().any(|&(a, b)| a > 0.0 || b > 0.0);
        let mut order: Vec<usize> = (0..n).collect();
        let (mut pass, mut at) = (0u64, n);
        let mut points = Vec::with_capacity(settings.steps);
        let (mut avg, mut best) = (0.0f64, f64::INFINITY);
        let mut end = RangeEnd::Completed;
        pool.install(|| -> Result<(), TrainError> {
            for i in 0..settings.steps {
                if control.cancel.load(Ordering::Relaxed) {
                    return Err(TrainError::Cancelled);
                }
                if started.elapsed().as_secs_f64() > max_seconds {
                    end = RangeEnd::TimeLimit;
                    break;
                }
                if at + batch > n && at > 0 {
                    // A new pass over the shuffled rows.
                    for (k, o) in order.iter_mut().enumerate() {
                        *o = k;
                    }
                    Rng::derive(spec.seed, Stream::LrFind, &[pass]).shuffle(&mut order);
                    pass += 1;
                    at = 0;
                }
                let rows = &order[at..(at + batch).min(n)];
                at += rows.len();
                let lr = settings.rate(i);
                let dropout = |c: usize| {
                    Rng::derive(spec.seed, Stream::LrFind, &[u64::MAX, i as u64, c as u64])
                };
                step.run(
                    &state.network,
                    x,
                    y,
                    self.weights.as_deref(),
                    rows,
                    spec.loss,
                    &mut grads,
                    &dropout,
                );
                let loss = step.loss / rows.len() as f64;
                avg = BETA * avg + (1.0 - BETA) * loss;
                let smoothed = avg / (1.0 - BETA.powi(i as i32 + 1));
                if !smoothed.is_finite() {
                    end = RangeEnd::Diverged;
                    break;
                }
                points.push(RangePoint {
                    learning_rate: lr,
                    loss,
                    smoothed_loss: smoothed,
                });
                best = best.min(smoothed);
                if i > 0 && smoothed > DIVERGED * best {
                    end = RangeEnd::Diverged;
                    break;
                }
                if has_penalty {
                    super::train::add_penalty_gradient(&state.network, &penalties, &mut grads);
                }
                state.optimizer.step(&mut state.network, &mut grads, lr);
            }
            Ok(())
        })?;
        let (steepest, minimum) = suggestions(&points);
        let minimum_over_10 = minimum.map(|m| m / 10.0);
        Ok(RangeTest {
            suggested: steepest
                .or(minimum_over_10)
                .unwrap_or_else(|| spec.optimizer.learning_rate()),
            points,
            steepest,
            minimum,
            minimum_over_10,
            end,
        })
    }
}

/// Points at the start of the curve left out of the steepest descent (fastai's
/// `skip_start`): the bias-corrected average is still settling there.
const SKIP_START: usize = 10;

/// (steepest descent, minimum) of a curve: the rate before the minimum where the smoothed
/// loss falls fastest per unit of log rate, measured over a window of a twentieth of the
/// curve either side (past the first [`SKIP_START`] points, or the first point of a short
/// curve), and the rate at the minimum.
pub fn suggestions(points: &[RangePoint]) -> (Option<f32>, Option<f32>) {
    let Some((low, _)) = points
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.smoothed_loss.total_cmp(&b.1.smoothed_loss))
    else {
        return (None, None);
    };
    let skip = if points.len() > 4 * SKIP_START {
        SKIP_START
    } else {
        1
    };
    // The slope over a window of ±w points (a twentieth of the curve): one noisy batch must
    // not look like the steepest descent.
    let w = (points.len() / 20).max(1);
    let steepest = (skip + 1..=low)
        .map(|i| {
            let (a, b) = (
                &points[i.saturating_sub(w).max(skip)],
                &points[(i + w).min(low)],
            );
            let dx = (b.learning_rate as f64).ln() - (a.learning_rate as f64).ln();
            (i, (b.smoothed_loss - a.smoothed_loss) / dx)
        })
        .filter(|(_, g)| g.is_finite() && *g < 0.0)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| points[i].learning_rate);
    (steepest, Some(points[low].learning_rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(lr: f32, s: f64) -> RangePoint {
        RangePoint {
            learning_rate: lr,
            loss: s,
            smoothed_loss: s,
        }
    }

    /// Losses 1.0 .9 .5 .4 .45 3 at rates 1e-4 … 10 (the first fall is left out while the
    /// average settles): from 1e-2, the window .9 → .4 over two decades falls fastest
    /// (−0.25 per decade against .5 → .4's −0.1); the minimum .4 is at 1e-1.
    #[test]
    fn the_steepest_fall_and_the_minimum_are_found() {
        let c: Vec<RangePoint> = [1.0, 0.9, 0.5, 0.4, 0.45, 3.0]
            .iter()
            .enumerate()
            .map(|(i, &s)| point(10f32.powi(i as i32 - 4), s))
            .collect();
        let (steep, min) = suggestions(&c);
        assert_eq!(steep, Some(1e-2));
        assert_eq!(min, Some(1e-1));
        assert_eq!(suggestions(&[]), (None, None));
    }

    #[test]
    fn rates_grow_exponentially_from_start_to_end() {
        let s = RangeSettings {
            start: 1e-4,
            end: 1.0,
            steps: 5,
        };
        let r: Vec<f32> = (0..5).map(|i| s.rate(i)).collect();
        for (a, b) in r.iter().zip([1e-4, 1e-3, 1e-2, 1e-1, 1.0]) {
            assert!((a / b - 1.0).abs() < 1e-5, "{r:?}");
        }
        assert!(s.check().is_ok());
        assert_eq!(
            RangeSettings {
                steps: 1,
                ..s.clone()
            }
            .check()
            .unwrap_err()
            .0,
            "steps"
        );
        assert_eq!(
            RangeSettings { end: 1e-5, ..s }.check().unwrap_err().0,
            "end"
        );
    }
}
