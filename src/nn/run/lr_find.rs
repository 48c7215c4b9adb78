//! The learning-rate range test (Smith 2015, "Cyclical Learning Rates"; fastai's `lr_find`):
//! train a fresh network for a few hundred mini-batches while the learning rate grows
//! exponentially from tiny to huge, smooth the loss, and stop once it passes four times its
//! minimum. The rate where the smoothed loss falls fastest (and the minimum's rate ÷ 10) are
//! good rates to train at. The weights are discarded. Deterministic from the spec's seed.
//!
//! Unlike fastai, the smoothing is sized to the curve and the suggestions are read off a
//! curve smoothed without lag. fastai's moving average (β = 0.98, a time constant of 50
//! batches) trails a 100-batch curve by half its length, five decades of rate: its minimum
//! and its divergence show up long after the loss's own (Adam on a 300-row circle was told
//! 2.26). Here the running average that stops the test has a time constant of a tenth of the
//! curve, and the curve returned and read is the mean of that average run forwards and
//! backwards, which lags neither way. A curve too short, or too flat, to tell has no steepest
//! descent, and `note` says why; one of the default length is then run again ten times as
//! long when the time allows (on a 300-row circle, 100 batches of rates from 1e-7 train too
//! little to show a descent; 1,000 do, and diverge where Adam stops learning).

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
    /// Mini-batches (each at the next rate); 100 unless given. A curve of the default
    /// length that cannot tell ([`read_curve`]) is run again ten times as long when the time
    /// allows; a length given is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
}

fn default_start() -> f32 {
    1e-7
}
fn default_end() -> f32 {
    10.0
}
/// The curve's length unless one is given (fastai's).
pub const DEFAULT_STEPS: usize = 100;
/// How much longer a curve that cannot tell is run again.
const LENGTHEN: usize = 10;

impl Default for RangeSettings {
    fn default() -> Self {
        RangeSettings {
            start: default_start(),
            end: default_end(),
            steps: None,
        }
    }
}

/// At most this many batches: the test is a quick look, not a training run.
pub const MAX_STEPS: usize = 1000;
/// The smoothing of the loss: an exponential moving average, bias-corrected, with fastai's
/// 0.98 at most ([`beta`]).
const BETA: f64 = 0.98;

/// The smoothing factor for a curve of `steps` batches: a time constant of a tenth of the
/// curve (0.9 for 100 batches), fastai's 0.98 from 500 batches on.
fn beta(steps: usize) -> f64 {
    (1.0 - 10.0 / steps.max(1) as f64).clamp(0.5, BETA)
}

/// `loss` smoothed without lag: the mean of the bias-corrected moving average run forwards
/// and backwards.
fn smooth_both_ways(loss: &[f64], beta: f64) -> Vec<f64> {
    let run = |xs: &mut dyn Iterator<Item = f64>| -> Vec<f64> {
        let mut avg = 0.0;
        xs.enumerate()
            .map(|(i, x)| {
                avg = beta * avg + (1.0 - beta) * x;
                avg / (1.0 - beta.powi(i as i32 + 1))
            })
            .collect()
    };
    let forward = run(&mut loss.iter().copied());
    let mut backward = run(&mut loss.iter().rev().copied());
    backward.reverse();
    forward
        .iter()
        .zip(&backward)
        .map(|(f, b)| (f + b) / 2.0)
        .collect()
}
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
        if let Some(steps) = self.steps
            && !(2..=MAX_STEPS).contains(&steps)
        {
            return Err((
                "steps",
                format!("must be from 2 to {MAX_STEPS}, got {steps}"),
            ));
        }
        Ok(())
    }

    /// The curve's length.
    pub fn steps(&self) -> usize {
        self.steps.unwrap_or(DEFAULT_STEPS)
    }

    /// The rate of batch `i`: start · (end / start)^(i / (steps − 1)).
    fn rate(&self, i: usize) -> f32 {
        let t = i as f64 / (self.steps() - 1) as f64;
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
    /// Why there is no steepest descent, when there is none (the curve too short or too
    /// flat to tell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
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
        let first = self.range_curve(pool, settings, control, max_seconds)?;
        if first.note.is_none() || settings.steps.is_some() {
            return Ok(first);
        }
        // Too short or too flat to tell: ten times as long, if that fits in the time left
        // at this curve's pace.
        let longer = RangeSettings {
            steps: Some((settings.steps() * LENGTHEN).min(MAX_STEPS)),
            ..settings.clone()
        };
        let took = started.elapsed().as_secs_f64();
        let left = max_seconds - took;
        if first.end == RangeEnd::TimeLimit || took * LENGTHEN as f64 > left {
            return Ok(first);
        }
        let second = self.range_curve(pool, &longer, control, left)?;
        Ok(if second.end == RangeEnd::TimeLimit {
            first
        } else {
            second
        })
    }

    /// One curve of the range test: [`lr_range_test`](Self::lr_range_test) without the
    /// second, longer try.
    fn range_curve(
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
        let steps = settings.steps();
        let mut points = Vec::with_capacity(steps);
        let (mut avg, mut best) = (0.0f64, f64::INFINITY);
        let beta = beta(steps);
        let mut end = RangeEnd::Completed;
        pool.install(|| -> Result<(), TrainError> {
            for i in 0..steps {
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
                avg = beta * avg + (1.0 - beta) * loss;
                let smoothed = avg / (1.0 - beta.powi(i as i32 + 1));
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
        // The curve read and returned: smoothed both ways, without lag.
        let raw: Vec<f64> = points.iter().map(|p| p.loss).collect();
        for (p, s) in points.iter_mut().zip(smooth_both_ways(&raw, beta)) {
            p.smoothed_loss = s;
        }
        let (steepest, minimum, note) = read_curve(&points);
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
            note,
        })
    }
}

