//! Learning-rate schedules, applied per epoch, and early stopping. Both watch the epoch's
//! metrics; both are part of a checkpoint so a resumed run continues exactly.

use serde::{Deserialize, Serialize};

/// How the learning rate changes over epochs (epochs count from 0 here).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    #[default]
    Constant,
    /// `lr = lr₀ · drop^⌊epoch / every⌋`
    StepDecay {
        #[serde(default = "half")]
        drop: f32,
        #[serde(default = "ten")]
        every: u32,
    },
    /// `lr = lr₀ · decay_rate^(epoch / decay_epochs)`
    ExponentialDecay {
        #[serde(default = "point96")]
        decay_rate: f32,
        #[serde(default = "one")]
        decay_epochs: f32,
    },
    /// Linear warm-up over `warmup_epochs`, then `lr = lr₀ · (α + (1−α)·½(1 + cos(π·t/T)))`
    /// over `decay_epochs` (default: the remaining epochs).
    CosineDecay {
        #[serde(default)]
        decay_epochs: Option<u32>,
        #[serde(default)]
        alpha: f32,
        #[serde(default)]
        warmup_epochs: u32,
    },
    /// Multiply the rate by `factor` when `monitor` has not improved by `min_delta` for
    /// `patience` epochs; then wait `cooldown` epochs; never below `min_lr`.
    ReduceOnPlateau {
        #[serde(default)]
        monitor: Option<String>,
        #[serde(default = "point1")]
        factor: f32,
        #[serde(default = "ten")]
        patience: u32,
        #[serde(default = "small_delta")]
        min_delta: f32,
        #[serde(default)]
        cooldown: u32,
        #[serde(default)]
        min_lr: f32,
    },
    /// Smith's one-cycle policy (PyTorch's `OneCycleLR`, per epoch): from `lr₀ / div_factor`
    /// up to `lr₀` over the first `pct_start` of the epochs, then down to
    /// `lr₀ / (div_factor · final_div_factor)` at the last, both halves by cosine.
    OneCycle {
        #[serde(default = "point3")]
        pct_start: f32,
        #[serde(default = "twenty_five")]
        div_factor: f32,
        #[serde(default = "ten_thousand")]
        final_div_factor: f32,
    },
}

fn half() -> f32 {
    0.5
}
fn ten() -> u32 {
    10
}
fn point96() -> f32 {
    0.96
}
fn one() -> f32 {
    1.0
}
fn point1() -> f32 {
    0.1
}
fn small_delta() -> f32 {
    1e-4
}
fn point3() -> f32 {
    0.3
}
fn twenty_five() -> f32 {
    25.0
}
fn ten_thousand() -> f32 {
    1e4
}

impl Schedule {
    /// Field-level checks, as (field, message).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let in01 = |f: &'static str, v: f32, incl_one: bool| {
            if v.is_finite() && v > 0.0 && (v < 1.0 || (incl_one && v == 1.0)) {
                Ok(())
            } else {
                Err((f, format!("must be in (0, 1), got {v}")))
            }
        };
        match self {
            Schedule::Constant => Ok(()),
            Schedule::StepDecay { drop, every } => {
                in01("drop", *drop, true)?;
                if *every == 0 {
                    Err(("every", "must be at least 1".into()))
                } else {
                    Ok(())
                }
            }
            Schedule::ExponentialDecay {
                decay_rate,
                decay_epochs,
            } => {
                in01("decay_rate", *decay_rate, true)?;
                if !(decay_epochs.is_finite() && *decay_epochs > 0.0) {
                    Err((
                        "decay_epochs",
                        format!("must be positive, got {decay_epochs}"),
                    ))
                } else {
                    Ok(())
                }
            }
            Schedule::CosineDecay {
                decay_epochs,
                alpha,
                ..
            } => {
                if !(0.0..=1.0).contains(alpha) {
                    Err(("alpha", format!("must be in [0, 1], got {alpha}")))
                } else if *decay_epochs == Some(0) {
                    Err(("decay_epochs", "must be at least 1".into()))
                } else {
                    Ok(())
                }
            }
            Schedule::ReduceOnPlateau {
                monitor,
                factor,
                min_delta,
                min_lr,
                ..
            } => {
                if let Some(m) = monitor {
                    super::metric::check_monitor(m).map_err(|e| ("monitor", e))?;
                }
                in01("factor", *factor, false)?;
                if !(min_delta.is_finite() && *min_delta >= 0.0) {
                    return Err(("min_delta", format!("must be ≥ 0, got {min_delta}")));
                }
                if !(min_lr.is_finite() && *min_lr >= 0.0) {
                    return Err(("min_lr", format!("must be ≥ 0, got {min_lr}")));
                }
                Ok(())
            }
            Schedule::OneCycle {
                pct_start,
                div_factor,
                final_div_factor,
            } => {
                in01("pct_start", *pct_start, false)?;
                for (f, v) in [
                    ("div_factor", div_factor),
                    ("final_div_factor", final_div_factor),
                ] {
                    if !(v.is_finite() && *v >= 1.0) {
                        return Err((f, format!("must be at least 1, got {v}")));
                    }
                }
                Ok(())
            }
        }
    }
}

