//! The metrics training reports and monitors: their names (what early stopping and
//! `reduce_on_plateau` may watch) and the per-row score behind `accuracy` and `mae`. Shared by
//! the spec's validation, the schedules, the batch step and the training loop, so none of them
//! imports another for it. Knows nothing of networks or data sets.

use ndarray::ArrayView2;

use super::activation::argmax_rows;
use super::loss::Loss;
use crate::nn::Real;

/// The metrics an epoch record carries, and so the names a monitor may use.
pub const MONITORS: [&str; 8] = [
    "loss",
    "val_loss",
    "accuracy",
    "val_accuracy",
    "mae",
    "val_mae",
    "val_log_loss",
    "val_rmse",
];

/// `Ok` when `m` names a metric in [`MONITORS`]; else the message a spec error carries.
pub fn check_monitor(m: &str) -> Result<(), String> {
    if MONITORS.contains(&m) {
        Ok(())
    } else {
        Err(format!(
            "unknown metric \"{m}\"; expected one of {}",
            MONITORS.join(", ")
        ))
    }
}

/// (correct predictions, summed absolute error) of outputs `p` against targets `y`.
pub fn score<F: Real>(p: ArrayView2<F>, y: ArrayView2<F>, loss: Loss) -> (f64, f64) {
    let half = crate::nn::cst::<F>(0.5);
    if loss.is_categorical() {
        let a = argmax_rows(p);
        let b = argmax_rows(y);
        (a.iter().zip(&b).filter(|(a, b)| a == b).count() as f64, 0.0)
    } else if loss.is_classification() {
        let c = p
            .iter()
            .zip(y.iter())
            .filter(|&(&p, &y)| (p >= half) == (y >= half))
            .count();
        (c as f64, 0.0)
    } else {
        (
            0.0,
            p.iter()
                .zip(y.iter())
                .map(|(&p, &y)| (p - y).abs().to_f64().unwrap_or(f64::NAN))
                .sum(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn every_monitor_is_accepted_and_a_typo_is_named() {
        for m in MONITORS {
            assert_eq!(check_monitor(m), Ok(()));
        }
        let e = check_monitor("val_acc").unwrap_err();
        assert!(
            e.contains("\"val_acc\"") && e.contains("val_accuracy"),
            "{e}"
        );
    }

    #[test]
    fn scores_count_right_answers_and_sum_absolute_errors() {
        let p = array![[0.9f32, 0.1], [0.2, 0.8]];
        let y = array![[1.0f32, 0.0], [1.0, 0.0]];
        assert_eq!(
            score(p.view(), y.view(), Loss::CategoricalCrossentropy),
            (1.0, 0.0)
        );
        assert_eq!(
            score(p.view(), y.view(), Loss::BinaryCrossentropy),
            (2.0, 0.0)
        );
        let (c, e) = score(p.view(), y.view(), Loss::Mse);
        assert_eq!(c, 0.0);
        assert!((e - (0.1 + 0.1 + 0.8 + 0.8)).abs() < 1e-6, "{e}");
    }
}