/// Points at the start of the curve left out of the steepest descent (fastai's
/// `skip_start`): the bias-corrected average is still settling there.
const SKIP_START: usize = 10;

/// Points a descent must span before the minimum to be read as one.
const MIN_DESCENT: usize = 5;
/// The smoothed loss must fall below this share of where it started.
const MIN_FALL: f64 = 0.9;

/// [`suggestions`], unless the curve cannot tell: then no steepest descent (the minimum is
/// kept when the loss fell at all), and why.
pub fn read_curve(points: &[RangePoint]) -> (Option<f32>, Option<f32>, Option<String>) {
    let (steepest, minimum) = suggestions(points);
    let Some(low) = points
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.smoothed_loss.total_cmp(&b.1.smoothed_loss))
        .map(|(i, _)| i)
    else {
        return (None, None, Some("no batch was trained".into()));
    };
    let start = points[0].smoothed_loss;
    if low < MIN_DESCENT {
        return (
            None,
            None,
            Some(format!(
                "the loss was lowest {low} batches in: too few to read a descent (a range starting lower, or more steps, would tell)"
            )),
        );
    }
    if points[low].smoothed_loss > MIN_FALL * start {
        return (
            None,
            minimum,
            Some(format!(
                "the smoothed loss fell only from {start:.4} to {:.4}: too flat to read a descent",
                points[low].smoothed_loss
            )),
        );
    }
    (steepest, minimum, None)
}

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

    /// Smoothed both ways, a step down stays where it is (a forward average alone puts its
    /// middle a time constant late), and a flat curve stays flat.
    #[test]
    fn the_smoothing_does_not_lag() {
        let step: Vec<f64> = (0..100).map(|i| if i < 50 { 1.0 } else { 0.0 }).collect();
        let s = smooth_both_ways(&step, beta(100));
        assert!((s[49] + s[50] - 1.0).abs() < 0.05, "{:?}", &s[45..55]);
        assert!(s[10] > 0.99 && s[90] < 0.01);
        let flat = smooth_both_ways(&[2.0; 30], 0.9);
        assert!(flat.iter().all(|v| (v - 2.0).abs() < 1e-12));
        assert_eq!(beta(100), 0.9);
        assert_eq!(beta(1000), BETA);
    }

    /// A curve whose lowest point comes too soon, or that hardly falls, has no steepest
    /// descent, and says why.
    #[test]
    fn a_curve_that_cannot_tell_says_so() {
        let c = |ys: &[f64]| -> Vec<RangePoint> {
            ys.iter()
                .enumerate()
                .map(|(i, &s)| point(10f32.powi(i as i32 - 6), s))
                .collect()
        };
        let (steep, min, note) = read_curve(&c(&[1.0, 0.5, 0.8, 2.0, 3.0, 4.0, 5.0]));
        assert_eq!((steep, min), (None, None));
        assert!(note.unwrap().contains("too few"));
        let (steep, min, note) = read_curve(&c(&[1.0, 0.99, 0.98, 0.97, 0.96, 0.95, 0.97]));
        assert_eq!((steep, min), (None, Some(1e-1)));
        assert!(note.unwrap().contains("too flat"));
        let (steep, _, note) = read_curve(&c(&[1.0, 0.95, 0.9, 0.6, 0.3, 0.2, 0.15, 0.9]));
        assert!(steep.is_some() && note.is_none());
    }

    #[test]
    fn rates_grow_exponentially_from_start_to_end() {
        let s = RangeSettings {
            start: 1e-4,
            end: 1.0,
            steps: Some(5),
        };
        let r: Vec<f32> = (0..5).map(|i| s.rate(i)).collect();
        for (a, b) in r.iter().zip([1e-4, 1e-3, 1e-2, 1e-1, 1.0]) {
            assert!((a / b - 1.0).abs() < 1e-5, "{r:?}");
        }
        assert!(s.check().is_ok());
        assert_eq!(
            RangeSettings {
                steps: Some(1),
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