/// What a schedule remembers between epochs (only the plateau rule has memory).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct ScheduleState {
    /// Multiplier applied by reduce-on-plateau so far.
    pub factor: f32,
    pub best: Option<f64>,
    pub wait: u32,
    pub cooldown_left: u32,
}

impl ScheduleState {
    pub fn new() -> Self {
        ScheduleState {
            factor: 1.0,
            best: None,
            wait: 0,
            cooldown_left: 0,
        }
    }
}

impl Schedule {
    /// The learning rate for 0-based `epoch` of `epochs`.
    pub fn rate(&self, base: f32, epoch: u32, epochs: u32, state: &ScheduleState) -> f32 {
        let e = epoch as f32;
        match self {
            Schedule::Constant => base,
            Schedule::StepDecay { drop, every } => base * drop.powi((epoch / every) as i32),
            Schedule::ExponentialDecay {
                decay_rate,
                decay_epochs,
            } => base * decay_rate.powf(e / decay_epochs),
            Schedule::CosineDecay {
                decay_epochs,
                alpha,
                warmup_epochs,
            } => {
                if epoch < *warmup_epochs {
                    return base * (e + 1.0) / *warmup_epochs as f32;
                }
                let t = (epoch - warmup_epochs) as f32;
                let total = decay_epochs
                    .unwrap_or(epochs.saturating_sub(*warmup_epochs))
                    .max(1) as f32;
                let cos = 0.5 * (1.0 + (std::f32::consts::PI * t.min(total) / total).cos());
                base * (alpha + (1.0 - alpha) * cos)
            }
            Schedule::ReduceOnPlateau { min_lr, .. } => (base * state.factor).max(*min_lr),
            Schedule::OneCycle {
                pct_start,
                div_factor,
                final_div_factor,
            } => {
                // As OneCycleLR counts: the peak at step pct_start·total − 1, the floor at the
                // last step; a cosine between.
                let anneal = |from: f32, to: f32, t: f32| {
                    to + (from - to) * 0.5 * (1.0 + (std::f32::consts::PI * t).cos())
                };
                let start = base / div_factor;
                let floor = start / final_div_factor;
                let peak_at = pct_start * epochs as f32 - 1.0;
                let last = epochs.saturating_sub(1) as f32;
                if peak_at > 0.0 && e <= peak_at {
                    anneal(start, base, e / peak_at)
                } else if last > peak_at.max(0.0) {
                    let from = peak_at.max(0.0);
                    anneal(base, floor, ((e - from) / (last - from)).min(1.0))
                } else {
                    base
                }
            }
        }
    }

    /// After an epoch: lets reduce-on-plateau look at its monitored value (lower is better
    /// unless the monitor is an accuracy).
    pub fn observe(
        &self,
        base: f32,
        monitored: Option<f64>,
        monitor_is_max: bool,
        state: &mut ScheduleState,
    ) {
        let Schedule::ReduceOnPlateau {
            factor,
            patience,
            min_delta,
            cooldown,
            min_lr,
            ..
        } = self
        else {
            return;
        };
        let Some(v) = monitored else { return };
        let v = if monitor_is_max { -v } else { v };
        if state.cooldown_left > 0 {
            state.cooldown_left -= 1;
            state.wait = 0;
        }
        match state.best {
            Some(b) if v >= b - *min_delta as f64 => {
                if state.cooldown_left == 0 {
                    state.wait += 1;
                    if state.wait >= *patience && base * state.factor > *min_lr {
                        state.factor *= factor;
                        state.cooldown_left = *cooldown;
                        state.wait = 0;
                    }
                }
            }
            _ => {
                state.best = Some(v);
                state.wait = 0;
            }
        }
    }
}

/// Early stopping, Keras's `EarlyStopping` callback.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    /// `val_loss` (default when there is validation data), `loss`, `val_accuracy`, `accuracy`,
    /// `val_mae`, `mae`, `val_log_loss`, `val_rmse` (the last two without the weight penalty).
    #[serde(default)]
    pub monitor: Option<String>,
    /// Epochs without improvement before stopping.
    #[serde(default)]
    pub patience: u32,
    /// The least change that counts as an improvement.
    #[serde(default)]
    pub min_delta: f32,
    /// Whenever training ends, put back the weights of the best epoch.
    #[serde(default)]
    pub restore_best_weights: bool,
    /// Epochs before improvement starts to be judged.
    #[serde(default)]
    pub start_from_epoch: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(s: &Schedule, epochs: u32) -> Vec<f32> {
        let st = ScheduleState::new();
        (0..epochs).map(|e| s.rate(0.1, e, epochs, &st)).collect()
    }

    #[test]
    fn static_schedules() {
        let s: Schedule =
            serde_json::from_str(r#"{"type":"step_decay","drop":0.5,"every":2}"#).unwrap();
        assert_eq!(rates(&s, 5), vec![0.1, 0.1, 0.05, 0.05, 0.025]);
        let s: Schedule =
            serde_json::from_str(r#"{"type":"exponential_decay","decay_rate":0.5}"#).unwrap();
        assert_eq!(rates(&s, 3), vec![0.1, 0.05, 0.025]);
        let s: Schedule =
            serde_json::from_str(r#"{"type":"cosine_decay","warmup_epochs":2}"#).unwrap();
        let r = rates(&s, 6);
        assert!((r[0] - 0.05).abs() < 1e-7 && (r[1] - 0.1).abs() < 1e-7);
        assert!((r[2] - 0.1).abs() < 1e-7, "{r:?}");
        assert!((r[4] - 0.05).abs() < 1e-6, "{r:?}");
        assert!(r[5] < r[4]);
    }

    /// One-cycle as PyTorch's OneCycleLR steps it (one step an epoch): 0.1/25 first, the
    /// peak 0.1 at step 0.3·20 − 1 = 5, rising before and falling after, 0.1/25/1e4 last.
    /// (Values from OneCycleLR's formula: phase ends at steps 5 and 19, cosine annealing.)
    #[test]
    fn one_cycle_rises_to_the_peak_and_falls_to_the_floor() {
        let s: Schedule = serde_json::from_str(r#"{"type":"one_cycle"}"#).unwrap();
        let r = rates(&s, 20);
        assert!((r[0] - 0.004).abs() < 1e-9, "{r:?}");
        assert!((r[5] - 0.1).abs() < 1e-8, "{r:?}");
        assert!((r[19] - 0.1 / 25.0 / 1e4).abs() < 1e-10, "{r:?}");
        assert!(r[..6].windows(2).all(|w| w[0] < w[1]), "{r:?}");
        assert!(r[5..].windows(2).all(|w| w[0] > w[1]), "{r:?}");
        // Step 2 is 2/5 of the rise; step 12 half the fall (from 5 to 19).
        let rise = 0.1 - 0.096 / 2.0 * (1.0 + (0.4 * std::f32::consts::PI).cos());
        assert!((r[2] - rise).abs() < 1e-7, "{r:?}");
        assert!((r[12] - (0.1 + 4e-7) / 2.0).abs() < 1e-7, "{r:?}");
        // Too few epochs for a rise: it starts at the peak and still ends at the floor.
        let r = rates(&s, 3);
        assert!(
            (r[0] - 0.1).abs() < 1e-9 && (r[2] - 4e-7).abs() < 1e-10,
            "{r:?}"
        );
        for (bad, field) in [
            (r#"{"type":"one_cycle","pct_start":1}"#, "pct_start"),
            (r#"{"type":"one_cycle","div_factor":0.5}"#, "div_factor"),
            (
                r#"{"type":"one_cycle","final_div_factor":-1}"#,
                "final_div_factor",
            ),
        ] {
            let s: Schedule = serde_json::from_str(bad).unwrap();
            assert_eq!(s.check().unwrap_err().0, field, "{bad}");
        }
    }

    #[test]
    fn plateau_reduces_after_patience() {
        let s: Schedule =
            serde_json::from_str(r#"{"type":"reduce_on_plateau","patience":2,"factor":0.5}"#)
                .unwrap();
        let mut st = ScheduleState::new();
        let mut seen = vec![];
        for v in [1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.5] {
            seen.push(s.rate(0.1, 0, 10, &st));
            s.observe(0.1, Some(v), false, &mut st);
        }
        assert_eq!(seen, vec![0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.025]);
    }

    #[test]
    fn unknown_fields_and_types_are_named() {
        let e = serde_json::from_str::<Schedule>(r#"{"type":"cosine"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cosine_decay"), "{e}");
        let e = serde_json::from_str::<Schedule>(r#"{"type":"step_decay","factor":2}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("factor"), "{e}");
    }
}
